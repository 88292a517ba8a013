//! HTTP API: one module per FHIR interaction, each headed by its spec link, HTTP form and statuses.
//! Handlers are thin: parse, call the store, shape the response.

pub mod admin;
pub mod audit_events;
pub mod body;
pub mod bundle;
pub mod capabilities;
pub mod comments;
pub mod conditional;
pub mod conformance;
pub mod context;
pub mod create;
pub mod delete;
pub mod everything;
pub mod guard;
pub mod health;
pub mod history;
pub mod metrics;
pub mod read;
pub mod response;
pub mod search;
pub mod update;
pub mod validate;
pub mod vread;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use crate::audit::AuditLog;
use crate::auth::keys::Verifier;
use crate::auth::rate::RateLimiter;
use crate::error::ApiError;
use crate::search::Search;
use crate::settings::Settings;
use crate::store::Database;
use crate::validation::Validator;
use context::{FhirRequest, RequestId, SystemCache};

/// What every handler shares.
pub struct AppState {
    pub db: Database,
    pub settings: Settings,
    pub validator: Validator,
    pub search: Search,
    pub systems: SystemCache,
    pub verifier: Verifier,
    pub rate: RateLimiter,
    pub audit: AuditLog,
    pub metrics: metrics::Metrics,
}

impl AppState {
    pub fn new(db: Database, settings: Settings, validator: Validator, verifier: Verifier) -> Self {
        let search = Search::new(validator.definitions());
        let rate = RateLimiter::new(settings.rate_limit);
        let audit = AuditLog::start(db.clone());
        Self {
            db,
            settings,
            validator,
            search,
            systems: SystemCache::default(),
            verifier,
            rate,
            audit,
            metrics: metrics::Metrics::default(),
        }
    }
}

