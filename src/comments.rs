//! The patient's voice (Personalised Health and Care 2020): patients' own comments and preferences
//! on their record, without ever touching what clinicians recorded.
//!
//! - A comment is the patient-comments extension (`fhir-profiles/`) on a Patient, Encounter or
//!   ServiceRequest, with a server-assigned element id, added by `$add-comment` and retracted by
//!   `$retract-comment` (or marked entered-in-error by a clinician).
//! - **Merge rule**: comment extensions are owned by the server. A feeder's update (PUT or PATCH)
//!   of a resource keeps the stored comments whatever its payload says about them, and a create may
//!   not carry any.
//! - Every change is one database transaction: the new version of the resource, a Provenance
//!   (target the new version, agent the patient — and the clinician as enterer when one acts for
//!   them), and the AuditEvent.

use serde_json::{json, Map, Value};

use crate::audit::{self, Access, Agent};
use crate::error::ApiError;
use crate::fhir::instant::Millis;
use crate::fhir::outcome::{Issue, IssueType, SpineCode};
use crate::fhir::{ResourceId, ResourceType, VersionId};
use crate::search::Search;
use crate::store::resources::{self, ReadResult, WriteError, Written};
use crate::store::{write_transaction, DbConnection, StoreError};
use crate::validation::Validator;
use crate::write::{prepare, Prepare};

/// The patient-comments extension.
pub const EXTENSION: &str =
    "https://fhir.carerecord.dev/StructureDefinition/Extension-CareRecord-PatientComment";
/// The UK Core contact preference extension.
pub const CONTACT_PREFERENCE: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference";
/// The longest comment, in characters.
pub const MAX_TEXT: usize = 2000;
/// The kinds of comment.
pub const CATEGORIES: [&str; 4] = [
    "comment",
    "preference",
    "correction-request",
    "what-matters-to-me",
];

fn unprocessable(expression: &str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid {
        status: actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        issues: vec![Issue::error(IssueType::Invalid, message)
            .with_details(SpineCode::InvalidParameter)
            .at(expression)],
    }
}

/// A comment's text: markdown, 1..=2000 characters, no HTML (no tags, no scripts).
pub fn check_text(text: &str) -> Result<(), ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(unprocessable("text", "a comment needs some text"));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(unprocessable(
            "text",
            format!("a comment is at most {MAX_TEXT} characters"),
        ));
    }
    let bytes = text.as_bytes();
    let has_tag = bytes
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'));
    if has_tag || text.to_ascii_lowercase().contains("javascript:") {
        return Err(unprocessable(
            "text",
            "a comment is markdown: HTML and scripts are not allowed",
        ));
    }
    Ok(())
}

/// Whether an extension is a patient comment.
pub fn is_comment(extension: &Value) -> bool {
    extension["url"] == EXTENSION
}

/// The comment extensions of a resource.
fn comments(resource: &Map<String, Value>) -> Vec<Value> {
    resource
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| is_comment(e))
        .cloned()
        .collect()
}

/// Whether a resource carries comments (a create may not).
pub fn has_comments(resource: &Map<String, Value>) -> bool {
    !comments(resource).is_empty()
}

/// The merge rule: `incoming`'s comment extensions become exactly `stored`'s.
pub fn keep_stored_comments(incoming: &mut Map<String, Value>, stored: &Map<String, Value>) {
    let kept = comments(stored);
    let mut extensions: Vec<Value> = incoming
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| !is_comment(e))
        .cloned()
        .collect();
    if kept.is_empty()
        && !incoming
            .get("extension")
            .and_then(Value::as_array)
            .is_some_and(|e| e.iter().any(is_comment))
    {
        return;
    }
    extensions.extend(kept);
    if extensions.is_empty() {
        incoming.shift_remove("extension");
    } else {
        incoming.insert("extension".into(), Value::Array(extensions));
    }
}

