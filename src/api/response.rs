//! Shared pieces of handler responses: FHIR JSON bodies, version headers, `Prefer: return`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder};

use super::context::FhirRequest;
use crate::error::ApiError;
use crate::fhir::instant::Millis;
use crate::fhir::{ResourceId, ResourceType, VersionId, FHIR_JSON};

/// A response builder with the FHIR JSON content type.
pub fn fhir(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::CONTENT_TYPE, FHIR_JSON));
    builder
}

/// Adds `ETag` and `Last-Modified` for a version.
pub fn version_headers(
    builder: &mut HttpResponseBuilder,
    version: VersionId,
    last_updated: Millis,
) {
    builder.insert_header((header::ETAG, version.etag()));
    builder.insert_header((header::LAST_MODIFIED, last_updated.to_http_date()));
}

/// The resource type named in the URL, or 404 naming what is supported.
pub fn resource_type(name: &str) -> Result<ResourceType, ApiError> {
    ResourceType::parse(name).ok_or_else(|| ApiError::unsupported_type(name))
}

/// The resource id named in the URL, or 400.
pub fn resource_id(value: &str) -> Result<ResourceId, ApiError> {
    ResourceId::parse(value).ok_or_else(|| ApiError::InvalidId {
        value: value.to_owned(),
        expression: "id".into(),
    })
}

/// The version named by an `If-Match` header, if any (400 when it is not an entity tag).
pub fn if_match(req: &actix_web::HttpRequest) -> Result<Option<VersionId>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(VersionId::parse_etag)
        .map(Some)
        .ok_or_else(|| ApiError::InvalidHeader {
            name: "If-Match",
            reason: "expected a version entity tag such as W/\"3\"".into(),
        })
}

/// Rejects query parameters the endpoint does not understand, unless `Prefer: handling=lenient`.
pub fn reject_unknown_params(ctx: &FhirRequest, known: &[&str]) -> Result<(), ApiError> {
    use super::context::Handling;
    if ctx.prefer.handling == Handling::Lenient {
        return Ok(());
    }
    match ctx
        .specific_params()
        .find(|(name, _)| !known.contains(&name.as_str()))
    {
        Some((name, _)) => Err(ApiError::invalid_parameter(
            name,
            "this parameter is not supported here",
        )),
        None => Ok(()),
    }
}

/// The answer to a failed write.
pub fn write_error(
    err: crate::store::resources::WriteError,
    rtype: ResourceType,
    id: Option<&ResourceId>,
) -> ApiError {
    ApiError::from_write(err, rtype, id)
}
