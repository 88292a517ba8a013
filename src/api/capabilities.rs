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
use crate::search::registry::ParamType;
use crate::search::Search;

/// When this statement's content last changed (it is a property of the software release).
const PUBLISHED: &str = "2026-11-21";

const TYPE_INTERACTIONS: [&str; 9] = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

pub async fn metadata(ctx: FhirRequest) -> Result<HttpResponse, ApiError> {
    let body = capability_statement(&ctx.base, ctx.system.as_str(), &ctx.state.search);
    Ok(fhir(StatusCode::OK).body(body.to_string()))
}

pub fn capability_statement(base: &str, system: &str, search: &Search) -> Value {
    let resources: Vec<Value> = ResourceType::ALL
        .iter()
        .map(|rtype| {
            let params: Vec<Value> = search
                .registry
                .params(*rtype)
                .map(|p| {
                    json!({
                        "name": p.code,
                        "definition": p.url,
                        "type": p.kind.as_str(),
                        "documentation": p.documentation,
                    })
                })
                .collect();
            let reference_params: Vec<&str> = search
                .registry
                .params(*rtype)
                .filter(|p| p.kind == ParamType::Reference)
                .map(|p| p.code.as_str())
                .collect();
            let includes: Vec<String> = std::iter::once(format!("{rtype}:*"))
                .chain(reference_params.iter().map(|p| format!("{rtype}:{p}")))
                .collect();
            let revincludes: Vec<String> = ResourceType::ALL
                .iter()
                .flat_map(|source| {
                    search
                        .registry
                        .params(*source)
                        .filter(|p| {
                            p.kind == ParamType::Reference
                                && p.targets.iter().any(|t| t == rtype.as_str())
                        })
                        .map(move |p| format!("{source}:{}", p.code))
                })
                .collect();
            let mut operations = vec![json!({
                "name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            })];
            if *rtype == ResourceType::Patient {
                operations.push(json!({
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                }));
                operations.push(json!({
                    "name": "set-preferences",
                    "definition": "https://fhir.carerecord.dev/OperationDefinition/Patient-set-preferences",
                }));
            }
            if matches!(rtype, ResourceType::Patient | ResourceType::Encounter | ResourceType::ServiceRequest) {
                for name in ["add-comment", "retract-comment"] {
                    operations.push(json!({
                        "name": name,
                        "definition": format!("https://fhir.carerecord.dev/OperationDefinition/Resource-{name}"),
                    }));
                }
            }
            json!({
                "type": rtype.as_str(),
                "interaction": TYPE_INTERACTIONS.map(|code| json!({ "code": code })),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": "multiple",
                "searchInclude": includes,
                "searchRevInclude": revincludes,
                "searchParam": params,
                "operation": operations,
            })
        })
        .chain(ResourceType::SERVER_WRITTEN.iter().map(|rtype| {
            let params: Vec<Value> = search
                .registry
                .params(*rtype)
                .map(|p| json!({"name": p.code, "definition": p.url, "type": p.kind.as_str()}))
                .collect();
            json!({
                "type": rtype.as_str(),
                "documentation": "Written by the server (patient comments); read-only",
                "interaction": [{ "code": "read" }, { "code": "vread" }, { "code": "history-instance" }, { "code": "search-type" }],
                "searchParam": params,
            })
        }))
        .chain(std::iter::once(json!({
            "type": "AuditEvent",
            "documentation": "The audit trail; read-only",
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "searchParam": [
                { "name": "patient", "type": "reference" },
                { "name": "agent", "type": "reference" },
                { "name": "action", "type": "token" },
                { "name": "entity", "type": "reference" },
                { "name": "date", "type": "date" },
            ],
        })))
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
            "interaction": [
                { "code": "transaction" },
                { "code": "batch" },
                { "code": "history-system" },
                { "code": "search-system" },
            ],
            "searchParam": [
                { "name": "_id", "type": "token" },
                { "name": "_lastUpdated", "type": "date" },
                { "name": "_tag", "type": "token" },
                { "name": "_profile", "type": "uri" },
                { "name": "_security", "type": "token" },
                { "name": "_source", "type": "uri" },
            ],
        }],
    })
}
