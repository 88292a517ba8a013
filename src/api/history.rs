//! # history
//! <https://hl7.org/fhir/R4/http.html#history>
//!
//! `GET [base]/_history`, `GET [base]/[type]/_history`, `GET [base]/[type]/[id]/_history`
//!
//! - 200 with a Bundle of type `history`: every version (deletes as entries without a resource,
//!   `request.method` DELETE), newest first
//! - `_count` (1..=1000, default 50) with a `next` link while more remain; `_since` (instant)
//!   keeps versions at or after it. Paging is keyset-based: a `next` link stays valid while data
//!   changes and never repeats or skips a version.
//! - Instance history carries `total`; 404 when the resource never existed here
//! - 400 for a malformed `_count`/`_since` or an unknown parameter (unless `Prefer: handling=lenient`)

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::value::RawValue;

use super::context::FhirRequest;
use super::guard;
use super::response::{fhir, reject_unknown_params, resource_id, resource_type};
use crate::error::ApiError;
use crate::fhir::bundle::{Bundle, HistoryEntry};
use crate::fhir::instant::Millis;
use crate::settings::{DEFAULT_HISTORY_COUNT, MAX_HISTORY_COUNT};
use crate::store::history::{self, Cursor, Scope};
use crate::store::resources;

const PARAMS: [&str; 3] = ["_count", "_since", "_cursor"];

pub async fn system_history(ctx: FhirRequest) -> Result<HttpResponse, ApiError> {
    respond(ctx, Scope::System, "_history".into()).await
}

pub async fn type_history(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    respond(ctx, Scope::Type(rtype), format!("{rtype}/_history")).await
}

pub async fn instance_history(
    ctx: FhirRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let system_id = ctx.system_id;
    // Who may see the resource may see its history; the access is audited.
    let lookup = id.clone();
    guard::read_guarded(
        &ctx,
        rtype,
        "history-instance",
        format!("{rtype}/{id}/_history"),
        move |conn| resources::read_current(conn, system_id, rtype, &lookup),
    )
    .await?;
    let system_id = ctx.system_id;
    let lookup = id.clone();
    let key = ctx
        .state
        .db
        .run(move |conn| {
            Ok::<_, ApiError>(resources::resource_key(conn, system_id, rtype, &lookup)?)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(rtype, id.as_str()))?;
    respond(ctx, Scope::Instance(key), format!("{rtype}/{id}/_history")).await
}

struct Params {
    count: i64,
    since: Option<Millis>,
    cursor: Option<Cursor>,
}

fn parse_params(ctx: &FhirRequest) -> Result<Params, ApiError> {
    reject_unknown_params(ctx, &PARAMS)?;
    let mut params = Params {
        count: DEFAULT_HISTORY_COUNT,
        since: None,
        cursor: None,
    };
    for (name, value) in ctx.specific_params() {
        match name.as_str() {
            "_count" => {
                params.count = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_HISTORY_COUNT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(
                            "_count",
                            format!("must be a whole number from 1 to {MAX_HISTORY_COUNT}"),
                        )
                    })?;
            }
            "_since" => {
                params.since = Some(Millis::parse_fhir(value).ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "_since",
                        "must be a FHIR instant such as 2026-01-01T00:00:00Z",
                    )
                })?);
            }
            "_cursor" => {
                params.cursor = Some(Cursor::decode(value).ok_or_else(|| {
                    ApiError::invalid_parameter("_cursor", "is not a cursor this server issued")
                })?);
            }
            _ => {}
        }
    }
    Ok(params)
}

async fn respond(ctx: FhirRequest, scope: Scope, path: String) -> Result<HttpResponse, ApiError> {
    let params = parse_params(&ctx)?;
    let system_id = ctx.system_id;
    let Params {
        count,
        since,
        cursor,
    } = params;
    let (mut rows, total) = ctx
        .state
        .db
        .run(move |conn| {
            // One extra row tells whether a next page exists.
            let rows = history::versions(conn, system_id, scope, since, cursor, count + 1)?;
            let total = match scope {
                Scope::Instance(pk) if cursor.is_none() => Some(history::count_instance_versions(
                    conn, system_id, pk, since,
                )?),
                _ => None,
            };
            Ok::<_, ApiError>((rows, total))
        })
        .await?;

    let has_more = rows.len() as i64 > count;
    rows.truncate(usize::try_from(count).unwrap_or(usize::MAX));
    // Type and system history across patients: versions of records the caller may not see are
    // left out (a clinician without break-glass and restricted records), and the access audited.
    let owners: Vec<Option<String>> = rows
        .iter()
        .map(|row| {
            crate::fhir::ResourceType::parse(&row.resource_type)
                .and_then(|t| row.content.as_deref().and_then(|c| guard::owner(t, c)))
        })
        .collect();
    if !matches!(scope, Scope::Instance(_)) {
        let distinct: Vec<String> = owners
            .iter()
            .flatten()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let caller = ctx.caller.clone();
        let lookup = distinct.clone();
        let hidden = ctx
            .state
            .db
            .run(move |conn| guard::hidden_patients(conn, system_id, caller.as_ref(), &lookup))
            .await?;
        let kept: Vec<(history::HistoryRow, Option<String>)> = rows
            .into_iter()
            .zip(owners)
            .filter(|(_, owner)| owner.as_ref().is_none_or(|o| !hidden.contains(o)))
            .collect();
        let seen: std::collections::BTreeSet<String> =
            kept.iter().filter_map(|(_, o)| o.clone()).collect();
        let accesses: Vec<crate::audit::Access> = if seen.is_empty() {
            vec![guard::read_access("history", path.clone(), None)]
        } else {
            seen.into_iter()
                .map(|p| guard::read_access("history", path.clone(), Some(p)))
                .collect()
        };
        guard::audit_reads(&ctx, accesses).await?;
        rows = kept.into_iter().map(|(row, _)| row).collect();
    }
    let next = has_more
        .then(|| rows.last().map(|row| row.cursor()))
        .flatten()
        .map(|cursor| link(&ctx.base, &path, count, since, Some(cursor)));
    let self_link = link(&ctx.base, &path, count, since, cursor);

    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let resource = row
            .content
            .map(RawValue::from_string)
            .transpose()
            .map_err(|e| ApiError::Internal(format!("stored JSON is corrupt: {e}")))?;
        let request_url = if row.method == "POST" {
            row.resource_type.clone()
        } else {
            format!("{}/{}", row.resource_type, row.id)
        };
        entries.push(HistoryEntry {
            full_url: format!("{}/{}/{}", ctx.base, row.resource_type, row.id),
            resource,
            method: row.method,
            request_url,
            version: row.version_id,
            last_updated: Millis(row.last_updated),
        });
    }
    let bundle = Bundle::history(self_link, next, total, entries);
    let body = serde_json::to_string(&bundle)
        .map_err(|e| ApiError::Internal(format!("serialising history: {e}")))?;
    Ok(fhir(StatusCode::OK).body(body))
}

fn link(
    base: &str,
    path: &str,
    count: i64,
    since: Option<Millis>,
    cursor: Option<Cursor>,
) -> String {
    let mut query = vec![("_count", count.to_string())];
    if let Some(since) = since {
        query.push(("_since", since.to_instant()));
    }
    if let Some(cursor) = cursor {
        query.push(("_cursor", cursor.encode()));
    }
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    format!("{base}/{path}?{encoded}")
}
