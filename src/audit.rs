//! The audit trail (Care Record Guarantee): an AuditEvent, shaped to UK Core AuditEvent, for every
//! access to patient data — reads, searches, history, `$everything`, writes, and refused attempts.
//!
//! Writes record their AuditEvents inside their own database transaction. Reads hand theirs to
//! [`AuditLog`], a bounded queue drained by one writer that commits many at once (group commit);
//! the read waits for its commit, and when the audit cannot be written — the queue is full or the
//! database fails — the read fails closed (503) rather than answer unaudited.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fhir::instant::Millis;
use crate::search::sql::{Bind, Sql};
use crate::store::{indexes, write_transaction, Database, DbConnection, StoreError};

/// AuditEvents waiting for the writer at most; past this, reads fail closed.
const QUEUE: usize = 4096;
/// Requests committed together at most.
const GROUP: usize = 512;

/// Who acted.
#[derive(Debug, Clone, Default)]
pub struct Agent {
    pub sub: String,
    pub role: String,
    pub fhir_user: Option<String>,
    pub org: Option<String>,
    pub purpose_of_use: Option<String>,
    pub break_glass: Option<String>,
    pub address: Option<String>,
    pub request_id: String,
}

/// One access.
#[derive(Debug, Clone)]
pub struct Access {
    /// C, R, U, D or E (execute: search, operations).
    pub action: &'static str,
    /// The RESTful interaction (`read`, `search-type`, `create`, `transaction`, ...).
    pub interaction: String,
    /// `0` success, `4` minor failure (refused, not found), `8` serious failure.
    pub outcome: &'static str,
    pub outcome_description: Option<String>,
    /// The resource (`Encounter/1/_history/2`) or the query (`Encounter?patient=...`).
    pub entity: Option<String>,
    /// The Patient the data belongs to.
    pub patient: Option<String>,
}

/// A row of `audit_events`, ready to insert.
#[derive(Debug, Clone)]
pub struct Row {
    id: String,
    recorded: i64,
    action: String,
    outcome: String,
    agent: String,
    patient: Option<String>,
    entity: Option<String>,
    break_glass: bool,
    content: String,
}

/// The AuditEvent for an access, as a row.
pub fn row(agent: &Agent, access: &Access) -> Row {
    let id = uuid::Uuid::new_v4().to_string();
    let recorded = Millis::now();
    let content = resource(&id, recorded, agent, access);
    Row {
        id,
        recorded: recorded.0,
        action: access.action.to_owned(),
        outcome: access.outcome.to_owned(),
        agent: agent.sub.clone(),
        patient: access.patient.clone(),
        entity: access.entity.clone(),
        break_glass: agent.break_glass.is_some(),
        content: content.to_string(),
    }
}

/// The AuditEvent resource (R4, UK Core AuditEvent).
fn resource(id: &str, recorded: Millis, agent: &Agent, access: &Access) -> Value {
    let who = match &agent.fhir_user {
        Some(user) => json!({"reference": user}),
        None => {
            json!({"identifier": {"system": "https://fhir.carerecord.dev/Id/token-subject", "value": agent.sub}})
        }
    };
    let mut participant = json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
        "role": [{"text": agent.role}],
        "who": who,
        "altId": agent.sub,
        "requestor": true,
    });
    if let Some(address) = &agent.address {
        participant["network"] = json!({"address": address, "type": "2"});
    }
    if let Some(purpose) = &agent.purpose_of_use {
        participant["purposeOfUse"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}]}]);
    }
    let mut agents = vec![participant];
    if let Some(org) = &agent.org {
        agents.push(json!({
            "who": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": org}},
            "requestor": false,
        }));
    }
    let mut entities = Vec::new();
    if let Some(entity) = &access.entity {
        let what = if entity.contains('?') {
            json!({"display": entity})
        } else {
            json!({"reference": entity})
        };
        entities.push(json!({"what": what, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}}));
    }
    if let Some(patient) = &access.patient {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-AuditEvent"]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": access.interaction}],
        "action": access.action,
        "recorded": recorded.to_instant(),
        "outcome": access.outcome,
        "agent": agents,
        "source": {"observer": {"display": "carerecord"}, "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "extension": [{"url": "https://fhir.carerecord.dev/StructureDefinition/request-id", "valueString": agent.request_id}],
    });
    if !entities.is_empty() {
        event["entity"] = Value::Array(entities);
    }
    if let Some(description) = &access.outcome_description {
        event["outcomeDesc"] = Value::String(description.clone());
    }
    if let Some(reason) = &agent.break_glass {
        event["purposeOfEvent"] = json!([{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}],
            "text": reason,
        }]);
    }
    event
}

