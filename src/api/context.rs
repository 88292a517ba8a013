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
use crate::audit::Agent;
use crate::auth::{authorize, Caller, Claims, Denied, Interaction, Role};
use crate::error::ApiError;
use crate::fhir::ResourceType;
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
/// Building it is the one place access is decided: token, rate limit, local system, and the
/// policy for the interaction the route and method name.
pub struct FhirRequest {
    /// The verified caller (`None` only for public endpoints: the CapabilityStatement).
    pub caller: Option<Caller>,
    /// Who is acting, for the audit trail.
    pub agent: Agent,
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
        let requirement = requirement(req);
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let break_glass = req
            .headers()
            .get("x-break-glass-reason")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let address = req
            .connection_info()
            .realip_remote_addr()
            .map(str::to_owned);
        let request_id = request_id(req);
        let prefer_tokens: Vec<String> = req
            .headers()
            .get_all("prefer")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .map(|t| t.trim().replace(' ', ""))
            .collect();
        Box::pin(async move {
            let (state, system, params, base) = sync_part?;
            let caller = authenticate(
                &state,
                &system,
                requirement.clone(),
                bearer,
                break_glass,
                &params,
            )?;
            let agent = agent_of(caller.as_ref(), address, request_id);
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
            if let Some(caller) = &caller {
                if let Err(denied) = check(caller, &system, &requirement, &params) {
                    let outcome = ApiError::Forbidden(denied.to_string());
                    let row = crate::audit::row(
                        &agent,
                        &crate::audit::Access {
                            action: "E",
                            interaction: "access".into(),
                            outcome: "4",
                            outcome_description: Some(denied.to_string()),
                            entity: None,
                            patient: caller.patient().map(|p| p.to_string()),
                        },
                    );
                    state
                        .audit
                        .record(system_id, vec![row])
                        .await
                        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                    return Err(outcome);
                }
            }
            Ok(Self {
                caller,
                agent,
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

/// What a route needs of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// No token (the CapabilityStatement).
    Public,
    /// Any valid token for this local system (conformance resources, transactions — whose
    /// entries the engine authorises one by one — and the audit trail, filtered by role).
    Token,
    /// This interaction on these types.
    Access(Vec<String>, Interaction),
    /// History across a type or the system: every type, and never for a patient.
    Wide(Vec<String>),
}

/// The interaction a request is, from its route and method.
fn requirement(req: &HttpRequest) -> Requirement {
    let pattern = req.match_pattern().unwrap_or_default();
    let route = pattern.strip_prefix("/fhir/{system}").unwrap_or(&pattern);
    let method = req.method().as_str();
    let info = req.match_info();
    let rtype = || vec![info.get("type").unwrap_or_default().to_owned()];
    let all = || {
        ResourceType::ALL
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let by_method = |read: Interaction| match method {
        "POST" => Interaction::Create,
        "PUT" | "PATCH" => Interaction::Update,
        "DELETE" => Interaction::Delete,
        _ => read,
    };
    match route {
        "/metadata" => Requirement::Public,
        "" if method == "GET" => {
            let types: Vec<String> =
                serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(n, _)| n == "_type")
                    .flat_map(|(_, v)| {
                        v.split(',')
                            .map(|t| t.trim().to_owned())
                            .collect::<Vec<_>>()
                    })
                    .collect();
            Requirement::Access(
                if types.is_empty() { all() } else { types },
                Interaction::Search,
            )
        }
        "" | "/AuditEvent" | "/AuditEvent/{id}" => Requirement::Token,
        "/_history" => Requirement::Wide(all()),
        "/{type}/_history" => Requirement::Wide(rtype()),
        "/Patient/$everything" | "/Patient/{id}/$everything" => {
            Requirement::Access(vec!["Patient".into()], Interaction::Read)
        }
        "/{type}/_search" | "/{compartment}/{id}/{type}" => {
            Requirement::Access(rtype(), Interaction::Search)
        }
        "/{type}/$validate"
        | "/{type}/{id}/$validate"
        | "/{type}/{id}/_history"
        | "/{type}/{id}/_history/{vid}" => Requirement::Access(rtype(), Interaction::Read),
        "/{type}/{id}" => Requirement::Access(rtype(), by_method(Interaction::Read)),
        "/{type}" => Requirement::Access(rtype(), by_method(Interaction::Search)),
        _ if route.contains(":StructureDefinition") => Requirement::Token,
        _ => Requirement::Token,
    }
}

/// Verifies the bearer token (401 when missing or invalid) and the rate limit (429).
fn authenticate(
    state: &AppState,
    system: &SystemSlug,
    requirement: Requirement,
    bearer: Option<String>,
    break_glass: Option<String>,
    _params: &[(String, String)],
) -> Result<Option<Caller>, ApiError> {
    if requirement == Requirement::Public {
        return Ok(None);
    }
    if state.settings.insecure_no_auth {
        log::warn!("--insecure-no-auth: request served without authentication");
        return Ok(Some(Caller::new(
            Claims {
                sub: "insecure-no-auth".into(),
                role: Role::Feeder,
                system: system.to_string(),
                scope: String::new(),
                fhir_user: None,
                org: None,
                purpose_of_use: None,
                exp: i64::MAX,
                nbf: None,
                iat: None,
                iss: None,
                aud: None,
            },
            break_glass,
        )));
    }
    let token = bearer
        .as_deref()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".into())
        })?;
    let claims = state
        .verifier
        .verify(token)
        .map_err(|e| ApiError::Unauthorized(e.0))?;
    state
        .rate
        .check(&claims.sub)
        .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    Ok(Some(Caller::new(claims, break_glass)))
}

/// The policy for the route's requirement.
fn check(
    caller: &Caller,
    system: &SystemSlug,
    requirement: &Requirement,
    _params: &[(String, String)],
) -> Result<(), Denied> {
    match requirement {
        Requirement::Public => Ok(()),
        Requirement::Token => {
            if caller.claims.system != system.as_str() {
                return Err(Denied::Forbidden(format!(
                    "the token is for local system '{}', not '{system}'",
                    caller.claims.system
                )));
            }
            if caller.role() == Role::Admin {
                return Err(Denied::Forbidden(
                    "an admin token manages local systems; it reads no patient data".into(),
                ));
            }
            Ok(())
        }
        Requirement::Access(types, interaction) => types
            .iter()
            .try_for_each(|t| authorize(caller, system.as_str(), t, *interaction)),
        Requirement::Wide(types) => {
            if caller.role() == Role::Patient {
                return Err(Denied::Forbidden(
                    "a patient reads the history of their own resources only".into(),
                ));
            }
            types
                .iter()
                .try_for_each(|t| authorize(caller, system.as_str(), t, Interaction::Read))
        }
    }
}

fn agent_of(caller: Option<&Caller>, address: Option<String>, request_id: String) -> Agent {
    match caller {
        Some(c) => Agent {
            sub: c.claims.sub.clone(),
            role: c.claims.role.to_string(),
            fhir_user: c.claims.fhir_user.clone(),
            org: c.claims.org.clone(),
            purpose_of_use: c.claims.purpose_of_use.clone(),
            break_glass: c.break_glass.clone(),
            address,
            request_id,
        },
        None => Agent {
            sub: "anonymous".into(),
            role: "anonymous".into(),
            address,
            request_id,
            ..Agent::default()
        },
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

/// The caller of the admin API: an admin token (401 without a valid token, 403 for other roles).
pub struct AdminCaller;

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = (|| {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            if state.settings.insecure_no_auth {
                log::warn!("--insecure-no-auth: admin request served without authentication");
                return Ok(Self);
            }
            let token = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    ApiError::Unauthorized("an Authorization: Bearer token is required".into())
                })?;
            let claims = state
                .verifier
                .verify(token.trim())
                .map_err(|e| ApiError::Unauthorized(e.0))?;
            crate::auth::authorize_admin(&Caller::new(claims, None))
                .map_err(|d| ApiError::Forbidden(d.to_string()))?;
            Ok(Self)
        })();
        std::future::ready(outcome)
    }
}
