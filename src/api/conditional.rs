//! # conditional create, update, delete, and PATCH
//! <https://hl7.org/fhir/R4/http.html#ccreate>, <https://hl7.org/fhir/R4/http.html#cond-update>,
//! <https://hl7.org/fhir/R4/http.html#3.1.0.7.1>, <https://hl7.org/fhir/R4/http.html#patch>
//!
//! - `POST [base]/[type]` with `If-None-Exist: [search]`: no match → 201 (created); one match →
//!   200 with the existing resource; several → 412.
//! - `PUT [base]/[type]?[search]`: no match → create (201; the body's id if it has one); one →
//!   update it (200); several → 412.
//! - `DELETE [base]/[type]?[search]`: deletes every match (204), at most 100 (412 beyond).
//! - `PATCH [base]/[type]/[id]` and `PATCH [base]/[type]?[search]` with
//!   `application/json-patch+json`: 200 with the result; a failing operation or an invalid result
//!   → 422; `If-Match` → 412 when stale.
//!
//! Race-free: concurrent conditional creates of one condition yield one resource (see
//! `bundle::conditional`).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::body::FhirBody;
use super::bundle::run_one;
use super::context::{FhirRequest, ReturnPreference};
use super::response::{fhir, if_match, resource_id, resource_type};
use crate::bundle::{patch, Entry, EntryResult, Method, Target};
use crate::error::ApiError;
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::resource::{parse_object, parse_resource};
use crate::fhir::ResourceType;

/// The query string of a conditional request (400 when there is none).
fn condition(ctx: &FhirRequest, req: &HttpRequest) -> Result<String, ApiError> {
    let query = req.query_string();
    if ctx.specific_params().next().is_none() {
        return Err(ApiError::invalid_parameter(
            "condition",
            "a conditional request needs search parameters",
        ));
    }
    Ok(query.to_owned())
}

/// The HTTP answer to one entry's result: status, version headers, `Location` for a create, and
/// the body `Prefer: return` asks for.
pub fn respond(ctx: &FhirRequest, rtype: ResourceType, result: &EntryResult) -> HttpResponse {
    let status = StatusCode::from_u16(result.status).unwrap_or(StatusCode::OK);
    if result.status == 204 && ctx.prefer.return_preference != ReturnPreference::OperationOutcome {
        let mut builder = HttpResponse::NoContent();
        if let Some(v) = result.version {
            builder.insert_header((header::ETAG, v.etag()));
        }
        return builder.finish();
    }
    // A delete with `Prefer: return=OperationOutcome` answers 200 with the outcome.
    let status = if status == StatusCode::NO_CONTENT {
        StatusCode::OK
    } else {
        status
    };
    let mut builder = fhir(status);
    if let Some(v) = result.version {
        builder.insert_header((header::ETAG, v.etag()));
    }
    if let Some(m) = result.last_modified {
        builder.insert_header((header::LAST_MODIFIED, m.to_http_date()));
    }
    if let (Some(location), true) = (&result.location, result.status == 201) {
        builder.insert_header((header::LOCATION, format!("{}/{location}", ctx.base)));
    }
    match ctx.prefer.return_preference {
        ReturnPreference::Representation => {
            builder.body(result.resource.clone().unwrap_or_default())
        }
        ReturnPreference::Minimal => builder.finish(),
        ReturnPreference::OperationOutcome => builder.body(
            operation_outcome(&[Issue::information(format!(
                "{} {rtype}",
                status.canonical_reason().unwrap_or("Done")
            ))])
            .to_string(),
        ),
    }
}

/// `POST [base]/[type]` with `If-None-Exist`.
pub async fn create(
    ctx: FhirRequest,
    rtype: ResourceType,
    condition: String,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let resource = parse_resource(body, rtype)?;
    let entry = Entry {
        index: 0,
        full_url: None,
        method: Method::Post,
        target: Target::Type(rtype),
        resource: Some(resource),
        if_none_exist: Some(condition.trim_start_matches('?').to_owned()),
        if_match: None,
        if_none_match: None,
    };
    let result = run_one(&ctx, entry).await?;
    Ok(respond(&ctx, rtype, &result))
}

/// `PUT [base]/[type]?[search]`
pub async fn update(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let condition = condition(&ctx, &req)?;
    let resource = parse_resource(&body, rtype)?;
    if let Some(id) = resource.get("id") {
        if !id.is_string() {
            return Err(ApiError::IdMismatch(
                "the resource's id must be a string".into(),
            ));
        }
    }
    let entry = Entry {
        index: 0,
        full_url: None,
        method: Method::Put,
        target: Target::Conditional(rtype, condition),
        resource: Some(resource),
        if_none_exist: None,
        if_match: if_match(&req)?,
        if_none_match: None,
    };
    let result = run_one(&ctx, entry).await?;
    Ok(respond(&ctx, rtype, &result))
}

/// `DELETE [base]/[type]?[search]`
pub async fn delete(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let condition = condition(&ctx, &req)?;
    let entry = Entry {
        index: 0,
        full_url: None,
        method: Method::Delete,
        target: Target::Conditional(rtype, condition),
        resource: None,
        if_none_exist: None,
        if_match: None,
        if_none_match: None,
    };
    let result = run_one(&ctx, entry).await?;
    Ok(respond(&ctx, rtype, &result))
}

/// `PATCH [base]/[type]/[id]`
pub async fn patch_instance(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    patch_entry(ctx, &req, rtype, Target::Instance(rtype, id), &body).await
}

/// `PATCH [base]/[type]?[search]`
pub async fn patch_conditional(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let condition = condition(&ctx, &req)?;
    patch_entry(
        ctx,
        &req,
        rtype,
        Target::Conditional(rtype, condition),
        &body,
    )
    .await
}

async fn patch_entry(
    ctx: FhirRequest,
    req: &HttpRequest,
    rtype: ResourceType,
    target: Target,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with(patch::JSON_PATCH) {
        return Err(ApiError::UnsupportedMediaType {
            found: content_type.to_owned(),
            expected: patch::JSON_PATCH,
        });
    }
    let document: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidBody(crate::fhir::resource::BodyError::Malformed {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    })?;
    patch::parse(&document)?;
    // The engine takes a PATCH entry's patch as a Binary, as transactions carry it.
    let binary = serde_json::json!({
        "resourceType": "Binary",
        "contentType": patch::JSON_PATCH,
        "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body),
    });
    let entry = Entry {
        index: 0,
        full_url: None,
        method: Method::Patch,
        target,
        resource: parse_object(binary.to_string().as_bytes()).ok(),
        if_none_exist: None,
        if_match: if_match(req)?,
        if_none_match: None,
    };
    let result = run_one(&ctx, entry).await?;
    Ok(respond(&ctx, rtype, &result))
}
