//! The request context every FHIR handler starts from: the local system named in the URL
//! (404 when unknown), the base URL, content negotiation, `Prefer`, and the query parameters.
//! It is the one place a later access-control layer adds the caller.

use std::collections::HashMap;
use std::sync::RwLock;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::AppState;
use crate::error::ApiError;
use crate::fhir::SystemSlug;
use crate::store::systems;

/// The request id assigned by the request-id middleware (or taken from `X-Request-Id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// `Prefer: return=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPreference {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// `Prefer: handling=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    #[default]
    Strict,
    Lenient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefer {
    pub return_preference: ReturnPreference,
    pub handling: Handling,
}

impl Prefer {
    /// Reads every `Prefer` header; unknown preferences are ignored, as RFC 7240 says.
    pub fn from_request(req: &HttpRequest) -> Self {
        let mut prefer = Self::default();
        let tokens = req
            .headers()
            .get_all("prefer")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']));
        for token in tokens {
            match token.trim().replace(' ', "").as_str() {
                "return=minimal" => prefer.return_preference = ReturnPreference::Minimal,
                "return=representation" => {
                    prefer.return_preference = ReturnPreference::Representation
                }
                "return=OperationOutcome" => {
                    prefer.return_preference = ReturnPreference::OperationOutcome
                }
                "handling=lenient" => prefer.handling = Handling::Lenient,
                "handling=strict" => prefer.handling = Handling::Strict,
                _ => {}
            }
        }
        prefer
    }
}

/// Slug → id of local systems seen so far. Systems are never removed, so a hit stays true; a
/// miss always asks the database (a system may have been added by another process).
#[derive(Debug, Default)]
pub struct SystemCache(RwLock<HashMap<String, i64>>);

impl SystemCache {
    fn get(&self, slug: &str) -> Option<i64> {
        self.0.read().ok()?.get(slug).copied()
    }

    fn insert(&self, slug: &str, id: i64) {
        if let Ok(mut map) = self.0.write() {
            map.insert(slug.to_owned(), id);
        }
    }
}

/// Everything a FHIR handler needs to know about the request before touching its resource.
pub struct FhirRequest {
    pub state: web::Data<AppState>,
    pub system_id: i64,
    pub system: SystemSlug,
    /// The FHIR base of the local system, without a trailing slash.
    pub base: String,
    pub prefer: Prefer,
    /// The `Prefer` tokens as sent (spaces removed).
    pub prefer_tokens: Vec<String>,
    /// Query parameters in order, percent-decoded.
    pub params: Vec<(String, String)>,
}

impl FhirRequest {
    /// Whether a `Prefer` header states this preference (as opposed to it being the default).
    pub fn prefer_header_has(&self, preference: &str) -> bool {
        self.prefer_tokens.iter().any(|t| t == preference)
    }

    /// The query parameters other than the ones every FHIR endpoint accepts (`_format`, `_pretty`).
    pub fn specific_params(&self) -> impl Iterator<Item = &(String, String)> {
        self.params
            .iter()
            .filter(|(name, _)| name != "_format" && name != "_pretty")
    }
}

impl FromRequest for FhirRequest {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let sync_part = (|| -> Result<_, ApiError> {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let raw_slug = req.match_info().get("system").unwrap_or_default();
            let system = SystemSlug::parse(raw_slug)
                .ok_or_else(|| ApiError::UnknownSystem(raw_slug.to_owned()))?;
            let params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
                .map_err(|e| ApiError::invalid_parameter("query", e.to_string()))?;
            negotiate(req, &params)?;
            let base = base_url(req, &state, &system);
            Ok((state, system, params, base))
        })();
        let prefer = Prefer::from_request(req);
        let prefer_tokens: Vec<String> = req
            .headers()
            .get_all("prefer")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .map(|t| t.trim().replace(' ', ""))
            .collect();
        Box::pin(async move {
            let (state, system, params, base) = sync_part?;
            let system_id = match state.systems.get(system.as_str()) {
                Some(id) => id,
                None => {
                    let slug = system.clone();
                    let found = state
                        .db
                        .run(move |conn| Ok::<_, ApiError>(systems::find(conn, &slug)?))
                        .await?
                        .ok_or_else(|| ApiError::UnknownSystem(system.to_string()))?;
                    state.systems.insert(system.as_str(), found.id);
                    found.id
                }
            };
            Ok(Self {
                state,
                system_id,
                system,
                base,
                prefer,
                prefer_tokens,
                params,
            })
        })
    }
}

/// The request id of a request (set by the middleware in `api`).
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}

fn base_url(req: &HttpRequest, state: &AppState, system: &SystemSlug) -> String {
    match &state.settings.public_url {
        Some(public) => format!("{public}/fhir/{system}"),
        None => {
            let info = req.connection_info();
            format!("{}://{}/fhir/{system}", info.scheme(), info.host())
        }
    }
}

/// Only FHIR JSON is served: `_format` and `Accept` must allow it (406 otherwise).
fn negotiate(req: &HttpRequest, params: &[(String, String)]) -> Result<(), ApiError> {
    for (_, format) in params.iter().filter(|(name, _)| name == "_format") {
        let essence = format.split(';').next().unwrap_or_default().trim();
        if !matches!(
            essence,
            "json" | "application/json" | "application/fhir+json" | "application/json+fhir"
        ) {
            return Err(ApiError::NotAcceptable);
        }
    }
    if params.iter().any(|(name, _)| name == "_format") {
        return Ok(());
    }
    let Some(accept) = req.headers().get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = accept.to_str().map_err(|_| ApiError::NotAcceptable)?;
    let acceptable = accept.split(',').any(|range| {
        let essence = range.split(';').next().unwrap_or_default().trim();
        matches!(
            essence,
            "" | "*/*"
                | "application/*"
                | "application/json"
                | "application/fhir+json"
                | "application/json+fhir"
        )
    });
    if acceptable {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable)
    }
}