/// A new comment extension.
pub fn new_comment(
    id: &str,
    text: &str,
    category: &str,
    author: &str,
    focus: Option<&str>,
    recorded: Millis,
) -> Value {
    let mut parts = vec![
        json!({"url": "text", "valueMarkdown": text}),
        json!({"url": "category", "valueCode": category}),
        json!({"url": "author", "valueReference": {"reference": author}}),
        json!({"url": "recorded", "valueDateTime": recorded.to_instant()}),
        json!({"url": "status", "valueCode": "active"}),
    ];
    if let Some(focus) = focus {
        parts.push(json!({"url": "focus", "valueString": focus}));
    }
    json!({"id": id, "url": EXTENSION, "extension": parts})
}

/// A sub-extension's value.
pub fn part<'a>(comment: &'a Value, name: &str) -> Option<&'a Value> {
    comment["extension"]
        .as_array()?
        .iter()
        .find(|p| p["url"] == name)
        .and_then(|p| {
            p.as_object()?
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(_, v)| v)
        })
}

/// Sets a comment's status (and the reason a clinician gave).
pub fn set_status(comment: &mut Value, status: &str, reason: Option<&str>) {
    let Some(parts) = comment["extension"].as_array_mut() else {
        return;
    };
    parts.retain(|p| p["url"] != "status" && p["url"] != "statusReason");
    parts.push(json!({"url": "status", "valueCode": status}));
    if let Some(reason) = reason {
        parts.push(json!({"url": "statusReason", "valueString": reason}));
    }
}

/// Who acts, as the Provenance and the comment record it.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The patient (`Patient/1`) or related person the comment is by.
    pub author: String,
    /// A clinician entering it for them (`Practitioner/2`, or the token subject).
    pub enterer: Option<String>,
    pub agent: Agent,
}