/// The route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/metrics")
            .route(web::get().to(metrics::metrics))
            .default_service(web::to(not_allowed("GET"))),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(web::to(not_allowed("GET"))),
    )
    .service(
        web::resource("/admin/systems")
            .route(web::get().to(admin::list))
            .default_service(web::to(not_allowed("GET"))),
    )
    .service(
        web::resource("/admin/systems/{slug}")
            .route(web::get().to(admin::get))
            .route(web::put().to(admin::put))
            .default_service(web::to(not_allowed("GET, PUT"))),
    )
    .service(
        web::scope("/fhir/{system}")
            .service(
                web::resource("/metadata")
                    .route(web::get().to(capabilities::metadata))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("/_history")
                    .route(web::get().to(history::system_history))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource(format!("/{{type:{}}}/{{id}}", conformance::TYPES_PATTERN))
                    .route(web::get().to(conformance::read))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource(format!("/{{type:{}}}", conformance::TYPES_PATTERN))
                    .route(web::get().to(conformance::search))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("")
                    .route(web::get().to(search::search_system))
                    .route(web::post().to(bundle::transaction))
                    .default_service(web::to(fhir_not_allowed("GET, POST"))),
            )
            .service(
                web::resource("/AuditEvent")
                    .route(web::get().to(audit_events::search))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("/AuditEvent/{id}")
                    .route(web::get().to(audit_events::read))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("/_search")
                    .route(web::post().to(search::search_system_post))
                    .default_service(web::to(fhir_not_allowed("POST"))),
            )
            .service(
                web::resource("/Patient/$everything")
                    .route(web::get().to(everything::type_level))
                    .route(web::post().to(everything::type_level))
                    .default_service(web::to(fhir_not_allowed("GET, POST"))),
            )
            .service(
                web::resource("/Patient/{id}/$everything")
                    .route(web::get().to(everything::instance))
                    .route(web::post().to(everything::instance))
                    .default_service(web::to(fhir_not_allowed("GET, POST"))),
            )
            .service(
                web::resource("/{type}/{id}/$add-comment")
                    .route(web::post().to(comments::add))
                    .default_service(web::to(fhir_not_allowed("POST"))),
            )
            .service(
                web::resource("/{type}/{id}/$retract-comment")
                    .route(web::post().to(comments::retract))
                    .default_service(web::to(fhir_not_allowed("POST"))),
            )
            .service(
                web::resource("/Patient/{id}/$set-preferences")
                    .route(web::post().to(comments::set_preferences))
                    .default_service(web::to(fhir_not_allowed("POST"))),
            )
            .service(
                web::resource("/{type}/_search")
                    .route(web::post().to(search::search_type_post))
                    .default_service(web::to(fhir_not_allowed("POST"))),
            )
            .service(
                web::resource("/{type}/$validate")
                    .route(web::post().to(validate::validate_type))
                    .default_service(web::to(fhir_not_allowed("POST"))),
            )
            .service(
                web::resource("/{type}/{id}/$validate")
                    .route(web::post().to(validate::validate_instance))
                    .default_service(web::to(fhir_not_allowed("POST"))),
            )
            .service(
                web::resource("/{type}/_history")
                    .route(web::get().to(history::type_history))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("/{type}/{id}/_history")
                    .route(web::get().to(history::instance_history))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("/{type}/{id}/_history/{vid}")
                    .route(web::get().to(vread::vread))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("/{compartment}/{id}/{type}")
                    .route(web::get().to(search::search_compartment))
                    .default_service(web::to(fhir_not_allowed("GET"))),
            )
            .service(
                web::resource("/{type}/{id}")
                    .route(web::get().to(read::read))
                    .route(web::put().to(update::update))
                    .route(web::delete().to(delete::delete))
                    .route(web::patch().to(conditional::patch_instance))
                    .default_service(web::to(fhir_not_allowed("GET, PUT, DELETE, PATCH"))),
            )
            .service(
                web::resource("/{type}")
                    .route(web::get().to(search::search_type))
                    .route(web::post().to(create::create))
                    .route(web::put().to(conditional::update))
                    .route(web::delete().to(conditional::delete))
                    .route(web::patch().to(conditional::patch_conditional))
                    .default_service(web::to(fhir_not_allowed("GET, POST, PUT, DELETE, PATCH"))),
            )
            .default_service(web::to(fhir_unknown_route)),
    )
    .default_service(web::to(unknown_route));
}

/// 405 for a method a non-FHIR endpoint does not take.
fn not_allowed(
    allowed: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<Result<HttpResponse, ApiError>> + Clone {
    move |req| {
        std::future::ready(Err(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allowed,
        }))
    }
}

/// 405 for a method a FHIR endpoint does not take, after the system (404) and the resource type
/// (404 naming what is supported) are known to exist.
fn fhir_not_allowed(
    allowed: &'static str,
) -> impl Fn(FhirRequest, HttpRequest) -> std::future::Ready<Result<HttpResponse, ApiError>> + Clone
{
    move |_ctx, req| {
        let unsupported = req.match_info().get("type").filter(|name| {
            crate::fhir::ResourceType::parse(name).is_none()
                && !conformance::TYPES_PATTERN.split('|').any(|t| t == *name)
        });
        std::future::ready(Err(match unsupported {
            Some(name) => ApiError::unsupported_type(name),
            None => ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                allowed,
            },
        }))
    }
}

async fn fhir_unknown_route(_ctx: FhirRequest, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::UnknownRoute(req.path().to_owned()))
}

async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::UnknownRoute(req.path().to_owned()))
}

const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id (a client's `X-Request-Id` when it is short and plain), returns it in
/// `X-Request-Id`, and logs a server error's internal cause under it.
pub async fn request_id_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let mut res = next.call(req).await?;
    if let Some(state) = state {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        state
            .metrics
            .observe(&method, res.status().as_u16(), micros);
    }
    if res.status().is_server_error() {
        if let Some(err) = res.response().error() {
            log::error!("request {id} failed: {err}");
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    Ok(res)
}
