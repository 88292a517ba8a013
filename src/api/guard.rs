//! What a verified caller may see, applied where patient data is read (read, vread, history,
//! search results and includes, `$everything`), and the audit of every such read.
//!
//! - A patient sees only their own compartment: anything else answers 404, never 403, so ids
//!   cannot be probed.
//! - A restricted record (`meta.security` v3-Confidentiality R) and its compartment are readable
//!   by a clinician only with a break-glass reason (`purpose_of_use` BTG or
//!   `X-Break-Glass-Reason`); such reads are audited with the reason and flagged.

use serde_json::Value;

use super::context::FhirRequest;
use crate::audit::{self, Access};
use crate::auth::{patient_of, Caller, Role};
use crate::error::ApiError;
use crate::fhir::ResourceType;
use crate::store::{access, DbConnection};

/// Whose record a stored resource is part of. Runs for every resource read or found, so a Patient,
/// Encounter or ServiceRequest is not parsed whole: only `id` and `subject` are read and every
/// other element is skipped.
pub fn owner(rtype: ResourceType, content: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default)]
        id: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        subject: Option<Value>,
    }
    match rtype {
        ResourceType::Patient | ResourceType::Encounter | ResourceType::ServiceRequest => {
            let fields: Fields = serde_json::from_str(content).ok()?;
            let mut resource = serde_json::Map::new();
            if let Some(id) = fields.id {
                resource.insert("id".into(), Value::String(id.into_owned()));
            }
            if let Some(subject) = fields.subject {
                resource.insert("subject".into(), subject);
            }
            patient_of(rtype, &Value::Object(resource))
        }
        ResourceType::Provenance => serde_json::from_str::<Value>(content)
            .ok()
            .and_then(|v| patient_of(rtype, &v)),
        _ => None,
    }
}

/// Decides whether `caller` may see a resource belonging to `patient` (inside the database
/// closure, where the restriction can be looked up).
pub fn visible(
    conn: &mut DbConnection,
    system_id: i64,
    caller: Option<&Caller>,
    patient: Option<&str>,
    what: &str,
) -> Result<(), ApiError> {
    let Some(caller) = caller else {
        return Ok(());
    };
    match caller.role() {
        Role::Patient => {
            let own = caller.patient().map(|p| p.to_string());
            if patient.is_none() || patient != own.as_deref() {
                return Err(ApiError::NotFound(what.to_owned()));
            }
        }
        Role::Clinician => {
            if let (Some(patient), None) = (patient, &caller.break_glass) {
                if !access::restricted(conn, system_id, &[patient.to_owned()])?.is_empty() {
                    return Err(ApiError::Forbidden(format!(
                        "{what} is part of a restricted record; a break-glass reason (X-Break-Glass-Reason, or purpose_of_use BTG) is needed"
                    )));
                }
            }
        }
        Role::Feeder | Role::Admin => {}
    }
    Ok(())
}

/// Which of `patients` a caller may not see in search results (returned, so they can be removed).
pub fn hidden_patients(
    conn: &mut DbConnection,
    system_id: i64,
    caller: Option<&Caller>,
    patients: &[String],
) -> Result<Vec<String>, ApiError> {
    let Some(caller) = caller else {
        return Ok(Vec::new());
    };
    Ok(match caller.role() {
        Role::Patient => {
            let own = caller.patient().map(|p| p.to_string());
            patients
                .iter()
                .filter(|p| Some(p.as_str()) != own.as_deref())
                .cloned()
                .collect()
        }
        Role::Clinician if caller.break_glass.is_none() => {
            access::restricted(conn, system_id, patients)?
        }
        _ => Vec::new(),
    })
}

