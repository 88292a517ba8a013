//! # transaction and batch
//! <https://hl7.org/fhir/R4/http.html#transaction>
//!
//! `POST [base]` (with or without a trailing slash) with a Bundle of type `transaction` or `batch`.
//!
//! - transaction: 200 with a `transaction-response` Bundle, one entry per request entry in the
//!   same order (`response.status`, `location`, `etag`, `lastModified`); all or nothing: on any
//!   failure nothing is stored and the answer is the failing entry's status with an
//!   OperationOutcome naming the entry (`Bundle.entry[i]` and its fullUrl).
//! - batch: 200 with a `batch-response` Bundle; each entry succeeds or fails on its own (a failed
//!   entry carries its OperationOutcome in `response.outcome`).
//! - `Prefer: return=representation` adds each resource, `return=OperationOutcome` an outcome per
//!   entry; by default entries carry no resource (GET entries always do).
//! - 400 not a transaction/batch Bundle or a malformed entry; 413 more than 10,000 entries or a
//!   body over the size limit.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::body::FhirBody;
use super::context::{FhirRequest, Handling, ReturnPreference};
use super::response::fhir;
use crate::bundle::{self, Engine, Entry, EntryResult, Kind};
use crate::error::ApiError;
use crate::fhir::resource::parse_object;

pub async fn transaction(ctx: FhirRequest, body: FhirBody) -> Result<HttpResponse, ApiError> {
    let object = parse_object(&body)?;
    let (kind, entries) = bundle::parse(object, &ctx.base).map_err(entry_failure)?;
    let returned = entries.clone();
    let results = match run(&ctx, kind, entries).await {
        Ok(results) => results,
        Err(error) => {
            audit_failure(&ctx, ("E", "transaction".into()), &error).await?;
            return Err(error);
        }
    };
    let response = bundle::response_bundle(
        kind,
        &returned,
        &results,
        ctx.prefer.return_preference == ReturnPreference::Representation
            && explicit_representation(&ctx),
        ctx.prefer.return_preference == ReturnPreference::OperationOutcome,
    );
    Ok(fhir(StatusCode::OK).body(response.to_string()))
}

/// Representation is the default for single interactions; bundles return resources only when
/// asked, so a 10,000-entry response stays small.
fn explicit_representation(ctx: &FhirRequest) -> bool {
    ctx.prefer_header_has("return=representation")
}

/// Runs entries as a transaction or batch on the blocking pool.
pub async fn run(
    ctx: &FhirRequest,
    kind: Kind,
    entries: Vec<Entry>,
) -> Result<Vec<EntryResult>, ApiError> {
    let state = ctx.state.clone();
    let system_id = ctx.system_id;
    let base = ctx.base.clone();
    let lenient = ctx.prefer.handling == Handling::Lenient;
    let caller = ctx.caller.clone();
    let agent = ctx.agent.clone();
    let system = ctx.system.to_string();
    // A feed's bundles fill tables fast: their conditional lookups need statistics that know it.
    let statistics_due = state.db.statistics_due();
    let results = state
        .clone()
        .db
        .run(move |conn| {
            if let Some(statistics) = &statistics_due {
                statistics.refresh(conn)?;
            }
            let engine = Engine {
                validator: &state.validator,
                search: &state.search,
                system_id,
                base: &base,
                lenient,
                caller: caller.as_ref(),
                system: &system,
                agent: Some(&agent),
            };
            match kind {
                Kind::Transaction => {
                    bundle::transaction(&engine, conn, &entries).map_err(entry_failure)
                }
                Kind::Batch => Ok(bundle::batch(&engine, conn, &entries)),
            }
        })
        .await?;
    ctx.state.db.wrote(results.len());
    Ok(results)
}

/// A failed transaction answers with the failing entry's status, its issues naming the entry.
pub fn entry_failure(error: bundle::EntryError) -> ApiError {
    ApiError::Invalid {
        status: error.status(),
        issues: error.issues(),
    }
}

/// Runs one entry on its own (a standalone conditional interaction or PATCH); its error is the
/// plain error, without naming a bundle entry.
pub async fn run_one(ctx: &FhirRequest, entry: Entry) -> Result<EntryResult, ApiError> {
    let state = ctx.state.clone();
    let system_id = ctx.system_id;
    let base = ctx.base.clone();
    let lenient = ctx.prefer.handling == Handling::Lenient;
    let caller = ctx.caller.clone();
    let agent = ctx.agent.clone();
    let system = ctx.system.to_string();
    let audited = entry_summary(&entry);
    let outcome = state
        .clone()
        .db
        .run(move |conn| {
            let engine = Engine {
                validator: &state.validator,
                search: &state.search,
                system_id,
                base: &base,
                lenient,
                caller: caller.as_ref(),
                system: &system,
                agent: Some(&agent),
            };
            bundle::transaction(&engine, conn, std::slice::from_ref(&entry))
                .map(|mut results| results.remove(0))
                .map_err(|e| e.error)
        })
        .await;
    match &outcome {
        Ok(_) => ctx.state.db.wrote(1),
        Err(error) => audit_failure(ctx, audited, error).await?,
    }
    outcome
}

/// What a failed write tried, for its AuditEvent.
fn entry_summary(entry: &Entry) -> (&'static str, String) {
    let action = match entry.method {
        bundle::Method::Post => "C",
        bundle::Method::Put | bundle::Method::Patch => "U",
        bundle::Method::Delete => "D",
        bundle::Method::Get => "R",
    };
    let entity = match &entry.target {
        bundle::Target::Type(t) => t.to_string(),
        bundle::Target::Instance(t, id) => format!("{t}/{id}"),
        bundle::Target::Version(t, id, v) => format!("{t}/{id}/_history/{v}"),
        bundle::Target::Conditional(t, c) => format!("{t}?{c}"),
    };
    (action, entity)
}

/// A refused or failed write is audited too (its own transaction rolled back).
async fn audit_failure(
    ctx: &FhirRequest,
    (action, entity): (&'static str, String),
    error: &ApiError,
) -> Result<(), ApiError> {
    use actix_web::ResponseError;
    let row = crate::audit::row(
        &ctx.agent,
        &crate::audit::Access {
            action,
            interaction: "write".into(),
            outcome: if error.status_code().is_server_error() {
                "8"
            } else {
                "4"
            },
            outcome_description: Some(error.to_string()),
            entity: Some(entity),
            patient: None,
        },
    );
    ctx.state
        .audit
        .record(ctx.system_id, vec![row])
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}
