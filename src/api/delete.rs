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

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::context::{FhirRequest, ReturnPreference};
use super::response::{fhir, if_match, resource_id, resource_type, write_error};
use crate::error::ApiError;
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::store::resources::{self, Deleted};

pub async fn delete(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, type_name, raw_id) = path.into_inner();
    let rtype = resource_type(&type_name)?;
    let id = resource_id(&raw_id)?;
    let expected_version = if_match(&req)?;
    let system_id = ctx.system_id;
    let target = id.clone();
    let result = ctx
        .state
        .db
        .run(move |conn| {
            Ok::<_, ApiError>(resources::delete(
                conn,
                system_id,
                rtype,
                &target,
                expected_version,
            ))
        })
        .await?;
    let (version, message) = match result.map_err(|e| write_error(e, rtype, Some(&id)))? {
        Deleted::NotFound => return Err(ApiError::not_found(rtype, id.as_str())),
        Deleted::Deleted { version, .. } => (version, format!("Deleted {rtype}/{id}")),
        Deleted::AlreadyDeleted { version } => {
            (version, format!("{rtype}/{id} was already deleted"))
        }
    };
    let response = if ctx.prefer.return_preference == ReturnPreference::OperationOutcome {
        fhir(StatusCode::OK)
            .insert_header((actix_web::http::header::ETAG, version.etag()))
            .body(operation_outcome(&[Issue::information(message)]).to_string())
    } else {
        HttpResponse::NoContent()
            .insert_header((actix_web::http::header::ETAG, version.etag()))
            .finish()
    };
    Ok(response)
}
