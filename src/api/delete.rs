//! # delete
//! <https://hl7.org/fhir/R4/http.html#delete>
//!
//! `DELETE [base]/[type]/[id]`
//!
//! - 204 No Content (200 with an OperationOutcome under `Prefer: return=OperationOutcome`), with
//!   the `ETag` of the delete; a later read answers 410 Gone
//! - Deleting a deleted resource changes nothing and answers the same.
//! - 404 when the resource never existed in this local system
//! - `If-Match: W/"n"`: 412 `PRECONDITION_FAILED` when n is not current

use actix_web::{web, HttpRequest, HttpResponse};

use super::bundle::run_one;
use super::conditional::respond;
use super::context::FhirRequest;
use super::response::{if_match, resource_id, resource_type};
use crate::bundle::{Entry, Method, Target};
use crate::error::ApiError;

pub async fn delete(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, type_name, raw_id) = path.into_inner();
    let rtype = resource_type(&type_name)?;
    let id = resource_id(&raw_id)?;
    let expected_version = if_match(&req)?;
    let entry = Entry {
        index: 0,
        full_url: None,
        method: Method::Delete,
        target: Target::Instance(rtype, id),
        resource: None,
        if_none_exist: None,
        if_match: expected_version,
        if_none_match: None,
    };
    let result = run_one(&ctx, entry).await?;
    Ok(respond(&ctx, rtype, &result))
}
