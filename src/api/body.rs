//! The request body of a FHIR write: JSON media type only (415 otherwise), read up to the
//! configured limit (413 past it) without buffering more than the limit.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;

use super::AppState;
use crate::error::ApiError;
use crate::settings::DEFAULT_MAX_BODY_BYTES;

/// A FHIR JSON request body.
pub struct FhirBody(pub Bytes);

impl std::ops::Deref for FhirBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl FromRequest for FhirBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.settings.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        let checked = check_content_type(req).and_then(|()| check_declared_length(req, limit));
        let mut payload = payload.take();
        Box::pin(async move {
            checked?;
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::invalid_parameter("body", e.to_string()))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Self(body.freeze()))
        })
    }
}

/// Accepts `application/fhir+json` and `application/json` (any parameters, e.g. `fhirVersion=4.0`);
/// a body without a content type is read as FHIR JSON.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().map_err(|_| ApiError::UnsupportedMediaType {
        found: "(unreadable)".into(),
        expected: "application/fhir+json",
    })?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/fhir+json"
        | "application/json"
        | "application/json+fhir"
        | "application/json-patch+json" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType {
            found: essence,
            expected: "application/fhir+json",
        }),
    }
}

fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => Err(ApiError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}
