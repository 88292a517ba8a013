//! Running the SQL that `search::sql` builds.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};

use super::{DbConnection, StoreError};
use crate::search::sql::{Bind, Dialect, Sql};

type Backend = <DbConnection as Connection>::Backend;

/// One found resource: its key, type, id, JSON, and sort keys as text.
#[derive(Debug, Clone, QueryableByName)]
pub struct Hit {
    #[diesel(sql_type = BigInt)]
    pub pk: i64,
    #[diesel(sql_type = Text)]
    pub resource_type: String,
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub content: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub k0: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub k1: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub k2: Option<String>,
}

impl Hit {
    pub fn keys(&self) -> Vec<Option<String>> {
        vec![self.k0.clone(), self.k1.clone(), self.k2.clone()]
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub(crate) fn dialect(conn: &DbConnection) -> Dialect {
    match conn {
        DbConnection::Sqlite(_) => Dialect::Sqlite,
        DbConnection::Pg(_) => Dialect::Postgres,
    }
}

pub(crate) fn prepared<'a>(
    conn: &DbConnection,
    sql: &'a Sql,
) -> diesel::query_builder::BoxedSqlQuery<'a, Backend, diesel::query_builder::SqlQuery> {
    let mut query = diesel::sql_query(sql.render(dialect(conn))).into_boxed::<Backend>();
    for bind in &sql.binds {
        query = match bind {
            Bind::Text(v) => query.bind::<Text, _>(v.clone()),
            Bind::Int(v) => query.bind::<BigInt, _>(*v),
            Bind::Float(v) => query.bind::<Double, _>(*v),
            Bind::Bool(v) => query.bind::<diesel::sql_types::Bool, _>(*v),
        };
    }
    query
}

pub fn hits(conn: &mut DbConnection, sql: &Sql) -> Result<Vec<Hit>, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.load::<Hit>(conn)?)
}

pub fn count(conn: &mut DbConnection, sql: &Sql) -> Result<i64, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.get_result::<Count>(conn)?.n)
}

/// The tables searches read.
const SEARCH_TABLES: [&str; 8] = [
    "resources",
    "resource_versions",
    "search_string",
    "search_token",
    "search_date",
    "search_reference",
    "search_quantity",
    "search_uri",
];

#[derive(QueryableByName)]
struct Table {
    #[diesel(sql_type = Text)]
    relname: String,
}

/// Makes sure PostgreSQL plans searches with statistics that describe the tables.
///
/// PostgreSQL estimates rows from the statistics ANALYZE last gathered. A table without them —
/// every search table after the first load, until autovacuum gets to it, up to a minute later —
/// is estimated at one row per condition, and the planner then nests loops whose cost multiplies
/// with every chain or `_has` level (12 s for a two-level chain over 300 resources, and far
/// worse beyond). So before a search, any of the tables that has more than doubled in size since
/// its statistics were taken is analysed (a bounded sample: milliseconds). SQLite's planner works
/// from the indexes alone here, so it needs nothing.
pub fn refresh_statistics(conn: &mut DbConnection) -> Result<(), StoreError> {
    let DbConnection::Pg(pg) = conn else {
        return Ok(());
    };
    let tables = SEARCH_TABLES
        .iter()
        .map(|t| format!("'{t}'::regclass"))
        .collect::<Vec<_>>()
        .join(", ");
    let stale: Vec<Table> = diesel::sql_query(format!(
        "SELECT c.relname::text AS relname FROM pg_class c WHERE c.oid IN ({tables}) \
         AND pg_relation_size(c.oid) > 2 * GREATEST(c.relpages, 0)::bigint * current_setting('block_size')::bigint"
    ))
    .load(pg)?;
    if stale.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = stale.iter().map(|t| t.relname.as_str()).collect();
    let names = names.join(", ");
    log::info!("analysing {names} for search planning");
    if let Err(e) = diesel::sql_query(format!("ANALYZE {names}")).execute(pg) {
        // A standby cannot analyse (nor, without a warning, can a role that does not own the
        // tables); the search still runs, on whatever statistics there are.
        log::warn!("could not analyse {names}: {e}");
    }
    Ok(())
}

/// Runs a statement that returns no rows.
pub fn execute(conn: &mut DbConnection, sql: &Sql) -> Result<usize, StoreError> {
    let query = prepared(conn, sql);
    Ok(query.execute(conn)?)
}
