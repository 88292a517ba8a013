//! # The patient's comments and preferences
//!
//! - `POST [base]/[Patient|Encounter|ServiceRequest]/[id]/$add-comment` with a Parameters of `text`
//!   (markdown, at most 2000 characters, no HTML), `category` (comment | preference |
//!   correction-request | what-matters-to-me) and optional `focus` (the element it is about).
//! - `POST [base]/[type]/[id]/$retract-comment` with `comment` (the comment's element id): by its
//!   author, status `retracted`; by a clinician, with `reason`, status `entered-in-error`.
//! - `POST [base]/Patient/[id]/$set-preferences` with any of `contactMethod`, `contactTimes`,
//!   `writtenFormat` (the UK Core ContactPreference extension), `language`, `preferred`,
//!   `interpreterRequired` (`communication`).
//!
//! A patient acts on their own record only (404 otherwise); a clinician may act for the patient
//! (the Provenance records the clinician as enterer); feeders and admins may not (403). Each
//! answers 200 with a Parameters: `comment` (the element id), `provenance`, and `return` (the new
//! version). Invalid input answers 422.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::body::FhirBody;
use super::context::FhirRequest;
use super::guard;
use super::response::{fhir, resource_id, resource_type};
use crate::auth::{Caller, Role};
use crate::comments::{self, Actor, Change, Changed, CATEGORIES, CONTACT_PREFERENCE};
use crate::error::ApiError;
use crate::fhir::instant::Millis;
use crate::fhir::resource::parse_object;
use crate::fhir::{ResourceId, ResourceType};
use crate::store::resources::{self, ReadResult};

/// The `name`d parameter's value (any `value[x]`).
fn parameter<'a>(parameters: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    parameters
        .get("parameter")?
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| {
            p.as_object()?
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(_, v)| v)
        })
}

fn parameters(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let parsed = parse_object(body)?;
    if parsed.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::invalid_parameter(
            "body",
            "the operation takes a Parameters resource",
        ));
    }
    Ok(parsed)
}

fn text_parameter(params: &Map<String, Value>, name: &str) -> Option<String> {
    parameter(params, name)
        .and_then(|v| v.as_str().or_else(|| v["coding"][0]["code"].as_str()))
        .map(str::to_owned)
}

/// Who acts and for whom: a patient on their own record, or a clinician for the patient.
async fn actor(
    ctx: &FhirRequest,
    rtype: ResourceType,
    id: &ResourceId,
) -> Result<(Actor, String), ApiError> {
    if !matches!(
        rtype,
        ResourceType::Patient | ResourceType::Encounter | ResourceType::ServiceRequest
    ) {
        return Err(ApiError::invalid_parameter(
            "type",
            "comments are added to a Patient, Encounter or ServiceRequest",
        ));
    }
    let caller: Caller = ctx
        .caller
        .clone()
        .ok_or_else(|| ApiError::Unauthorized("a token is required".into()))?;
    if !matches!(caller.role(), Role::Patient | Role::Clinician) {
        return Err(ApiError::Forbidden(
            "comments are added by patients, or by clinicians for them".into(),
        ));
    }
    let system_id = ctx.system_id;
    let lookup = id.clone();
    let what = format!("{rtype}/{id}");
    let for_check = caller.clone();
    let owner = ctx
        .state
        .db
        .run(move |conn| {
            let owner = match resources::read_current(conn, system_id, rtype, &lookup)? {
                ReadResult::Found(stored) => guard::owner(rtype, &stored.content),
                ReadResult::Deleted { .. } => return Err(ApiError::Gone(what)),
                ReadResult::NotFound => return Err(ApiError::NotFound(what)),
            };
            guard::visible(conn, system_id, Some(&for_check), owner.as_deref(), &what)?;
            Ok::<_, ApiError>(owner)
        })
        .await?;
    let patient = owner.ok_or_else(|| {
        ApiError::invalid_parameter(
            "subject",
            format!("{rtype}/{id} names no Patient to comment for"),
        )
    })?;
    let (author, enterer) = match caller.role() {
        Role::Patient => (
            caller
                .claims
                .fhir_user
                .clone()
                .unwrap_or_else(|| format!("Patient/{patient}")),
            None,
        ),
        _ => (
            format!("Patient/{patient}"),
            Some(
                caller
                    .claims
                    .fhir_user
                    .clone()
                    .unwrap_or_else(|| caller.claims.sub.clone()),
            ),
        ),
    };
    Ok((
        Actor {
            author,
            enterer,
            agent: ctx.agent.clone(),
        },
        patient,
    ))
}

async fn run(
    ctx: &FhirRequest,
    rtype: ResourceType,
    id: ResourceId,
    actor: Actor,
    change: Box<Change>,
) -> Result<HttpResponse, ApiError> {
    let state = ctx.state.clone();
    let system_id = ctx.system_id;
    let changed: Changed = ctx
        .state
        .db
        .run(move |conn| {
            comments::change(
                conn,
                &state.validator,
                &state.search,
                system_id,
                rtype,
                &id,
                &actor,
                &*change,
            )
        })
        .await?;
    let resource: Value = serde_json::from_str(&changed.written.stored.content)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut out = vec![
        json!({"name": "provenance", "valueReference": {"reference": format!("Provenance/{}", changed.provenance)}}),
        json!({"name": "return", "resource": resource}),
    ];
    if let Some(comment) = changed.comment {
        out.insert(0, json!({"name": "comment", "valueString": comment}));
    }
    let body = json!({"resourceType": "Parameters", "parameter": out});
    Ok(fhir(StatusCode::OK)
        .insert_header((
            actix_web::http::header::ETAG,
            changed.written.stored.version.etag(),
        ))
        .body(body.to_string()))
}

