//! Administration of local systems (an admin token; 401 without a valid one, 403 for other roles).
//!
//! - `GET /admin/systems`: 200 with every system
//! - `GET /admin/systems/{slug}`: 200 with the system; 404 OperationOutcome when unknown
//! - `PUT /admin/systems/{slug}` with `{"name": "..."}`: 201 when created, 200 when renamed;
//!   400 for an invalid slug (`[a-z0-9-]{1,63}`) or payload (name 1..=200 characters)

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::body::FhirBody;
use super::context::AdminCaller;
use super::AppState;
use crate::error::ApiError;
use crate::fhir::resource::parse_object;
use crate::fhir::SystemSlug;
use crate::store::systems::{self, LocalSystem, Saved};

#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SystemPayload {
    #[validate(length(min = 1, max = 200))]
    pub name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SystemView {
    slug: String,
    name: String,
    fhir_base: String,
}

impl SystemView {
    fn new(system: LocalSystem, state: &AppState) -> Self {
        let prefix = state.settings.public_url.as_deref().unwrap_or("");
        Self {
            fhir_base: format!("{prefix}/fhir/{}", system.slug),
            slug: system.slug,
            name: system.name,
        }
    }
}

fn slug(raw: &str) -> Result<SystemSlug, ApiError> {
    SystemSlug::parse(raw)
        .ok_or_else(|| ApiError::invalid_parameter("slug", "must match [a-z0-9-]{1,63}"))
}

pub async fn list(
    _admin: AdminCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .db
        .run(|conn| Ok::<_, ApiError>(systems::list(conn)?))
        .await?;
    let views: Vec<SystemView> = found
        .into_iter()
        .map(|s| SystemView::new(s, &state))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

pub async fn get(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let slug = slug(&path)?;
    let lookup = slug.clone();
    let found = state
        .db
        .run(move |conn| Ok::<_, ApiError>(systems::find(conn, &lookup)?))
        .await?
        .ok_or_else(|| ApiError::UnknownSystem(slug.to_string()))?;
    Ok(HttpResponse::Ok().json(SystemView::new(found, &state)))
}

pub async fn put(
    _admin: AdminCaller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let slug = slug(&path)?;
    let payload: SystemPayload =
        serde_json::from_value(serde_json::Value::Object(parse_object(&body)?))
            .map_err(|e| ApiError::invalid_parameter("body", e.to_string()))?;
    payload
        .validate()
        .map_err(|e| ApiError::invalid_parameter("name", e.to_string()))?;
    let saved = state
        .db
        .run(move |conn| Ok::<_, ApiError>(systems::save(conn, &slug, &payload.name)?))
        .await?;
    let (status, system) = match saved {
        Saved::Created(system) => (StatusCode::CREATED, system),
        Saved::Updated(system) => (StatusCode::OK, system),
    };
    Ok(HttpResponse::build(status).json(SystemView::new(system, &state)))
}
