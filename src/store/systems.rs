//! Local systems: each is one shared care record with its own FHIR base.

use diesel::prelude::*;

use super::schema::local_systems;
use super::{write_transaction, DbConnection};
use crate::fhir::instant::Millis;
use crate::fhir::SystemSlug;

#[derive(Debug, Clone, Queryable, PartialEq, Eq)]
pub struct LocalSystem {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = local_systems)]
struct NewLocalSystem<'a> {
    slug: &'a str,
    name: &'a str,
    created_at: i64,
}

/// What saving a system did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    Created(LocalSystem),
    Updated(LocalSystem),
}

pub fn find(conn: &mut DbConnection, slug: &SystemSlug) -> QueryResult<Option<LocalSystem>> {
    local_systems::table
        .filter(local_systems::slug.eq(slug.as_str()))
        .load::<LocalSystem>(conn)
        .map(super::resources::the_row)
}

pub fn list(conn: &mut DbConnection) -> QueryResult<Vec<LocalSystem>> {
    local_systems::table
        .order(local_systems::slug.asc())
        .load::<LocalSystem>(conn)
}

/// Registers a new system; `Ok(None)` when the slug is already taken.
pub fn add(
    conn: &mut DbConnection,
    slug: &SystemSlug,
    name: &str,
) -> QueryResult<Option<LocalSystem>> {
    write_transaction(conn, |conn| {
        if find(conn, slug)?.is_some() {
            return Ok(None);
        }
        insert(conn, slug, name).map(Some)
    })
}

/// Creates the system or renames it (`PUT /admin/systems/{slug}`).
pub fn save(conn: &mut DbConnection, slug: &SystemSlug, name: &str) -> QueryResult<Saved> {
    write_transaction(conn, |conn| match find(conn, slug)? {
        Some(existing) => {
            diesel::update(local_systems::table.filter(local_systems::id.eq(existing.id)))
                .set(local_systems::name.eq(name))
                .execute(conn)?;
            Ok(Saved::Updated(LocalSystem {
                name: name.to_owned(),
                ..existing
            }))
        }
        None => insert(conn, slug, name).map(Saved::Created),
    })
}

fn insert(conn: &mut DbConnection, slug: &SystemSlug, name: &str) -> QueryResult<LocalSystem> {
    let created_at = Millis::now().0;
    let id = diesel::insert_into(local_systems::table)
        .values(NewLocalSystem {
            slug: slug.as_str(),
            name,
            created_at,
        })
        .returning(local_systems::id)
        .get_result::<i64>(conn)?;
    Ok(LocalSystem {
        id,
        slug: slug.as_str().to_owned(),
        name: name.to_owned(),
        created_at,
    })
}
