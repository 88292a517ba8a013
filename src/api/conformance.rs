//! # Conformance resources (read-only)
//! <https://hl7.org/fhir/R4/http.html#read>, <https://hl7.org/fhir/R4/http.html#search>
//!
//! `GET [base]/[type]/[id]` and `GET [base]/[type]?url=...` for StructureDefinition, ValueSet,
//! CodeSystem, SearchParameter and OperationDefinition: the definitions the server runs on
//! (`schema/`: R4; `fhir-profiles/`: UK Core and this project's own), as published.
//!
//! - read: 200, or 404 when no such definition
//! - search: 200 with a `searchset` Bundle; parameters `url` (canonical, a `|version` suffix is
//!   ignored), `_id`, `name`, `_count` (1..=100, default 20) and `_offset` for paging;
//!   400 for anything else (unless `Prefer: handling=lenient`)
//! - any write answers 405: these resources change with the software, not through the API.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::context::FhirRequest;
use super::response::{fhir, reject_unknown_params, resource_id};
use crate::error::ApiError;

/// The conformance resource types served, as one route pattern alternative.
pub const TYPES_PATTERN: &str =
    "StructureDefinition|ValueSet|CodeSystem|SearchParameter|OperationDefinition";

const DEFAULT_COUNT: usize = 20;
const MAX_COUNT: usize = 100;

pub async fn read(
    ctx: FhirRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, ctype, raw_id) = path.into_inner();
    let id = resource_id(&raw_id)?;
    let defs = ctx.state.validator.definitions();
    let found = defs
        .conformance(&ctype)
        .find(|r| r["id"].as_str() == Some(id.as_str()))
        .ok_or_else(|| ApiError::NotFound(format!("{ctype}/{id}")))?;
    Ok(fhir(StatusCode::OK).body(found.to_string()))
}

pub async fn search(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, ctype) = path.into_inner();
    reject_unknown_params(&ctx, &["url", "_id", "name", "_count", "_offset"])?;
    let mut count = DEFAULT_COUNT;
    let mut offset = 0usize;
    for (name, value) in ctx.specific_params() {
        match name.as_str() {
            "_count" => {
                count = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter("_count", format!("must be 1 to {MAX_COUNT}"))
                    })?
            }
            "_offset" => {
                offset = value
                    .parse()
                    .map_err(|_| ApiError::invalid_parameter("_offset", "must be a whole number"))?
            }
            _ => {}
        }
    }
    let matches = |resource: &Value| {
        ctx.specific_params()
            .all(|(name, value)| match name.as_str() {
                "url" => resource["url"].as_str() == Some(value.split('|').next().unwrap_or(value)),
                "_id" => value
                    .split(',')
                    .any(|id| resource["id"].as_str() == Some(id)),
                "name" => resource["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase().starts_with(&value.to_lowercase())),
                _ => true,
            })
    };
    let defs = ctx.state.validator.definitions();
    let all: Vec<&Value> = defs
        .conformance(&ctype)
        .map(|r| &**r)
        .filter(|r| matches(r))
        .collect();
    let total = all.len();
    let entries: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(count)
        .map(|r| {
            json!({
                "fullUrl": format!("{}/{ctype}/{}", ctx.base, r["id"].as_str().unwrap_or_default()),
                "resource": r,
                "search": {"mode": "match"},
            })
        })
        .collect();
    let query = |offset: usize| {
        let mut pairs: Vec<(String, String)> = ctx
            .specific_params()
            .filter(|(n, _)| n != "_count" && n != "_offset")
            .cloned()
            .collect();
        pairs.push(("_count".into(), count.to_string()));
        pairs.push(("_offset".into(), offset.to_string()));
        format!(
            "{}/{ctype}?{}",
            ctx.base,
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    };
    let mut links = vec![json!({"relation": "self", "url": query(offset)})];
    if offset + count < total {
        links.push(json!({"relation": "next", "url": query(offset + count)}));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    });
    Ok(fhir(StatusCode::OK).body(bundle.to_string()))
}
