//! Versioned resource storage: the current-state row in `resources` and one row per version in
//! `resource_versions` (JSON text, once per version; deletes as tombstones).
//!
//! Every write goes through [`write_version`] inside one database transaction; it is the place
//! where later capabilities (search indexes, audit) add their rows atomically with the version.

use diesel::prelude::*;
use serde_json::{Map, Value};

use super::schema::{patient_nhs_numbers, resource_versions, resources};
use super::{indexes, is_unique_violation, DbConnection, StoreError};
use crate::fhir::instant::Millis;
use crate::fhir::resource::{same_content, stamp, VersionStamp};
use crate::fhir::{ResourceId, ResourceType, VersionId};
use crate::search::IndexRows;

/// The state of a resource as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    Found(StoredVersion),
    Deleted {
        version: VersionId,
        last_updated: Millis,
    },
    NotFound,
}

/// One stored version with its JSON text (as served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: VersionId,
    pub last_updated: Millis,
    pub content: String,
}

/// What a create or update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Created,
    Updated,
    /// The content equalled the current version: no new version was written.
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Written {
    pub id: ResourceId,
    pub kind: WriteKind,
    pub stored: StoredVersion,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Deleted {
        version: VersionId,
        last_updated: Millis,
    },
    /// Already deleted: nothing changed (deleting twice is fine).
    AlreadyDeleted {
        version: VersionId,
    },
    NotFound,
}

/// Facts derived from a resource (by validation) that its write must check or record in the same
/// transaction.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    /// A Patient's NHS number: unique per local system.
    pub nhs_number: Option<String>,
    /// Relative references to stored resource types: each must exist (and not be deleted) in the
    /// same local system.
    pub references: Vec<ReferenceCheck>,
    /// The search index rows of the new version.
    pub indexes: IndexRows,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceCheck {
    pub resource_type: ResourceType,
    pub id: ResourceId,
    /// Where the reference is, for the error.
    pub expression: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(StoreError),
    /// `If-Match` named a version that is not current.
    #[error("version mismatch: current is {current:?}")]
    VersionMismatch { current: Option<VersionId> },
    /// `If-Match` was given for a resource that does not exist.
    #[error("resource not found")]
    NotFound,
    /// A concurrent writer changed the resource first; the transaction is retried.
    #[error("concurrent modification")]
    Contended,
    /// Another Patient in this local system has the NHS number.
    #[error("NHS number {nhs_number} belongs to Patient/{existing}")]
    DuplicateNhsNumber {
        nhs_number: String,
        existing: String,
    },
    /// A reference names a resource that does not exist in this local system.
    #[error("{reference} not found")]
    ReferenceNotFound {
        reference: String,
        expression: String,
    },
}

impl From<StoreError> for WriteError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Query(query) => Self::from(query),
            other => Self::Store(other),
        }
    }
}

impl From<diesel::result::Error> for WriteError {
    fn from(err: diesel::result::Error) -> Self {
        if is_unique_violation(&err) {
            Self::Contended
        } else {
            Self::Store(StoreError::Query(err))
        }
    }
}

/// The current-state row of a resource.
#[derive(Debug, Clone, Copy, Queryable)]
struct CurrentRow {
    pk: i64,
    version_id: i64,
    last_updated: i64,
    deleted: bool,
}

/// The row a query on a unique key found, if any. Such lookups load rather than call `.first()`:
/// `.first()` adds `LIMIT ?`, and SQLite re-plans a statement whose LIMIT is a bound parameter
/// every time it runs (the planner reads the bound value), so a cached statement cost a full
/// prepare on every read.
pub(crate) fn the_row<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

fn version_id(raw: i64) -> Result<VersionId, StoreError> {
    VersionId::new(raw).ok_or_else(|| StoreError::Corrupt(format!("version id {raw}")))
}

fn current_row(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
) -> QueryResult<Option<CurrentRow>> {
    resources::table
        .filter(resources::system_id.eq(system_id))
        .filter(resources::resource_type.eq(rtype.as_str()))
        .filter(resources::id.eq(id.as_str()))
        .select((
            resources::pk,
            resources::version_id,
            resources::last_updated,
            resources::deleted,
        ))
        .load::<CurrentRow>(conn)
        .map(the_row)
}

/// Serialises writers of one resource. SQLite already holds the database write lock (`BEGIN
/// IMMEDIATE`); PostgreSQL locks the current-state row until the transaction ends. A resource that
/// does not exist yet has no row to lock: racing creators meet at the unique key and retry.
fn lock_for_write(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
) -> QueryResult<()> {
    if let DbConnection::Pg(pg) = conn {
        resources::table
            .filter(resources::system_id.eq(system_id))
            .filter(resources::resource_type.eq(rtype.as_str()))
            .filter(resources::id.eq(id.as_str()))
            .select(resources::pk)
            .for_update()
            .load::<i64>(pg)?;
    }
    Ok(())
}

