//! History at system, type and instance level: every version, newest first, with keyset paging.

use diesel::prelude::*;

use super::schema::resource_versions;
use super::{DbConnection, StoreError};
use crate::fhir::instant::Millis;
use crate::fhir::ResourceType;

type Backend = <DbConnection as Connection>::Backend;

/// Which versions a history request covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    System,
    Type(ResourceType),
    /// One resource, by its internal key (see [`super::resources::resource_key`]).
    Instance(i64),
}

/// The position after the last entry of a page: versions strictly older than it come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub last_updated: Millis,
    pub seq: i64,
}

impl Cursor {
    /// The opaque text form used in `next` links.
    pub fn encode(self) -> String {
        format!("{}-{}", self.last_updated.0, self.seq)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (time, seq) = text.split_once('-')?;
        Some(Self {
            last_updated: Millis(time.parse().ok()?),
            seq: seq.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct HistoryRow {
    pub seq: i64,
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub method: String,
    pub content: Option<String>,
}

impl HistoryRow {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            last_updated: Millis(self.last_updated),
            seq: self.seq,
        }
    }
}

/// Up to `limit` versions in scope, newest first, at or after `since`, older than `after`.
pub fn versions(
    conn: &mut DbConnection,
    system_id: i64,
    scope: Scope,
    since: Option<Millis>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<HistoryRow>, StoreError> {
    let mut query = resource_versions::table
        .filter(resource_versions::system_id.eq(system_id))
        .into_boxed::<Backend>();
    query = match scope {
        Scope::System => query,
        Scope::Type(rtype) => query.filter(resource_versions::resource_type.eq(rtype.as_str())),
        Scope::Instance(pk) => query.filter(resource_versions::resource_pk.eq(pk)),
    };
    if let Some(since) = since {
        query = query.filter(resource_versions::last_updated.ge(since.0));
    }
    if let Some(after) = after {
        query = query.filter(
            resource_versions::last_updated.lt(after.last_updated.0).or(
                resource_versions::last_updated
                    .eq(after.last_updated.0)
                    .and(resource_versions::seq.lt(after.seq)),
            ),
        );
    }
    Ok(query
        .order((
            resource_versions::last_updated.desc(),
            resource_versions::seq.desc(),
        ))
        .limit(limit)
        .select((
            resource_versions::seq,
            resource_versions::resource_type,
            resource_versions::id,
            resource_versions::version_id,
            resource_versions::last_updated,
            resource_versions::method,
            resource_versions::content,
        ))
        .load::<HistoryRow>(conn)?)
}

/// How many versions an instance has (the `total` of an instance history).
pub fn count_instance_versions(
    conn: &mut DbConnection,
    system_id: i64,
    resource_pk: i64,
    since: Option<Millis>,
) -> Result<u64, StoreError> {
    let mut query = resource_versions::table
        .filter(resource_versions::system_id.eq(system_id))
        .filter(resource_versions::resource_pk.eq(resource_pk))
        .into_boxed::<Backend>();
    if let Some(since) = since {
        query = query.filter(resource_versions::last_updated.ge(since.0));
    }
    let count: i64 = query.count().get_result(conn)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
