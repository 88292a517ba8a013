//! # vread
//! <https://hl7.org/fhir/R4/http.html#vread>
//!
//! `GET [base]/[type]/[id]/_history/[vid]`
//!
//! - 200 with that version, `ETag` and `Last-Modified`
//! - 404 when the resource or version does not exist in this local system
//! - 410 when that version is a delete

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::context::FhirRequest;
use super::guard;
use super::response::{fhir, resource_id, resource_type, version_headers};
use crate::error::ApiError;
use crate::fhir::VersionId;
use crate::store::resources::{self, ReadResult};

pub async fn vread(
    ctx: FhirRequest,
    path: web::Path<(String, String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, type_name, raw_id, raw_version) = path.into_inner();
    let rtype = resource_type(&type_name)?;
    let id = resource_id(&raw_id)?;
    let not_found = || ApiError::NotFound(format!("{rtype}/{id}/_history/{raw_version}"));
    let version = VersionId::parse(&raw_version).ok_or_else(not_found)?;
    let system_id = ctx.system_id;
    let lookup = id.clone();
    let result = guard::read_guarded(
        &ctx,
        rtype,
        "vread",
        format!("{rtype}/{id}/_history/{version}"),
        move |conn| resources::read_version(conn, system_id, rtype, &lookup, version),
    )
    .await?;
    match result {
        ReadResult::Found(stored) => {
            let mut builder = fhir(StatusCode::OK);
            version_headers(&mut builder, stored.version, stored.last_updated);
            Ok(builder.body(stored.content))
        }
        ReadResult::Deleted { .. } => {
            Err(ApiError::Gone(format!("{rtype}/{id}/_history/{version}")))
        }
        ReadResult::NotFound => Err(not_found()),
    }
}