/// The current-state row with the current version's JSON (`None` when deleted): one indexed join.
fn current_state(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
) -> QueryResult<Option<(CurrentRow, Option<String>)>> {
    resources::table
        .inner_join(
            resource_versions::table.on(resource_versions::resource_pk
                .eq(resources::pk)
                .and(resource_versions::system_id.eq(resources::system_id))
                .and(resource_versions::version_id.eq(resources::version_id))),
        )
        .filter(resources::system_id.eq(system_id))
        .filter(resources::resource_type.eq(rtype.as_str()))
        .filter(resources::id.eq(id.as_str()))
        .select((
            (
                resources::pk,
                resources::version_id,
                resources::last_updated,
                resources::deleted,
            ),
            resource_versions::content,
        ))
        .load::<(CurrentRow, Option<String>)>(conn)
        .map(the_row)
}

/// The internal key of a resource (deleted or not), for instance history.
pub fn resource_key(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
) -> QueryResult<Option<i64>> {
    Ok(current_row(conn, system_id, rtype, id)?.map(|row| row.pk))
}

/// Reads the current version.
pub fn read_current(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
) -> Result<ReadResult, StoreError> {
    let row = current_state(conn, system_id, rtype, id)?
        .map(|(row, content)| (row.version_id, row.last_updated, content));
    to_read_result(row)
}

/// Reads one version (`vread`).
pub fn read_version(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
    version: VersionId,
) -> Result<ReadResult, StoreError> {
    let row = resources::table
        .inner_join(
            resource_versions::table.on(resource_versions::resource_pk
                .eq(resources::pk)
                .and(resource_versions::system_id.eq(resources::system_id))),
        )
        .filter(resources::system_id.eq(system_id))
        .filter(resources::resource_type.eq(rtype.as_str()))
        .filter(resources::id.eq(id.as_str()))
        .filter(resource_versions::version_id.eq(version.get()))
        .select((
            resource_versions::version_id,
            resource_versions::last_updated,
            resource_versions::content,
        ))
        .load::<(i64, i64, Option<String>)>(conn)
        .map(the_row)?;
    to_read_result(row)
}

fn to_read_result(row: Option<(i64, i64, Option<String>)>) -> Result<ReadResult, StoreError> {
    Ok(match row {
        None => ReadResult::NotFound,
        Some((version, last_updated, None)) => ReadResult::Deleted {
            version: version_id(version)?,
            last_updated: Millis(last_updated),
        },
        Some((version, last_updated, Some(content))) => ReadResult::Found(StoredVersion {
            version: version_id(version)?,
            last_updated: Millis(last_updated),
            content,
        }),
    })
}

/// Creates a resource with the given (new) id, inside the caller's write transaction.
pub fn create_in(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
    content: Map<String, Value>,
    derived: &Derived,
) -> Result<Written, WriteError> {
    check_references(conn, system_id, rtype, id, &derived.references)?;
    let stored = write_version(
        conn,
        NewVersion {
            system_id,
            rtype,
            id,
            previous: None,
            last_updated: Millis::now(),
            method: "POST",
            content: Some(content),
            nhs_number: derived.nhs_number.as_deref(),
            indexes: Some(&derived.indexes),
        },
    )?;
    Ok(Written {
        id: id.clone(),
        kind: WriteKind::Created,
        stored,
    })
}

/// Updates a resource, or creates it with the client's id when it does not exist (update-as-create),
/// inside the caller's write transaction. An update whose content equals the current version
/// writes nothing and answers `Unchanged`. `method` is what history records (PUT or PATCH).
#[allow(clippy::too_many_arguments)]
pub fn update_in(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
    mut content: Map<String, Value>,
    if_match: Option<VersionId>,
    derived: &Derived,
    method: &'static str,
) -> Result<Written, WriteError> {
    content.insert("id".into(), Value::String(id.as_str().to_owned()));
    lock_for_write(conn, system_id, rtype, id)?;
    let state = current_state(conn, system_id, rtype, id)?;
    let current = state.as_ref().map(|(row, _)| *row);
    check_if_match(current.as_ref(), if_match)?;
    if let Some((row, Some(existing))) = &state {
        let existing_json: Map<String, Value> = serde_json::from_str(existing)
            .map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))?;
        if same_content(&existing_json, &content) {
            return Ok(Written {
                id: id.clone(),
                kind: WriteKind::Unchanged,
                stored: StoredVersion {
                    version: version_id(row.version_id)?,
                    last_updated: Millis(row.last_updated),
                    content: existing.clone(),
                },
            });
        }
    }
    check_references(conn, system_id, rtype, id, &derived.references)?;
    let kind = match current {
        Some(row) if !row.deleted => WriteKind::Updated,
        _ => WriteKind::Created,
    };
    let stored = write_version(
        conn,
        NewVersion {
            system_id,
            rtype,
            id,
            previous: current,
            last_updated: Millis::now(),
            method,
            content: Some(content),
            nhs_number: derived.nhs_number.as_deref(),
            indexes: Some(&derived.indexes),
        },
    )?;
    Ok(Written {
        id: id.clone(),
        kind,
        stored,
    })
}

