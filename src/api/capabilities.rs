//! # capabilities
//! <https://hl7.org/fhir/R4/http.html#capabilities>
//!
//! `GET [base]/metadata`
//!
//! - 200 with the CapabilityStatement of this local system's base: exactly the resources and
//!   interactions implemented.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

use super::conformance::TYPES_PATTERN;
use super::context::FhirRequest;
use super::response::fhir;
use crate::error::ApiError;
use crate::fhir::{ResourceType, FHIR_VERSION};

/// When this statement's content last changed (it is a property of the software release).
const PUBLISHED: &str = "2026-11-21";

const TYPE_INTERACTIONS: [&str; 7] = [
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
];

pub async fn metadata(ctx: FhirRequest) -> Result<HttpResponse, ApiError> {
    let body = capability_statement(&ctx.base, ctx.system.as_str());
    Ok(fhir(StatusCode::OK).body(body.to_string()))
}

pub fn capability_statement(base: &str, system: &str) -> Value {
    let resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|rtype| {
            json!({
                "type": rtype.as_str(),
                "interaction": TYPE_INTERACTIONS.map(|code| json!({ "code": code })),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalRead": "full-support",
                "operation": [{
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                }],
            })
        })
        .chain(TYPES_PATTERN.split('|').map(|rtype| {
            json!({
                "type": rtype,
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "searchParam": [
                    { "name": "url", "type": "uri" },
                    { "name": "name", "type": "string" },
                    { "name": "_id", "type": "token" },
                ],
            })
        }))
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": PUBLISHED,
        "publisher": "carerecord",
        "kind": "instance",
        "software": { "name": "carerecord", "version": env!("CARGO_PKG_VERSION") },
        "implementation": {
            "description": format!("carerecord shared care record, local system '{system}'"),
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{ "code": "history-system" }],
        }],
    })
}
