//! # AuditEvent (read-only)
//! <https://hl7.org/fhir/R4/auditevent.html>
//!
//! `GET [base]/AuditEvent?patient=&agent=&action=&entity=&date=` and `GET [base]/AuditEvent/[id]`:
//! the audit trail, newest first. A patient sees the AuditEvents of their own record ("who viewed
//! my record"), whatever `patient` they ask for; clinicians and feeders need a scope that covers
//! AuditEvent. There is no create, update or delete: 405.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::context::FhirRequest;
use super::response::{fhir, reject_unknown_params};
use crate::audit;
use crate::auth::{authorize, Interaction, Role};
use crate::error::ApiError;
use crate::fhir::bundle::{SearchMode, SearchsetBuilder};
use crate::fhir::instant::Millis;
use crate::search::query::{DEFAULT_COUNT, MAX_COUNT};

fn allowed(ctx: &FhirRequest) -> Result<Option<String>, ApiError> {
    let Some(caller) = &ctx.caller else {
        return Err(ApiError::Unauthorized(
            "an Authorization: Bearer token is required".into(),
        ));
    };
    if caller.role() == Role::Patient {
        return Ok(caller.patient().map(|p| p.to_string()));
    }
    authorize(
        caller,
        ctx.system.as_str(),
        "AuditEvent",
        Interaction::Search,
    )
    .map_err(|d| ApiError::Forbidden(d.to_string()))?;
    Ok(None)
}

fn unavailable(error: audit::AuditUnavailable) -> ApiError {
    ApiError::Unavailable(error.to_string())
}

pub async fn search(ctx: FhirRequest) -> Result<HttpResponse, ApiError> {
    let forced_patient = allowed(&ctx)?;
    reject_unknown_params(
        &ctx,
        &["patient", "agent", "action", "entity", "date", "_count"],
    )?;
    let mut filters = Vec::new();
    let mut count = DEFAULT_COUNT;
    for (name, value) in ctx.specific_params() {
        match name.as_str() {
            "patient" => filters.push((
                "patient_id".to_owned(),
                value.trim_start_matches("Patient/").to_owned(),
            )),
            "agent" => filters.push(("agent".to_owned(), value.clone())),
            "action" => filters.push(("action".to_owned(), value.clone())),
            "entity" => filters.push(("entity".to_owned(), value.clone())),
            "date" => {
                let (prefix, rest) = value.split_at(value.len().min(2));
                let (column, text) = match prefix {
                    "ge" | "gt" => ("recorded>=", rest),
                    "le" | "lt" => ("recorded<=", rest),
                    _ => ("recorded>=", value.as_str()),
                };
                let at = Millis::parse_fhir(text).ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "date",
                        "must be a date or instant, optionally after ge/gt/le/lt",
                    )
                })?;
                filters.push((column.to_owned(), at.0.to_string()));
            }
            "_count" => {
                count = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter("_count", format!("must be 1 to {MAX_COUNT}"))
                    })?
            }
            _ => {}
        }
    }
    if let Some(own) = forced_patient {
        filters.retain(|(c, _)| c != "patient_id");
        filters.push(("patient_id".into(), own));
    }
    ctx.state.audit.flush().await.map_err(unavailable)?;
    let system_id = ctx.system_id;
    let events = ctx
        .state
        .db
        .run(move |conn| Ok::<_, ApiError>(audit::search(conn, system_id, &filters, count)?))
        .await?;
    let mut bundle = SearchsetBuilder::default();
    bundle.link("self", format!("{}/AuditEvent", ctx.base));
    bundle.total(Some(events.len() as u64));
    for event in events {
        bundle
            .entry(
                Some(format!("{}/AuditEvent/{}", ctx.base, event.id())),
                event.render()?,
                SearchMode::Match,
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    Ok(fhir(StatusCode::OK).body(
        bundle
            .to_json()
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

pub async fn read(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let forced_patient = allowed(&ctx)?;
    let mut filters = vec![("id".to_owned(), path.1.clone())];
    if let Some(own) = forced_patient {
        filters.push(("patient_id".into(), own));
    }
    ctx.state.audit.flush().await.map_err(unavailable)?;
    let system_id = ctx.system_id;
    let events = ctx
        .state
        .db
        .run(move |conn| Ok::<_, ApiError>(audit::search(conn, system_id, &filters, 1)?))
        .await?;
    let event = events
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("AuditEvent/{}", path.1)))?;
    Ok(fhir(StatusCode::OK).body(event.render()?))
}