/// Inserts AuditEvents inside the caller's transaction.
pub fn insert(conn: &mut DbConnection, system_id: i64, rows: &[Row]) -> Result<(), StoreError> {
    let values = rows
        .iter()
        .map(|r| {
            vec![
                Some(Bind::Int(system_id)),
                Some(indexes::text(&r.id)),
                Some(Bind::Int(r.recorded)),
                Some(indexes::text(&r.action)),
                Some(indexes::text(&r.outcome)),
                Some(indexes::text(&r.agent)),
                r.patient.as_deref().map(indexes::text),
                r.entity.as_deref().map(indexes::text),
                Some(Bind::Bool(r.break_glass)),
                Some(indexes::text(&r.content)),
            ]
        })
        .collect();
    indexes::insert(
        conn,
        "audit_events",
        "system_id, id, recorded, action, outcome, agent, patient_id, entity, break_glass, content",
        values,
    )
}

#[derive(Debug, thiserror::Error)]
#[error("the audit trail cannot be written: {0}")]
pub struct AuditUnavailable(pub String);

struct Job {
    system_id: i64,
    rows: Vec<Row>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The read path's audit writer.
#[derive(Clone)]
pub struct AuditLog {
    queue: SyncSender<Job>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer thread on its own connections from `db`.
    pub fn start(db: Database) -> Self {
        let (queue, jobs) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(db, jobs))
            .map(|_| ())
            .unwrap_or_else(|e| log::error!("audit writer did not start: {e}"));
        Self { queue }
    }

    /// Records accesses, durably, before returning; fails when they cannot be recorded.
    pub async fn record(&self, system_id: i64, rows: Vec<Row>) -> Result<(), AuditUnavailable> {
        if rows.is_empty() {
            return Ok(());
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        match self.queue.try_send(Job {
            system_id,
            rows,
            done,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(AuditUnavailable(
                    "too many accesses are waiting to be audited".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(AuditUnavailable("the audit writer has stopped".into()))
            }
        }
        match tokio::time::timeout(Duration::from_secs(30), wait).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(AuditUnavailable(reason)),
            _ => Err(AuditUnavailable("the audit writer did not answer".into())),
        }
    }
}

fn writer(db: Database, jobs: Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = db.conn().map_err(|e| e.to_string()).and_then(|mut conn| {
            write_transaction(&mut conn, |conn| {
                for job in &batch {
                    insert(conn, job.system_id, &job.rows)?;
                }
                Ok::<_, StoreError>(())
            })
            .map_err(|e| e.to_string())
        });
        if let Err(e) = &result {
            log::error!("audit write failed: {e}");
        }
        for job in batch {
            let _ = job.done.send(result.clone());
        }
    }
}

/// Finds AuditEvents (`AuditEvent?patient=&agent=&action=&entity=&date=`), newest first.
pub fn search_sql(system_id: i64, filters: &[(String, String)], limit: usize) -> Sql {
    let mut sql = Sql::new(
        "SELECT seq AS pk, 'AuditEvent' AS resource_type, id, content, CAST(NULL AS TEXT) AS k0, \
         CAST(NULL AS TEXT) AS k1, CAST(NULL AS TEXT) AS k2 FROM audit_events WHERE system_id = ",
    );
    sql.bind(Bind::Int(system_id));
    for (column, value) in filters {
        match column.as_str() {
            "recorded>=" => {
                sql.push(" AND recorded >= ");
                sql.bind(Bind::Int(value.parse().unwrap_or(0)));
            }
            "recorded<=" => {
                sql.push(" AND recorded <= ");
                sql.bind(Bind::Int(value.parse().unwrap_or(i64::MAX)));
            }
            "patient_id" | "agent" | "action" | "entity" | "id" => {
                sql.push(&format!(" AND {column} = "));
                sql.bind(Bind::Text(value.clone()));
            }
            _ => {}
        }
    }
    sql.push(" ORDER BY recorded DESC, seq DESC LIMIT ");
    sql.bind(Bind::Int(i64::try_from(limit).unwrap_or(100)));
    sql
}