pub async fn add(
    ctx: FhirRequest,
    path: web::Path<(String, String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let params = parameters(&body)?;
    let text = text_parameter(&params, "text")
        .ok_or_else(|| ApiError::invalid_parameter("text", "is required"))?;
    comments::check_text(&text)?;
    let category = text_parameter(&params, "category")
        .ok_or_else(|| ApiError::invalid_parameter("category", "is required"))?;
    if !CATEGORIES.contains(&category.as_str()) {
        return Err(ApiError::invalid_parameter(
            "category",
            format!("must be one of {}", CATEGORIES.join(", ")),
        ));
    }
    let focus = text_parameter(&params, "focus");
    let (actor, _) = actor(&ctx, rtype, &id).await?;
    let author = actor.author.clone();
    let comment_id = uuid::Uuid::new_v4().to_string();
    run(
        &ctx,
        rtype,
        id,
        actor,
        Box::new(move |resource| {
            let comment = comments::new_comment(
                &comment_id,
                &text,
                &category,
                &author,
                focus.as_deref(),
                Millis::now(),
            );
            let extensions = resource
                .entry("extension")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(list) = extensions.as_array_mut() {
                list.push(comment);
            }
            let first = resource["extension"]
                .as_array()
                .map_or(0, |l| l.iter().filter(|e| comments::is_comment(e)).count())
                == 1;
            Ok((
                Some(comment_id.clone()),
                if first { "CREATE" } else { "UPDATE" },
            ))
        }),
    )
    .await
}

pub async fn retract(
    ctx: FhirRequest,
    path: web::Path<(String, String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let id = resource_id(&path.2)?;
    let params = parameters(&body)?;
    let comment_id = text_parameter(&params, "comment")
        .ok_or_else(|| ApiError::invalid_parameter("comment", "is required (the comment's id)"))?;
    let reason = text_parameter(&params, "reason");
    let (actor, _) = actor(&ctx, rtype, &id).await?;
    let clinician = actor.enterer.is_some();
    if clinician && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(ApiError::invalid_parameter(
            "reason",
            "a clinician marking a comment entered-in-error gives a reason",
        ));
    }
    let author = actor.author.clone();
    run(
        &ctx,
        rtype,
        id,
        actor,
        Box::new(move |resource| {
            let list = resource.get_mut("extension").and_then(Value::as_array_mut);
            let comment = list
                .into_iter()
                .flatten()
                .find(|e| comments::is_comment(e) && e["id"] == comment_id.as_str())
                .ok_or_else(|| ApiError::NotFound(format!("comment {comment_id}")))?;
            if clinician {
                comments::set_status(comment, "entered-in-error", reason.as_deref());
            } else {
                let by = comments::part(comment, "author").and_then(|a| a["reference"].as_str());
                if by != Some(author.as_str()) {
                    return Err(ApiError::Forbidden(
                        "only its author may retract a comment".into(),
                    ));
                }
                comments::set_status(comment, "retracted", None);
            }
            Ok((Some(comment_id.clone()), "UPDATE"))
        }),
    )
    .await
}

pub async fn set_preferences(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let id = resource_id(&path.1)?;
    let params = parameters(&body)?;
    let method = text_parameter(&params, "contactMethod");
    let times = text_parameter(&params, "contactTimes");
    let format = text_parameter(&params, "writtenFormat");
    let language = text_parameter(&params, "language");
    let preferred = parameter(&params, "preferred").and_then(Value::as_bool);
    let interpreter = parameter(&params, "interpreterRequired").and_then(Value::as_bool);
    if method.is_none()
        && times.is_none()
        && format.is_none()
        && language.is_none()
        && interpreter.is_none()
    {
        return Err(ApiError::invalid_parameter("parameter", "give at least one of contactMethod, contactTimes, writtenFormat, language, interpreterRequired"));
    }
    let (actor, _) = actor(&ctx, ResourceType::Patient, &id).await?;
    run(
        &ctx,
        ResourceType::Patient,
        id,
        actor,
        Box::new(move |patient| {
            let mut parts = Vec::new();
            if let Some(code) = &method {
                parts.push(json!({"url": "PreferredContactMethod", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredContactMethod", "code": code}]}}));
            }
            if let Some(text) = &times {
                parts.push(json!({"url": "PreferredContactTimes", "valueString": text}));
            }
            if let Some(code) = &format {
                parts.push(json!({"url": "PreferredWrittenCommunicationFormat", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredWrittenCommunicationFormat", "code": code}]}}));
            }
            let mut extensions: Vec<Value> = patient
                .get("extension")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| e["url"] != CONTACT_PREFERENCE || parts.is_empty())
                .filter(|e| !(e["url"] == INTERPRETER && interpreter.is_some()))
                .cloned()
                .collect();
            if !parts.is_empty() {
                extensions.push(json!({"url": CONTACT_PREFERENCE, "extension": parts}));
            }
            if let Some(required) = interpreter {
                extensions.push(json!({"url": INTERPRETER, "valueBoolean": required}));
            }
            patient.insert("extension".into(), Value::Array(extensions));
            if let Some(code) = &language {
                let mut communication = json!({"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": code}]}});
                if let Some(p) = preferred {
                    communication["preferred"] = json!(p);
                }
                patient.insert("communication".into(), json!([communication]));
            }
            Ok((None, "UPDATE"))
        }),
    )
    .await
}

const INTERPRETER: &str = "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired";
