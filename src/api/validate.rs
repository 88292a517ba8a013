//! # $validate
//! <https://hl7.org/fhir/R4/resource-operation-validate.html>
//!
//! `POST [base]/[type]/$validate` and `POST [base]/[type]/[id]/$validate`, with the resource as
//! the body or a Parameters resource (`resource`, `mode` = create | update | delete, `profile`).
//!
//! - 200 with an OperationOutcome listing every issue found (errors and warnings, each with its
//!   `expression`); a single `information` issue when there are none. As the specification says,
//!   the status is 200 whether or not the resource is valid: a 4xx means the validation itself
//!   could not be done.
//! - The checks are those of a real write: structure, UK Core and claimed profiles, NHS numbers,
//!   references resolving in this local system, and (for a Patient) the NHS number not belonging
//!   to another Patient. Nothing is stored.
//! - `mode=update` needs the instance id in the URL and the same id in the resource;
//!   `mode=delete` checks that the instance exists (404 otherwise).
//! - 400 malformed body or parameters; 404 unknown type or (instance level) unknown resource.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{Map, Value};

use super::body::FhirBody;
use super::context::{FhirRequest, Handling};
use super::response::{fhir, resource_id, resource_type, write_error};
use crate::error::ApiError;
use crate::fhir::outcome::{operation_outcome, Issue, IssueType};
use crate::fhir::resource::{parse_object, BodyError};
use crate::fhir::{ResourceId, ResourceType};
use crate::store::resources::{self, ReadResult};
use crate::validation::Options;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Update,
    Delete,
}

pub async fn validate_type(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    run(ctx, rtype, None, body).await
}

pub async fn validate_instance(
    ctx: FhirRequest,
    path: web::Path<(String, String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    run(ctx, rtype, Some(id), body).await
}

/// What the request asks to validate.
struct Request {
    resource: Option<Map<String, Value>>,
    mode: Mode,
    profiles: Vec<String>,
}

fn parse_request(body: &[u8]) -> Result<Request, ApiError> {
    let object = parse_object(body)?;
    if object.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Ok(Request {
            resource: Some(object),
            mode: Mode::Create,
            profiles: Vec::new(),
        });
    }
    let mut request = Request {
        resource: None,
        mode: Mode::Create,
        profiles: Vec::new(),
    };
    for parameter in object
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match parameter["name"].as_str() {
            Some("resource") => match &parameter["resource"] {
                Value::Object(resource) => request.resource = Some(resource.clone()),
                _ => {
                    return Err(ApiError::invalid_parameter(
                        "resource",
                        "must carry a resource",
                    ))
                }
            },
            Some("mode") => {
                request.mode = match parameter["valueCode"].as_str() {
                    Some("create") => Mode::Create,
                    Some("update") => Mode::Update,
                    Some("delete") => Mode::Delete,
                    _ => {
                        return Err(ApiError::invalid_parameter(
                            "mode",
                            "must be create, update or delete",
                        ))
                    }
                }
            }
            Some("profile") => {
                let url = parameter["valueUri"]
                    .as_str()
                    .or_else(|| parameter["valueCanonical"].as_str())
                    .ok_or_else(|| ApiError::invalid_parameter("profile", "must be a uri"))?;
                request.profiles.push(url.to_owned());
            }
            Some(other) => {
                return Err(ApiError::invalid_parameter(
                    other,
                    "$validate takes resource, mode and profile",
                ))
            }
            None => return Err(ApiError::invalid_parameter("parameter", "needs a name")),
        }
    }
    Ok(request)
}

async fn run(
    ctx: FhirRequest,
    rtype: ResourceType,
    id: Option<ResourceId>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let request = parse_request(&body)?;
    if let Some(resource) = &request.resource {
        match resource.get("resourceType").and_then(Value::as_str) {
            Some(found) if found == rtype.as_str() => {}
            Some(found) => {
                return Err(ApiError::InvalidBody(BodyError::TypeMismatch {
                    found: found.to_owned(),
                    expected: rtype,
                }))
            }
            None => return Err(ApiError::InvalidBody(BodyError::MissingResourceType)),
        }
    }
    let system_id = ctx.system_id;
    if request.mode == Mode::Delete {
        let id = id.ok_or_else(|| {
            ApiError::invalid_parameter("mode", "delete needs an instance: [type]/[id]/$validate")
        })?;
        let lookup = id.clone();
        let found = ctx
            .state
            .db
            .run(move |conn| {
                Ok::<_, ApiError>(resources::read_current(conn, system_id, rtype, &lookup)?)
            })
            .await?;
        return match found {
            ReadResult::Found(_) => Ok(outcome(Vec::new())),
            _ => Err(ApiError::not_found(rtype, id.as_str())),
        };
    }
    let mut resource = request.resource.ok_or_else(|| {
        ApiError::invalid_parameter("resource", "a resource to validate is required")
    })?;
    let mut issues = Vec::new();
    if request.mode == Mode::Update {
        let Some(id) = &id else {
            return Err(ApiError::invalid_parameter(
                "mode",
                "update needs an instance: [type]/[id]/$validate",
            ));
        };
        if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            issues.push(
                Issue::error(
                    IssueType::Invalid,
                    format!("an update needs the resource's id to be {id}"),
                )
                .at(format!("{rtype}.id")),
            );
        }
    }
    let lenient = ctx.prefer.handling == Handling::Lenient;
    let validator = &ctx.state.validator;
    validator.normalise(&mut resource);
    let options = Options {
        lenient,
        in_bundle: false,
        profiles: request.profiles,
    };
    let resource = Value::Object(resource);
    let mut findings = validator.validate(rtype, &resource, &options);
    let valid = findings.is_valid();
    issues.append(&mut findings.errors);
    let warnings = std::mem::take(&mut findings.warnings);
    if valid {
        // The checks a write makes against the database, without writing.
        let facts = crate::write::derive(&ctx.state.search, rtype, &resource, findings, lenient);
        let own_id = match request.mode {
            Mode::Update => id.clone(),
            _ => None,
        };
        let checked = ctx
            .state
            .db
            .run(move |conn| {
                Ok::<_, ApiError>(resources::precheck(
                    conn,
                    system_id,
                    rtype,
                    own_id.as_ref(),
                    &facts,
                ))
            })
            .await?;
        if let Err(err) = checked {
            issues.extend(write_error(err, rtype, id.as_ref()).issues());
        }
    }
    // Errors first, then warnings.
    issues.extend(warnings);
    Ok(outcome(issues))
}

fn outcome(issues: Vec<Issue>) -> HttpResponse {
    let issues = if issues.is_empty() {
        vec![Issue::information("validation successful: no issues found")]
    } else {
        issues
    };
    fhir(StatusCode::OK).body(operation_outcome(&issues).to_string())
}