/// Deletes a resource inside the caller's write transaction: a tombstone version; a later read
/// answers 410 Gone. Deleting a deleted resource changes nothing.
pub fn delete_in(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
    if_match: Option<VersionId>,
) -> Result<Deleted, WriteError> {
    lock_for_write(conn, system_id, rtype, id)?;
    let current = current_row(conn, system_id, rtype, id)?;
    check_if_match(current.as_ref(), if_match)?;
    match current {
        None => Ok(Deleted::NotFound),
        Some(row) if row.deleted => Ok(Deleted::AlreadyDeleted {
            version: version_id(row.version_id)?,
        }),
        Some(row) => {
            let stored = write_version(
                conn,
                NewVersion {
                    system_id,
                    rtype,
                    id,
                    previous: Some(row),
                    last_updated: Millis::now(),
                    method: "DELETE",
                    content: None,
                    nhs_number: None,
                    indexes: None,
                },
            )?;
            Ok(Deleted::Deleted {
                version: stored.version,
                last_updated: stored.last_updated,
            })
        }
    }
}

fn check_if_match(
    current: Option<&CurrentRow>,
    if_match: Option<VersionId>,
) -> Result<(), WriteError> {
    let Some(expected) = if_match else {
        return Ok(());
    };
    match current {
        None => Err(WriteError::NotFound),
        Some(row) if row.version_id != expected.get() => Err(WriteError::VersionMismatch {
            current: VersionId::new(row.version_id),
        }),
        Some(_) => Ok(()),
    }
}

struct NewVersion<'a> {
    system_id: i64,
    rtype: ResourceType,
    id: &'a ResourceId,
    /// The current-state row, if the resource exists (deleted or not).
    previous: Option<CurrentRow>,
    last_updated: Millis,
    method: &'static str,
    /// `None` writes a delete tombstone.
    content: Option<Map<String, Value>>,
    /// A Patient's NHS number (released on delete or when it is removed).
    nhs_number: Option<&'a str>,
    /// The search index rows of the new version (none for a delete).
    indexes: Option<&'a IndexRows>,
}

#[derive(Insertable)]
#[diesel(table_name = resources)]
struct NewResourceRow<'a> {
    system_id: i64,
    resource_type: &'a str,
    id: &'a str,
    version_id: i64,
    last_updated: i64,
    deleted: bool,
}

#[derive(Insertable)]
#[diesel(table_name = resource_versions)]
struct NewVersionRow<'a> {
    resource_pk: i64,
    system_id: i64,
    resource_type: &'a str,
    id: &'a str,
    version_id: i64,
    last_updated: i64,
    method: &'a str,
    content: Option<&'a str>,
}

/// Writes the next version of a resource and moves its current-state row to it. Must run inside a
/// write transaction. A concurrent writer that got there first surfaces as `Contended`.
fn write_version(
    conn: &mut DbConnection,
    new: NewVersion<'_>,
) -> Result<StoredVersion, WriteError> {
    let version = match &new.previous {
        Some(row) => version_id(row.version_id)?.next(),
        None => VersionId::FIRST,
    };
    // lastUpdated never goes backwards within one resource, whatever the clock does.
    let last_updated = match &new.previous {
        Some(row) => new.last_updated.max(Millis(row.last_updated)),
        None => new.last_updated,
    };
    let content = new
        .content
        .map(|content| {
            let stamped = stamp(
                content,
                VersionStamp {
                    resource_type: new.rtype,
                    id: new.id,
                    version,
                    last_updated,
                },
            );
            serde_json::to_string(&stamped)
        })
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("serialising resource: {e}")))?;
    let deleted = content.is_none();

    let pk = match &new.previous {
        Some(row) => {
            let changed = diesel::update(
                resources::table
                    .filter(resources::pk.eq(row.pk))
                    .filter(resources::version_id.eq(row.version_id)),
            )
            .set((
                resources::version_id.eq(version.get()),
                resources::last_updated.eq(last_updated.0),
                resources::deleted.eq(deleted),
            ))
            .execute(conn)?;
            if changed != 1 {
                return Err(WriteError::Contended);
            }
            row.pk
        }
        None => diesel::insert_into(resources::table)
            .values(NewResourceRow {
                system_id: new.system_id,
                resource_type: new.rtype.as_str(),
                id: new.id.as_str(),
                version_id: version.get(),
                last_updated: last_updated.0,
                deleted,
            })
            .returning(resources::pk)
            .get_result::<i64>(conn)?,
    };

    diesel::insert_into(resource_versions::table)
        .values(NewVersionRow {
            resource_pk: pk,
            system_id: new.system_id,
            resource_type: new.rtype.as_str(),
            id: new.id.as_str(),
            version_id: version.get(),
            last_updated: last_updated.0,
            method: new.method,
            content: content.as_deref(),
        })
        .execute(conn)?;

    if new.rtype == ResourceType::Patient {
        record_nhs_number(conn, new.system_id, pk, new.nhs_number)?;
    }
    if new.previous.is_some() {
        indexes::clear(conn, pk)?;
    }
    if let Some(rows) = new.indexes {
        indexes::write(conn, new.system_id, pk, rows)?;
    }

    Ok(StoredVersion {
        version,
        last_updated,
        content: content.unwrap_or_default(),
    })
}

