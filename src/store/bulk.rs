//! Creating many resources at once, for transactions: every row of every new resource (current
//! state, version, NHS number, search indexes) goes in with a handful of multi-row INSERTs, not a
//! round trip per row.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::{Map, Value};

use super::indexes::{self, text};
use super::resources::{Derived, StoredVersion, WriteError, WriteKind, Written};
use super::search::prepared;
use super::{DbConnection, StoreError};
use crate::fhir::instant::Millis;
use crate::fhir::resource::{stamp, VersionStamp};
use crate::fhir::{ResourceId, ResourceType, VersionId};
use crate::search::sql::{Bind, Sql};

/// A resource to create with a fresh (server-chosen) id.
pub struct NewResource {
    pub rtype: ResourceType,
    pub id: ResourceId,
    pub content: Map<String, Value>,
    pub derived: Derived,
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    pk: i64,
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = Text)]
    id: String,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Text)]
    id: String,
}

/// Rows per INSERT (SQLite allows 32,766 bound values per statement).
const ROWS_PER_INSERT: usize = 500;

/// Creates every resource, version 1, inside the caller's write transaction. References are not
/// checked here (the caller checks them once every entry is written). The result is in input order.
pub fn create_many_in(
    conn: &mut DbConnection,
    system_id: i64,
    items: Vec<NewResource>,
) -> Result<Vec<Written>, WriteError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    refuse_taken_nhs_numbers(conn, system_id, &items)?;
    let now = Millis::now();
    let mut stamped = Vec::with_capacity(items.len());
    for item in &items {
        let resource = stamp(
            item.content.clone(),
            VersionStamp {
                resource_type: item.rtype,
                id: &item.id,
                version: VersionId::FIRST,
                last_updated: now,
            },
        );
        stamped.push(
            serde_json::to_string(&resource)
                .map_err(|e| StoreError::Corrupt(format!("serialising resource: {e}")))?,
        );
    }

    // Current-state rows, returning their keys.
    let mut pks: HashMap<(String, String), i64> = HashMap::with_capacity(items.len());
    for chunk in items.chunks(ROWS_PER_INSERT) {
        let mut sql = Sql::new("INSERT INTO resources (system_id, resource_type, id, version_id, last_updated, deleted) VALUES ");
        for (i, item) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.bind(Bind::Int(system_id)).push(", ");
            sql.bind(text(item.rtype.as_str())).push(", ");
            sql.bind(text(item.id.as_str())).push(", 1, ");
            sql.bind(Bind::Int(now.0)).push(", FALSE)");
        }
        sql.push(" RETURNING pk, resource_type, id");
        let rows: Vec<Inserted> = prepared(conn, &sql).load(conn)?;
        for row in rows {
            pks.insert((row.resource_type, row.id), row.pk);
        }
    }
    let pk_of = |item: &NewResource| -> Result<i64, WriteError> {
        pks.get(&(item.rtype.as_str().to_owned(), item.id.to_string()))
            .copied()
            .ok_or_else(|| {
                WriteError::Store(StoreError::Corrupt(format!(
                    "no key returned for {}/{}",
                    item.rtype, item.id
                )))
            })
    };

    // Version rows.
    let mut versions = Vec::with_capacity(items.len());
    for (item, content) in items.iter().zip(&stamped) {
        versions.push(vec![
            Some(Bind::Int(pk_of(item)?)),
            Some(Bind::Int(system_id)),
            Some(text(item.rtype.as_str())),
            Some(text(item.id.as_str())),
            Some(Bind::Int(1)),
            Some(Bind::Int(now.0)),
            Some(text("POST")),
            Some(text(content)),
        ]);
    }
    indexes::insert(
        conn,
        "resource_versions",
        "resource_pk, system_id, resource_type, id, version_id, last_updated, method, content",
        versions,
    )?;

    // NHS numbers (their primary key still guards against a concurrent writer).
    let mut numbers = Vec::new();
    for item in items.iter().filter(|i| i.rtype == ResourceType::Patient) {
        if let Some(number) = &item.derived.nhs_number {
            numbers.push(vec![
                Some(Bind::Int(system_id)),
                Some(text(number)),
                Some(Bind::Int(pk_of(item)?)),
            ]);
        }
    }
    indexes::insert(
        conn,
        "patient_nhs_numbers",
        "system_id, nhs_number, resource_pk",
        numbers,
    )?;

    // Search index rows of them all.
    let mut with_keys = Vec::with_capacity(items.len());
    for item in &items {
        with_keys.push((pk_of(item)?, &item.derived.indexes));
    }
    indexes::write_many(conn, system_id, &with_keys)?;

    Ok(items
        .into_iter()
        .zip(stamped)
        .map(|(item, content)| Written {
            id: item.id,
            kind: WriteKind::Created,
            stored: StoredVersion {
                version: VersionId::FIRST,
                last_updated: now,
                content,
            },
        })
        .collect())
}

/// A Patient's NHS number may not be another Patient's, nor appear twice among the new ones.
fn refuse_taken_nhs_numbers(
    conn: &mut DbConnection,
    system_id: i64,
    items: &[NewResource],
) -> Result<(), WriteError> {
    let numbers: Vec<&str> = items
        .iter()
        .filter(|i| i.rtype == ResourceType::Patient)
        .filter_map(|i| i.derived.nhs_number.as_deref())
        .collect();
    if numbers.is_empty() {
        return Ok(());
    }
    let mut seen = HashMap::new();
    for item in items.iter().filter(|i| i.rtype == ResourceType::Patient) {
        if let Some(number) = item.derived.nhs_number.as_deref() {
            if let Some(other) = seen.insert(number, item.id.as_str()) {
                return Err(WriteError::DuplicateNhsNumber {
                    nhs_number: number.to_owned(),
                    existing: other.to_owned(),
                });
            }
        }
    }
    for chunk in numbers.chunks(ROWS_PER_INSERT) {
        let mut sql = Sql::new(
            "SELECT n.nhs_number, r.id FROM patient_nhs_numbers n JOIN resources r ON r.pk = n.resource_pk WHERE n.system_id = ",
        );
        sql.bind(Bind::Int(system_id))
            .push(" AND n.nhs_number IN (");
        for (i, number) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(text(number));
        }
        sql.push(")");
        let holders: Vec<Holder> = prepared(conn, &sql).load(conn)?;
        if let Some(holder) = holders.into_iter().next() {
            return Err(WriteError::DuplicateNhsNumber {
                nhs_number: holder.nhs_number,
                existing: holder.id,
            });
        }
    }
    Ok(())
}
