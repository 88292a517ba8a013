//! # read
//! <https://hl7.org/fhir/R4/http.html#read>
//!
//! `GET [base]/[type]/[id]`
//!
//! - 200 with the current version, `ETag: W/"n"` and `Last-Modified`
//! - 304 when `If-None-Match` names the current version (or `*`), or the resource has not changed
//!   since `If-Modified-Since`
//! - 404 when the resource does not exist in this local system; 410 when it is deleted

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::context::FhirRequest;
use super::guard;
use super::response::{fhir, resource_id, resource_type, version_headers};
use crate::error::ApiError;
use crate::fhir::instant::Millis;
use crate::fhir::VersionId;
use crate::store::resources::{self, ReadResult, StoredVersion};

pub async fn read(
    ctx: FhirRequest,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, type_name, raw_id) = path.into_inner();
    let rtype = resource_type(&type_name)?;
    let id = resource_id(&raw_id)?;
    let system_id = ctx.system_id;
    let lookup = id.clone();
    let result = guard::read_guarded(&ctx, rtype, "read", format!("{rtype}/{id}"), move |conn| {
        resources::read_current(conn, system_id, rtype, &lookup)
    })
    .await?;
    match result {
        ReadResult::Found(stored) => {
            if not_modified(&req, &stored) {
                let mut builder = HttpResponse::NotModified();
                version_headers(&mut builder, stored.version, stored.last_updated);
                return Ok(builder.finish());
            }
            let mut builder = fhir(StatusCode::OK);
            version_headers(&mut builder, stored.version, stored.last_updated);
            Ok(builder.body(stored.content))
        }
        ReadResult::Deleted { .. } => Err(ApiError::Gone(format!("{rtype}/{id}"))),
        ReadResult::NotFound => Err(ApiError::not_found(rtype, id.as_str())),
    }
}

/// `If-None-Match` wins over `If-Modified-Since` when both are sent (RFC 7232 §6).
fn not_modified(req: &HttpRequest, stored: &StoredVersion) -> bool {
    if let Some(value) = req.headers().get(header::IF_NONE_MATCH) {
        let Ok(text) = value.to_str() else {
            return false;
        };
        return text
            .split(',')
            .any(|tag| tag.trim() == "*" || VersionId::parse_etag(tag) == Some(stored.version));
    }
    if let Some(since) = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(Millis::parse_http_date)
    {
        return stored.last_updated.whole_seconds() <= since.whole_seconds();
    }
    false
}