/// Keeps `patient_nhs_numbers` in step with the Patient's current version. The primary key on
/// (system, NHS number) is what makes two Patients with one NHS number impossible, even for
/// concurrent writers: the loser of a race retries and then finds the winner here.
fn record_nhs_number(
    conn: &mut DbConnection,
    system_id: i64,
    pk: i64,
    nhs_number: Option<&str>,
) -> Result<(), WriteError> {
    diesel::delete(
        patient_nhs_numbers::table
            .filter(patient_nhs_numbers::system_id.eq(system_id))
            .filter(patient_nhs_numbers::resource_pk.eq(pk)),
    )
    .execute(conn)?;
    let Some(nhs_number) = nhs_number else {
        return Ok(());
    };
    let holder = patient_nhs_numbers::table
        .inner_join(resources::table.on(resources::pk.eq(patient_nhs_numbers::resource_pk)))
        .filter(patient_nhs_numbers::system_id.eq(system_id))
        .filter(patient_nhs_numbers::nhs_number.eq(nhs_number))
        .select(resources::id)
        .load::<String>(conn)
        .map(the_row)?;
    if let Some(existing) = holder {
        return Err(WriteError::DuplicateNhsNumber {
            nhs_number: nhs_number.to_owned(),
            existing,
        });
    }
    diesel::insert_into(patient_nhs_numbers::table)
        .values((
            patient_nhs_numbers::system_id.eq(system_id),
            patient_nhs_numbers::nhs_number.eq(nhs_number),
            patient_nhs_numbers::resource_pk.eq(pk),
        ))
        .execute(conn)?;
    Ok(())
}

/// The checks a write would make in its transaction, run read-only (for `$validate`): references
/// resolve, and a Patient's NHS number is not another Patient's.
pub fn precheck(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: Option<&ResourceId>,
    derived: &Derived,
) -> Result<(), WriteError> {
    let own = id.cloned().unwrap_or_else(ResourceId::generate);
    check_references(conn, system_id, rtype, &own, &derived.references)?;
    if let (ResourceType::Patient, Some(nhs_number)) = (rtype, derived.nhs_number.as_deref()) {
        let holder = patient_nhs_numbers::table
            .inner_join(resources::table.on(resources::pk.eq(patient_nhs_numbers::resource_pk)))
            .filter(patient_nhs_numbers::system_id.eq(system_id))
            .filter(patient_nhs_numbers::nhs_number.eq(nhs_number))
            .select(resources::id)
            .load::<String>(conn)
            .map(the_row)?;
        if let Some(existing) = holder.filter(|h| h != own.as_str()) {
            return Err(WriteError::DuplicateNhsNumber {
                nhs_number: nhs_number.to_owned(),
                existing,
            });
        }
    }
    Ok(())
}

/// Every referenced resource must exist, undeleted, in the same local system. A resource may
/// refer to itself.
pub fn check_references(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
    references: &[ReferenceCheck],
) -> Result<(), WriteError> {
    for target_type in ResourceType::ALL {
        let wanted: Vec<&ReferenceCheck> = references
            .iter()
            .filter(|r| r.resource_type == target_type)
            .filter(|r| !(r.resource_type == rtype && r.id == *id))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let ids: Vec<&str> = wanted.iter().map(|r| r.id.as_str()).collect();
        let found: Vec<String> = resources::table
            .filter(resources::system_id.eq(system_id))
            .filter(resources::resource_type.eq(target_type.as_str()))
            .filter(resources::id.eq_any(&ids))
            .filter(resources::deleted.eq(false))
            .select(resources::id)
            .load(conn)?;
        if let Some(missing) = wanted
            .iter()
            .find(|r| !found.iter().any(|f| f == r.id.as_str()))
        {
            return Err(WriteError::ReferenceNotFound {
                reference: format!("{}/{}", missing.resource_type, missing.id),
                expression: missing.expression.clone(),
            });
        }
    }
    Ok(())
}
