//! Conditional interactions (<https://hl7.org/fhir/R4/http.html#cond-update>): finding what a
//! search condition (`identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919`) matches, inside
//! the caller's transaction.
//!
//! Race-free: on PostgreSQL a transaction-scoped advisory lock on (local system, type, condition)
//! serialises writers that test the same condition, so two concurrent conditional creates cannot
//! both see "no match"; on SQLite every write transaction already holds the database write lock.

use crate::error::ApiError;
use crate::fhir::{ResourceId, ResourceType};
use crate::search::query;
use crate::search::sql::{self, Page};
use crate::search::Search;
use crate::store::search as store_search;
use crate::store::DbConnection;

/// One match of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub pk: i64,
    pub id: ResourceId,
}

/// Up to `limit` resources of `rtype` in the local system matching the search `condition`
/// (a query string without the leading `?`).
pub fn find(
    conn: &mut DbConnection,
    search: &Search,
    system_id: i64,
    base: &str,
    rtype: ResourceType,
    condition: &str,
    limit: usize,
) -> Result<Vec<Match>, ApiError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(condition).map_err(|e| {
        ApiError::invalid_parameter("condition", format!("'{condition}' is not a query: {e}"))
    })?;
    if params.is_empty() {
        return Err(ApiError::invalid_parameter(
            "condition",
            "a conditional interaction needs search parameters",
        ));
    }
    let request = query::parse(&search.registry, &[rtype], &params, false)
        .map_err(|e| ApiError::invalid_parameter(&e.param, e.message))?;
    if !request.includes.is_empty() || !request.revincludes.is_empty() || !request.sort.is_empty() {
        return Err(ApiError::invalid_parameter(
            "condition",
            "a condition cannot include, revinclude or sort",
        ));
    }
    lock(conn, system_id, rtype, condition)?;
    let page = Page {
        from: None,
        backwards: false,
        limit,
    };
    let hits = store_search::hits(conn, &sql::select(system_id, &request, base, &page))?;
    hits.into_iter()
        .map(|hit| {
            let id = ResourceId::parse(&hit.id)
                .ok_or_else(|| ApiError::Internal(format!("stored id '{}' is invalid", hit.id)))?;
            Ok(Match { pk: hit.pk, id })
        })
        .collect()
}

/// Serialises transactions that test the same condition (PostgreSQL; a no-op on SQLite).
fn lock(
    conn: &mut DbConnection,
    system_id: i64,
    rtype: ResourceType,
    condition: &str,
) -> Result<(), ApiError> {
    if let DbConnection::Pg(_) = conn {
        let key = fnv1a(&format!("{system_id}\u{1f}{rtype}\u{1f}{condition}"));
        let mut lock = sql::Sql::new("SELECT pg_advisory_xact_lock(");
        lock.bind(sql::Bind::Int(key));
        lock.push(")");
        store_search::execute(conn, &lock)?;
    }
    Ok(())
}

/// A stable 64-bit hash (FNV-1a), the same in every process.
fn fnv1a(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}
