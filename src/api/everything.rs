//! # Patient $everything
//! <https://hl7.org/fhir/R4/patient-operation-everything.html>
//!
//! `GET|POST [base]/Patient/[id]/$everything` (and `[base]/Patient/$everything?_id=[id]`)
//!
//! - 200 with a `searchset` Bundle: the Patient, every resource in its compartment (Encounters,
//!   referrals...), and the Organizations, Practitioners, PractitionerRoles and Locations they
//!   refer to — the clinician's view of the record. `_since` (instant), `_type` (list) and
//!   `_count` (default 50, at most 1000) narrow it; `next`/`previous` links page it by key.
//! - 404 when the Patient does not exist here, 410 when it is deleted; 400 for bad parameters.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::context::FhirRequest;
use super::response::{fhir, reject_unknown_params, resource_id};
use crate::error::ApiError;
use crate::fhir::bundle::{SearchMode, SearchsetBuilder};
use crate::fhir::instant::Millis;
use crate::fhir::{ResourceId, ResourceType};
use crate::search::paging;
use crate::search::query::{DEFAULT_COUNT, MAX_COUNT};
use crate::search::sql::{self, Page, Position};
use crate::store::resources::{self, ReadResult};
use crate::store::search as store_search;

pub async fn instance(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let id = resource_id(&path.1)?;
    run(ctx, id, format!("Patient/{}/$everything", path.1)).await
}

pub async fn type_level(ctx: FhirRequest) -> Result<HttpResponse, ApiError> {
    let id = ctx
        .params
        .iter()
        .find(|(name, _)| name == "_id")
        .map(|(_, value)| value.clone())
        .ok_or_else(|| {
            ApiError::invalid_parameter("_id", "Patient/$everything needs _id naming one Patient")
        })?;
    let id = ResourceId::parse(&id)
        .ok_or_else(|| ApiError::invalid_parameter("_id", "must be one Patient id"))?;
    run(ctx, id, "Patient/$everything".to_owned()).await
}

async fn run(ctx: FhirRequest, id: ResourceId, path: String) -> Result<HttpResponse, ApiError> {
    reject_unknown_params(&ctx, &["_since", "_type", "_count", "_cursor", "_id"])?;
    let mut since = None;
    let mut types = Vec::new();
    let mut count = DEFAULT_COUNT;
    let mut cursor = None;
    for (name, value) in ctx.specific_params() {
        match name.as_str() {
            "_since" => {
                since = Some(
                    Millis::parse_fhir(value)
                        .ok_or_else(|| {
                            ApiError::invalid_parameter(
                                "_since",
                                "must be an instant such as 2026-01-01T00:00:00Z",
                            )
                        })?
                        .0,
                )
            }
            "_type" => {
                for t in value.split(',') {
                    types.push(ResourceType::parse(t.trim()).ok_or_else(|| {
                        ApiError::invalid_parameter(
                            "_type",
                            format!("{t} is not a resource type this server stores"),
                        )
                    })?);
                }
            }
            "_count" => {
                count = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter("_count", format!("must be 1 to {MAX_COUNT}"))
                    })?
            }
            "_cursor" => cursor = Some(value.clone()),
            _ => {}
        }
    }
    let page = match &cursor {
        Some(c) => paging::decode(c, count, &[]).ok_or_else(|| {
            ApiError::invalid_parameter("_cursor", "is not a cursor this server issued")
        })?,
        None => Page {
            from: None,
            backwards: false,
            limit: count + 1,
        },
    };
    let system_id = ctx.system_id;
    let compartment: Vec<String> = ctx
        .state
        .search
        .compartment
        .member_types()
        .flat_map(|t| ctx.state.search.compartment.params(t).to_vec())
        .collect();
    let patient = id.clone();
    let query_page = page.clone();
    let caller = ctx.caller.clone();
    let statistics_due = ctx.state.db.statistics_due();
    let hits = ctx
        .state
        .db
        .run(move |conn| {
            let what = format!("Patient/{patient}");
            crate::api::guard::visible(
                conn,
                system_id,
                caller.as_ref(),
                Some(patient.as_str()),
                &what,
            )?;
            match resources::read_current(conn, system_id, ResourceType::Patient, &patient)? {
                ReadResult::Found(_) => {}
                ReadResult::Deleted { .. } => {
                    return Err(ApiError::Gone(format!("Patient/{patient}")))
                }
                ReadResult::NotFound => {
                    return Err(ApiError::not_found(ResourceType::Patient, patient.as_str()))
                }
            }
            if let Some(statistics) = &statistics_due {
                statistics.refresh(conn)?;
            }
            let sql = sql::everything(
                system_id,
                patient.as_str(),
                &compartment,
                &types,
                since,
                &query_page,
            );
            Ok::<_, ApiError>(store_search::hits(conn, &sql)?)
        })
        .await?;
    crate::api::guard::audit_reads(
        &ctx,
        vec![crate::api::guard::read_access(
            "everything",
            format!("Patient/{id}/$everything"),
            Some(id.to_string()),
        )],
    )
    .await?;
    let mut hits = hits;
    let more = hits.len() > count;
    hits.truncate(count);
    if page.backwards {
        hits.reverse();
    }
    let (has_next, has_previous) = if page.backwards {
        (page.from.is_some(), more)
    } else {
        (more, page.from.is_some())
    };
    let echo: Vec<(String, String)> = ctx
        .specific_params()
        .filter(|(n, _)| n != "_cursor")
        .cloned()
        .collect();
    let link = |cursor: Option<String>| {
        let mut pairs = echo.clone();
        if let Some(c) = cursor {
            pairs.push(("_cursor".into(), c));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            format!("{}/{path}", ctx.base)
        } else {
            format!("{}/{path}?{query}", ctx.base)
        }
    };
    let position = |pk: i64| Position {
        keys: Vec::new(),
        pk,
    };
    let mut bundle = SearchsetBuilder::default();
    if page.from.is_none() && !page.backwards && !more {
        bundle.total(Some(hits.len() as u64));
    }
    bundle.link("self", link(cursor.clone()));
    bundle.link("first", link(None));
    if let (true, Some(last)) = (has_next, hits.last()) {
        bundle.link(
            "next",
            link(Some(paging::encode(&position(last.pk), false))),
        );
    }
    if let (true, Some(first)) = (has_previous, hits.first()) {
        bundle.link(
            "previous",
            link(Some(paging::encode(&position(first.pk), true))),
        );
    }
    for hit in hits {
        let Some(content) = hit.content else { continue };
        bundle
            .entry(
                Some(format!("{}/{}/{}", ctx.base, hit.resource_type, hit.id)),
                content,
                SearchMode::Match,
            )
            .map_err(|e| ApiError::Internal(format!("stored JSON: {e}")))?;
    }
    let body = bundle
        .to_json()
        .map_err(|e| ApiError::Internal(format!("bundle: {e}")))?;
    Ok(fhir(StatusCode::OK).body(body))
}
