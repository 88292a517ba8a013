//! Conditional interactions (<https://hl7.org/fhir/R4/http.html#cond-update>): finding what a
//! search condition (`identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919`) matches, inside
//! the caller's transaction.
//!
//! Race-free: on PostgreSQL a transaction-scoped advisory lock on (local system, type, condition)
//! serialises writers that test the same condition, so two concurrent conditional creates cannot
//! both see "no match"; on SQLite every write transaction already holds the database write lock.
//! A transaction takes the locks of every condition it tests before it looks anything up
//! ([`lock_all`]), all at once and in one order, so two transactions cannot each hold a lock the
//! other waits for.

use std::collections::HashMap;

use crate::error::ApiError;
use crate::fhir::{ResourceId, ResourceType};
use crate::search::query::{self, Clause, Predicate, TokenMatch};
use crate::search::registry::ParamType;
use crate::search::sql::{self, Bind, Page};
use crate::search::Search;
use crate::store::search as store_search;
use crate::store::{power_of_two_chunks, DbConnection};

/// One match of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub pk: i64,
    pub id: ResourceId,
}

/// A condition (a query string without the leading `?`) as the search it is.
fn parse(
    search: &Search,
    rtype: ResourceType,
    condition: &str,
) -> Result<query::SearchRequest, ApiError> {
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
    Ok(request)
}

/// Up to `limit` resources of `rtype` in the local system matching the search `condition`
/// (a query string without the leading `?`). The caller has locked the condition ([`lock_all`]).
pub fn find(
    conn: &mut DbConnection,
    search: &Search,
    system_id: i64,
    base: &str,
    rtype: ResourceType,
    condition: &str,
    limit: usize,
) -> Result<Vec<Match>, ApiError> {
    let request = parse(search, rtype, condition)?;
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

/// A condition that is one token parameter with a system and a code — how feeds match what they
/// send (`identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919`) — as (parameter, system,
/// code) after normalisation; `None` for any other condition.
fn single_code(
    search: &Search,
    rtype: ResourceType,
    condition: &str,
) -> Option<(String, String, String)> {
    let request = parse(search, rtype, condition).ok()?;
    match request.clauses.as_slice() {
        [Clause::Param {
            param,
            kind: ParamType::Token,
            negate: false,
            any_of,
        }] => match any_of.as_slice() {
            [Predicate::Token(TokenMatch::Code {
                system: Some(system),
                code,
            })] => Some((param.clone(), system.clone(), code.clone())),
            _ => None,
        },
        _ => None,
    }
}

#[derive(diesel::QueryableByName)]
struct CodeMatch {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pk: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    param: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    system: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    code: String,
}

/// What each of many conditions on `rtype` matches, for the conditions of the common form
/// ([`single_code`]), found with one query (a few for many conditions),
/// where [`find`] would take a round trip each. The answer has an entry for each condition it
/// handled; the caller runs [`find`] for the rest. The caller has locked them ([`lock_all`]).
pub fn find_many(
    conn: &mut DbConnection,
    search: &Search,
    system_id: i64,
    rtype: ResourceType,
    conditions: &[&str],
) -> Result<HashMap<String, Vec<Match>>, ApiError> {
    let simple: Vec<(&str, (String, String, String))> = conditions
        .iter()
        .filter_map(|c| single_code(search, rtype, c).map(|key| (*c, key)))
        .collect();
    let mut params: Vec<&str> = simple.iter().map(|(_, (p, _, _))| p.as_str()).collect();
    params.sort_unstable();
    params.dedup();
    let mut rows: Vec<CodeMatch> = Vec::new();
    for param in params {
        let mut codes: Vec<&str> = simple
            .iter()
            .filter(|(_, (p, _, _))| p == param)
            .map(|(_, (_, _, code))| code.as_str())
            .collect();
        codes.sort_unstable();
        codes.dedup();
        for chunk in power_of_two_chunks(&codes, MANY_PER_STATEMENT) {
            let sql = sql::token_codes(system_id, rtype, param, chunk);
            use diesel::RunQueryDsl;
            rows.extend(
                store_search::prepared(conn, &sql)
                    .load::<CodeMatch>(conn)
                    .map_err(crate::store::StoreError::from)?,
            );
        }
    }
    rows.sort_by_key(|r| r.pk);
    let mut found: HashMap<String, Vec<Match>> = HashMap::new();
    for (condition, (param, system, code)) in &simple {
        let mut matches: Vec<Match> = Vec::new();
        for row in rows
            .iter()
            .filter(|r| &r.param == param && &r.system == system && &r.code == code)
        {
            if matches.iter().any(|m| m.pk == row.pk) {
                continue;
            }
            let id = ResourceId::parse(&row.id)
                .ok_or_else(|| ApiError::Internal(format!("stored id '{}' is invalid", row.id)))?;
            matches.push(Match { pk: row.pk, id });
        }
        found.insert((*condition).to_owned(), matches);
    }
    Ok(found)
}

/// Conditions answered by one statement at most. Statements take powers of two of them (23: 16 +
/// 4 + 2 + 1), so a few statement texts serve every bundle and stay prepared.
const MANY_PER_STATEMENT: usize = 64;

/// Locks the conditions a transaction tests (PostgreSQL; a no-op on SQLite), in one order
/// (ascending keys), until the transaction ends.
pub fn lock_all(
    conn: &mut DbConnection,
    system_id: i64,
    conditions: &[(ResourceType, String)],
) -> Result<(), ApiError> {
    if let DbConnection::Pg(_) = conn {
        let mut keys: Vec<i64> = conditions
            .iter()
            .map(|(rtype, condition)| lock_key(system_id, *rtype, condition))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // Taken in the order the VALUES list them.
        for chunk in power_of_two_chunks(&keys, MANY_PER_STATEMENT) {
            let mut lock = sql::Sql::new("SELECT pg_advisory_xact_lock(k) FROM (VALUES ");
            for (i, key) in chunk.iter().enumerate() {
                lock.push(if i == 0 { "(" } else { ", (" });
                lock.bind(Bind::Int(*key));
                lock.push("::bigint)");
            }
            lock.push(") AS keys (k)");
            store_search::execute(conn, &lock)?;
        }
    }
    Ok(())
}

fn lock_key(system_id: i64, rtype: ResourceType, condition: &str) -> i64 {
    fnv1a(&format!("{system_id}\u{1f}{rtype}\u{1f}{condition}"))
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
