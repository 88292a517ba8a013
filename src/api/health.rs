//! `GET /health`: liveness plus a database round trip.
//!
//! - 200 `{"status": "pass", "database": "<backend>"}`
//! - 503 OperationOutcome when the database cannot be reached

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .db
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(json!({ "status": "pass", "database": state.db.backend() })))
}