/// Records reads of patient data, waiting until they are durable (503 when they cannot be).
pub async fn audit_reads(ctx: &FhirRequest, accesses: Vec<Access>) -> Result<(), ApiError> {
    let rows: Vec<audit::Row> = accesses.iter().map(|a| audit::row(&ctx.agent, a)).collect();
    ctx.state
        .audit
        .record(ctx.system_id, rows)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// An audit entry for a read of one resource.
pub fn read_access(interaction: &str, entity: String, patient: Option<String>) -> Access {
    Access {
        action: "R",
        interaction: interaction.to_owned(),
        outcome: "0",
        outcome_description: None,
        entity: Some(entity),
        patient,
    }
}

/// An audit entry for a refused or failed read.
pub fn failed_access(interaction: &str, entity: String, error: &ApiError) -> Access {
    use actix_web::ResponseError;
    Access {
        action: "R",
        interaction: interaction.to_owned(),
        outcome: if error.status_code().is_server_error() {
            "8"
        } else {
            "4"
        },
        outcome_description: Some(error.to_string()),
        entity: Some(entity),
        patient: None,
    }
}

/// Reads one resource (or version) as `fetch` does, then applies visibility and audits the read
/// (whatever its outcome).
pub async fn read_guarded<F>(
    ctx: &FhirRequest,
    rtype: ResourceType,
    interaction: &'static str,
    entity: String,
    fetch: F,
) -> Result<crate::store::resources::ReadResult, ApiError>
where
    F: FnOnce(
            &mut DbConnection,
        ) -> Result<crate::store::resources::ReadResult, crate::store::StoreError>
        + Send
        + 'static,
{
    use crate::store::resources::ReadResult;
    let system_id = ctx.system_id;
    let caller = ctx.caller.clone();
    let what = entity.clone();
    let outcome = ctx
        .state
        .db
        .run(move |conn| {
            let result = fetch(conn)?;
            let owner = match &result {
                ReadResult::Found(stored) => owner(rtype, &stored.content),
                _ => None,
            };
            let is_patient = caller.as_ref().is_some_and(|c| c.role() == Role::Patient);
            if matches!(result, ReadResult::Found(_)) || is_patient {
                visible(conn, system_id, caller.as_ref(), owner.as_deref(), &what)?;
            }
            Ok::<_, ApiError>((result, owner))
        })
        .await;
    match outcome {
        Ok((result, owner)) => {
            let entity = match &result {
                ReadResult::Found(stored) if !entity.contains("/_history") => {
                    format!("{entity}/_history/{}", stored.version)
                }
                _ => entity,
            };
            audit_reads(ctx, vec![read_access(interaction, entity, owner)]).await?;
            Ok(result)
        }
        Err(error) => {
            audit_reads(ctx, vec![failed_access(interaction, entity, &error)]).await?;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_reads_only_what_names_the_patient() {
        let cases = [
            (
                ResourceType::Patient,
                r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Smith"}]}"#,
                Some("p1"),
            ),
            (
                ResourceType::Encounter,
                r#"{"resourceType":"Encounter","id":"e1","status":"finished","subject":{"reference":"Patient/p2"},"class":{"code":"AMB"}}"#,
                Some("p2"),
            ),
            (
                ResourceType::ServiceRequest,
                r#"{"resourceType":"ServiceRequest","id":"s1","subject":{"reference":"Patient/p3/_history/4"}}"#,
                Some("p3"),
            ),
            (
                ResourceType::Encounter,
                r#"{"resourceType":"Encounter","id":"e2","subject":{"reference":"Group/g1"}}"#,
                None,
            ),
            (
                ResourceType::Encounter,
                r#"{"resourceType":"Encounter","id":"e3","status":"planned"}"#,
                None,
            ),
            (
                ResourceType::Provenance,
                r#"{"resourceType":"Provenance","target":[{"reference":"Patient/p4"}]}"#,
                Some("p4"),
            ),
            (
                ResourceType::Organization,
                r#"{"resourceType":"Organization","id":"o1"}"#,
                None,
            ),
        ];
        for (rtype, content, expected) in cases {
            assert_eq!(owner(rtype, content).as_deref(), expected, "{content}");
            let parsed: Value = serde_json::from_str(content).unwrap();
            let whole = if matches!(
                rtype,
                ResourceType::Patient
                    | ResourceType::Encounter
                    | ResourceType::ServiceRequest
                    | ResourceType::Provenance
            ) {
                patient_of(rtype, &parsed)
            } else {
                None
            };
            assert_eq!(owner(rtype, content), whole, "{content}");
        }
    }
}
