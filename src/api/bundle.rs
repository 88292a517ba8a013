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
    let results = run(&ctx, kind, entries).await?;
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
    state
        .clone()
        .db
        .run(move |conn| {
            let engine = Engine {
                validator: &state.validator,
                search: &state.search,
                system_id,
                base: &base,
                lenient,
            };
            match kind {
                Kind::Transaction => {
                    bundle::transaction(&engine, conn, &entries).map_err(entry_failure)
                }
                Kind::Batch => Ok(bundle::batch(&engine, conn, &entries)),
            }
        })
        .await
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
    state
        .clone()
        .db
        .run(move |conn| {
            let engine = Engine {
                validator: &state.validator,
                search: &state.search,
                system_id,
                base: &base,
                lenient,
            };
            bundle::transaction(&engine, conn, std::slice::from_ref(&entry))
                .map(|mut results| results.remove(0))
                .map_err(|e| e.error)
        })
        .await
}
