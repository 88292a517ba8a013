//! # update
//! <https://hl7.org/fhir/R4/http.html#update>
//!
//! `PUT [base]/[type]/[id]` with a resource whose `id` equals `[id]`
//!
//! - 200 with the new version (`ETag`, `Last-Modified`); 201 with `Location` when the resource did
//!   not exist (update-as-create with the client's id)
//! - Content equal to the current version (apart from `meta.versionId`/`meta.lastUpdated`)
//!   creates no new version: 200 with the current one.
//! - `If-Match: W/"n"`: 412 `PRECONDITION_FAILED` when n is not current; 404 when the resource
//!   does not exist
//! - 400 missing or different body id, malformed or invalid body; 409 when concurrent writers keep
//!   winning the race

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::body::FhirBody;
use super::bundle::run_one;
use super::conditional::respond;
use super::context::FhirRequest;
use super::response::{if_match, resource_id, resource_type};
use crate::bundle::{Entry, Method, Target};
use crate::error::ApiError;
use crate::fhir::resource::parse_resource;

pub async fn update(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let (_, type_name, raw_id) = path.into_inner();
    let rtype = resource_type(&type_name)?;
    let id = resource_id(&raw_id)?;
    let expected_version = if_match(&req)?;
    let content = parse_resource(&body, rtype)?;
    match content.get("id") {
        None => {
            return Err(ApiError::IdMismatch(format!(
                "the resource has no id; an update must carry the id in the URL ({id})"
            )))
        }
        Some(Value::String(body_id)) if body_id == id.as_str() => {}
        Some(other) => {
            return Err(ApiError::IdMismatch(format!(
                "the id in the resource ({other}) differs from the id in the URL ({id})"
            )))
        }
    }
    let entry = Entry {
        index: 0,
        full_url: None,
        method: Method::Put,
        target: Target::Instance(rtype, id),
        resource: Some(content),
        if_none_exist: None,
        if_match: expected_version,
        if_none_match: None,
    };
    let result = run_one(&ctx, entry).await?;
    Ok(respond(&ctx, rtype, &result))
}