/// A change to a resource: returns the comment id it concerns and the Provenance activity.
pub type Change =
    dyn Fn(&mut Map<String, Value>) -> Result<(Option<String>, &'static str), ApiError> + Send;

/// What a change did.
#[derive(Debug, Clone)]
pub struct Changed {
    pub written: Written,
    pub provenance: ResourceId,
    /// The comment's element id (for `$add-comment`).
    pub comment: Option<String>,
}

/// Applies `change` to the current version of `rtype/id` and writes the result with its
/// Provenance and AuditEvent, all in one database transaction (retried if a concurrent writer
/// changed the resource first). `change` returns the comment id it concerns and the Provenance
/// activity (CREATE or UPDATE).
#[allow(clippy::too_many_arguments)]
pub fn change(
    conn: &mut DbConnection,
    validator: &Validator,
    search: &Search,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
    actor: &Actor,
    change: &Change,
) -> Result<Changed, ApiError> {
    for _ in 0..5 {
        let attempt = write_transaction(conn, |conn| -> Result<Changed, Attempt> {
            let current = match resources::read_current(conn, system_id, rtype, id)
                .map_err(|e| Attempt::Failed(e.into()))?
            {
                ReadResult::Found(stored) => stored,
                ReadResult::Deleted { .. } => {
                    return Err(Attempt::Failed(ApiError::Gone(format!("{rtype}/{id}"))))
                }
                ReadResult::NotFound => {
                    return Err(Attempt::Failed(ApiError::not_found(rtype, id.as_str())))
                }
            };
            let mut content: Map<String, Value> = serde_json::from_str(&current.content)
                .map_err(|e| Attempt::Failed(ApiError::Internal(format!("stored JSON: {e}"))))?;
            let (comment, activity) = change(&mut content).map_err(Attempt::Failed)?;
            let how = Prepare {
                always_unprocessable: true,
                ..Prepare::default()
            };
            let (content, derived) =
                prepare(validator, search, rtype, content, how).map_err(Attempt::Failed)?;
            let written = resources::update_in(
                conn,
                system_id,
                rtype,
                id,
                content,
                Some(current.version),
                &derived,
                "PUT",
            )
            .map_err(Attempt::from)?;
            let provenance = write_provenance(
                conn,
                validator,
                search,
                system_id,
                rtype,
                id,
                written.stored.version,
                actor,
                activity,
            )?;
            let row = audit::row(
                &actor.agent,
                &Access {
                    action: "U",
                    interaction: "operation".into(),
                    outcome: "0",
                    outcome_description: Some(format!(
                        "patient comment {}",
                        activity.to_lowercase()
                    )),
                    entity: Some(format!("{rtype}/{id}/_history/{}", written.stored.version)),
                    patient: actor.author.strip_prefix("Patient/").map(str::to_owned),
                },
            );
            audit::insert(conn, system_id, &[row])
                .map_err(|e| Attempt::from(WriteError::from(e)))?;
            Ok(Changed {
                written,
                provenance,
                comment,
            })
        });
        match attempt {
            Ok(changed) => return Ok(changed),
            Err(Attempt::Again) => continue,
            Err(Attempt::Failed(e)) => return Err(e),
        }
    }
    Err(ApiError::Conflict(format!(
        "{rtype}/{id} kept changing; retry"
    )))
}

enum Attempt {
    /// A concurrent writer won: try again from the new current version.
    Again,
    Failed(ApiError),
}

impl From<diesel::result::Error> for Attempt {
    fn from(err: diesel::result::Error) -> Self {
        Self::from(WriteError::from(err))
    }
}

impl From<WriteError> for Attempt {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Contended | WriteError::VersionMismatch { .. } => Self::Again,
            other => Self::Failed(ApiError::from_write(other, ResourceType::Provenance, None)),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_provenance(
    conn: &mut DbConnection,
    validator: &Validator,
    search: &Search,
    system_id: i64,
    rtype: ResourceType,
    id: &ResourceId,
    version: VersionId,
    actor: &Actor,
    activity: &str,
) -> Result<ResourceId, Attempt> {
    let who = |reference: &str| {
        if reference.contains('/') {
            json!({"reference": reference})
        } else {
            json!({"identifier": {"system": "https://fhir.carerecord.dev/Id/token-subject", "value": reference}})
        }
    };
    let mut agents = vec![json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author", "display": "Author"}]},
        "who": who(&actor.author),
    })];
    if let Some(enterer) = &actor.enterer {
        agents.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "enterer", "display": "Enterer"}]},
            "who": who(enterer),
        }));
    }
    let mut targets = vec![json!({"reference": format!("{rtype}/{id}/_history/{version}")})];
    if let (Some(patient), false) = (
        actor.author.strip_prefix("Patient/"),
        rtype == ResourceType::Patient,
    ) {
        // Listed so that the Provenance is in the patient's compartment (and $everything).
        targets.push(json!({"reference": format!("Patient/{patient}")}));
    }
    let provenance = json!({
        "resourceType": "Provenance",
        "target": targets,
        "recorded": Millis::now().to_instant(),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": activity}]},
        "agent": agents,
    });
    let Value::Object(provenance) = provenance else {
        return Err(Attempt::Failed(ApiError::Internal(
            "provenance is not an object".into(),
        )));
    };
    // Its agents (a CIS2 practitioner, say) need not be stored here: references are not checked.
    let how = Prepare {
        lenient: true,
        ..Prepare::default()
    };
    let (content, derived) = prepare(validator, search, ResourceType::Provenance, provenance, how)
        .map_err(Attempt::Failed)?;
    let provenance_id = ResourceId::generate();
    resources::create_in(
        conn,
        system_id,
        ResourceType::Provenance,
        &provenance_id,
        content,
        &derived,
    )
    .map_err(Attempt::from)?;
    Ok(provenance_id)
}

/// For errors that are store faults rather than rule violations.
impl From<StoreError> for Attempt {
    fn from(err: StoreError) -> Self {
        Self::from(WriteError::from(err))
    }
}
