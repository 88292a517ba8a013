//! The audit trail (Care Record Guarantee): an AuditEvent, shaped to UK Core AuditEvent, for every
//! access to patient data — reads, searches, history, `$everything`, writes, and refused attempts.
//!
//! Writes record their AuditEvents inside their own database transaction. Reads hand theirs to
//! [`AuditLog`], a bounded queue drained by one writer that commits many at once (group commit);
//! the read waits for its commit, and when the audit cannot be written — the queue is full or the
//! database fails — the read fails closed (503) rather than answer unaudited.
//!
//! On PostgreSQL the writer commits into `audit_events`. On SQLite it commits into the audit
//! inbox, a database file of its own ([`Database::audit_inbox`]): a commit there appends to one
//! unindexed table, neither waits for the main database's single writer nor makes the main
//! database's readers drop their page caches (SQLite empties a reader's cache whenever another
//! connection has committed), and costs a fraction of an indexed insert. A mover thread takes
//! the inbox's rows into `audit_events` in bulk — when a thousand are waiting, at least twice a
//! second, and before any AuditEvent is searched ([`AuditLog::flush`]) — so the trail searched
//! is always complete. A row is deleted from the inbox only after its move has committed, and the
//! move skips rows already moved, so a crash between the two loses and doubles nothing.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fhir::instant::Millis;
use crate::search::sql::{Bind, Sql};
use crate::store::{
    as_audit_inbox_writer, audit_inbox_transaction, checkpoint_attached_inbox, indexes,
    write_transaction, write_transaction_deferred, Database, DbConnection, StoreError,
};

/// AuditEvents waiting for the writer at most; past this, reads fail closed.
const QUEUE: usize = 4096;
/// Requests committed together at most.
const GROUP: usize = 512;
/// Inbox rows moved into `audit_events` by one transaction at most (it holds the main database's
/// writer for a few milliseconds).
const MOVE_BATCH: usize = 4_000;
/// Inbox rows committed since the last move that wake the mover.
const MOVE_AT: usize = 4_000;
/// How often the mover looks at the inbox when nothing wakes it.
const MOVE_EVERY: Duration = Duration::from_millis(1_000);

const COLUMNS: &str =
    "system_id, id, recorded, action, outcome, agent, patient_id, entity, break_glass, detail";

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

/// A row of `audit_events`, ready to insert: the facts of one access. The AuditEvent resource is
/// rendered from them when it is read ([`render`]); the trail grows with every read of patient
/// data, so it stores what happened, not the JSON that describes it.
#[derive(Debug, Clone)]
pub struct Row {
    id: String,
    recorded: i64,
    action: &'static str,
    outcome: &'static str,
    agent: String,
    patient: Option<String>,
    entity: Option<String>,
    break_glass: bool,
    detail: String,
}

/// What a row holds besides its columns (`audit_events.detail`, compact JSON).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Detail {
    #[serde(rename = "i")]
    interaction: String,
    #[serde(rename = "r")]
    role: String,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    fhir_user: Option<String>,
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<String>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    break_glass: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(rename = "q", default, skip_serializing_if = "String::is_empty")]
    request_id: String,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    outcome_description: Option<String>,
}

/// The row recording an access. Ids are UUIDv7: time-ordered, so the trail's unique index
/// grows at its end instead of at a random page per insert.
pub fn row(agent: &Agent, access: &Access) -> Row {
    let detail = Detail {
        interaction: access.interaction.clone(),
        role: agent.role.clone(),
        fhir_user: agent.fhir_user.clone(),
        org: agent.org.clone(),
        purpose_of_use: agent.purpose_of_use.clone(),
        break_glass: agent.break_glass.clone(),
        address: agent.address.clone(),
        request_id: agent.request_id.clone(),
        outcome_description: access.outcome_description.clone(),
    };
    Row {
        id: uuid::Uuid::now_v7().to_string(),
        recorded: Millis::now().0,
        action: access.action,
        outcome: access.outcome,
        agent: agent.sub.clone(),
        patient: access.patient.clone(),
        entity: access.entity.clone(),
        break_glass: agent.break_glass.is_some(),
        // A struct of strings always serialises.
        detail: serde_json::to_string(&detail).unwrap_or_default(),
    }
}

/// An `audit_events` row as read.
#[derive(Debug, diesel::QueryableByName)]
pub struct Stored {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    recorded: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    action: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    outcome: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    agent: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    patient_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    entity: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    detail: Option<String>,
    /// The resource as rendered when it was recorded (rows written before the trail was stored
    /// as facts).
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    content: Option<String>,
}

impl Stored {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The AuditEvent resource (JSON text).
    pub fn render(&self) -> Result<String, StoreError> {
        if let Some(content) = &self.content {
            return Ok(content.clone());
        }
        let detail: Detail = match &self.detail {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
            None => Detail::default(),
        };
        let agent = Agent {
            sub: self.agent.clone(),
            role: detail.role,
            fhir_user: detail.fhir_user,
            org: detail.org,
            purpose_of_use: detail.purpose_of_use,
            break_glass: detail.break_glass,
            address: detail.address,
            request_id: detail.request_id,
        };
        let access = Access {
            action: action_code(&self.action),
            interaction: detail.interaction,
            outcome: outcome_code(&self.outcome),
            outcome_description: detail.outcome_description,
            entity: self.entity.clone(),
            patient: self.patient_id.clone(),
        };
        Ok(resource(&self.id, Millis(self.recorded), &agent, &access).to_string())
    }
}

fn action_code(text: &str) -> &'static str {
    ["C", "R", "U", "D", "E"]
        .into_iter()
        .find(|code| *code == text)
        .unwrap_or("E")
}

fn outcome_code(text: &str) -> &'static str {
    ["0", "4", "8", "12"]
        .into_iter()
        .find(|code| *code == text)
        .unwrap_or("8")
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

fn values(system_id: i64, rows: &[Row]) -> Vec<Vec<Option<Bind>>> {
    rows.iter()
        .map(|r| {
            vec![
                Some(Bind::Int(system_id)),
                Some(indexes::text(&r.id)),
                Some(Bind::Int(r.recorded)),
                Some(indexes::text(r.action)),
                Some(indexes::text(r.outcome)),
                Some(indexes::text(&r.agent)),
                r.patient.as_deref().map(indexes::text),
                r.entity.as_deref().map(indexes::text),
                Some(Bind::Bool(r.break_glass)),
                Some(indexes::text(&r.detail)),
            ]
        })
        .collect()
}

/// Inserts AuditEvents inside the caller's transaction.
pub fn insert(conn: &mut DbConnection, system_id: i64, rows: &[Row]) -> Result<(), StoreError> {
    indexes::insert(conn, "audit_events", COLUMNS, values(system_id, rows))
}

#[derive(Debug, thiserror::Error)]
#[error("the audit trail cannot be written: {0}")]
pub struct AuditUnavailable(pub String);

struct Job {
    system_id: i64,
    rows: Vec<Row>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// What wakes the mover.
enum Wake {
    /// Enough rows are waiting.
    Rows,
    /// An AuditEvent search waits until everything recorded so far is in `audit_events`.
    Flush(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The read path's audit writer.
#[derive(Clone)]
pub struct AuditLog {
    queue: SyncSender<Job>,
    /// SQLite: the inbox's mover.
    mover: Option<SyncSender<Wake>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(work) {
        log::error!("{name} did not start: {e}");
    }
}

impl AuditLog {
    /// Starts the writer (and, on SQLite, the inbox's mover) on connections of their own.
    pub fn start(db: Database) -> Self {
        let (queue, jobs) = sync_channel(QUEUE);
        let inbox = match db.audit_inbox() {
            Ok(inbox) => inbox,
            Err(e) => {
                // Every audited read will fail closed until the inbox can be opened.
                log::error!("audit inbox: {e}");
                None
            }
        };
        let mover = match inbox {
            Some(inbox) => {
                let (wake, wakes) = sync_channel(QUEUE);
                let mover_db = db.clone();
                spawn("audit-mover", move || mover(mover_db, wakes));
                let nudge = wake.clone();
                spawn("audit-writer", move || inbox_writer(db, inbox, jobs, nudge));
                Some(wake)
            }
            None if db.backend() == "sqlite" => {
                spawn("audit-writer", move || refuse(jobs));
                None
            }
            None => {
                spawn("audit-writer", move || writer(db, jobs));
                None
            }
        };
        Self { queue, mover }
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
        answer(wait).await
    }

    /// Waits until every access recorded so far can be found in `audit_events` (on SQLite, until
    /// the inbox has been moved; on PostgreSQL it already is).
    pub async fn flush(&self) -> Result<(), AuditUnavailable> {
        let Some(mover) = &self.mover else {
            return Ok(());
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        mover
            .try_send(Wake::Flush(done))
            .map_err(|_| AuditUnavailable("the audit mover is not answering".into()))?;
        answer(wait).await
    }
}

async fn answer(
    wait: tokio::sync::oneshot::Receiver<Result<(), String>>,
) -> Result<(), AuditUnavailable> {
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(reason))) => Err(AuditUnavailable(reason)),
        _ => Err(AuditUnavailable("the audit writer did not answer".into())),
    }
}

/// The next group of jobs: the first to arrive and whatever else is waiting.
fn next_group(jobs: &Receiver<Job>) -> Option<Vec<Job>> {
    let first = jobs.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < GROUP {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Inserts a group's rows, one multi-row insert per local system, into `table`.
fn insert_group(conn: &mut DbConnection, table: &str, batch: &[Job]) -> Result<(), StoreError> {
    let mut systems: Vec<i64> = batch.iter().map(|job| job.system_id).collect();
    systems.sort_unstable();
    systems.dedup();
    for system_id in systems {
        let rows: Vec<Row> = batch
            .iter()
            .filter(|job| job.system_id == system_id)
            .flat_map(|job| job.rows.iter().cloned())
            .collect();
        indexes::insert(conn, table, COLUMNS, values(system_id, &rows))?;
    }
    Ok(())
}

fn reply(batch: Vec<Job>, result: &Result<(), String>) {
    if let Err(e) = result {
        log::error!("audit write failed: {e}");
    }
    for job in batch {
        let _ = job.done.send(result.clone());
    }
}

/// PostgreSQL: group commits into `audit_events`, on a connection of the writer's own that does
/// not wait for the WAL to reach the disk at commit (`synchronous_commit = off`): a read's audit is
/// committed — in the table, seen by every later search — before the read is answered, and an
/// operating-system or PostgreSQL crash can lose the last fraction of a second of them, as a
/// power cut can lose SQLite's last commits in its NORMAL sync mode. Writes audit inside their own
/// transactions, with the database's durability.
fn writer(db: Database, jobs: Receiver<Job>) {
    use diesel::connection::SimpleConnection;
    let mut conn: Option<DbConnection> = None;
    while let Some(batch) = next_group(&jobs) {
        if conn.is_none() {
            conn = db
                .dedicated_connection()
                .and_then(|mut c| {
                    c.batch_execute("SET synchronous_commit = off")?;
                    Ok(c)
                })
                .map_err(|e| log::error!("audit writer: {e}"))
                .ok();
        }
        let result = match conn.as_mut() {
            Some(c) => write_transaction(c, |c| insert_group(c, "audit_events", &batch))
                .map_err(|e| e.to_string()),
            None => Err("the audit writer has no database connection".into()),
        };
        if result.is_err() {
            conn = None;
        }
        reply(batch, &result);
    }
}

/// SQLite without an inbox (it could not be opened): every audited read fails closed.
fn refuse(jobs: Receiver<Job>) {
    while let Some(batch) = next_group(&jobs) {
        reply(batch, &Err("the audit inbox cannot be opened".into()));
    }
}

/// SQLite: group commits into the inbox, waking the mover as rows accumulate.
fn inbox_writer(db: Database, inbox: DbConnection, jobs: Receiver<Job>, mover: SyncSender<Wake>) {
    let mut inbox = Some(inbox);
    let mut since_move = 0;
    while let Some(batch) = next_group(&jobs) {
        if inbox.is_none() {
            inbox = db.audit_inbox().ok().flatten();
        }
        let result = match inbox.as_mut() {
            Some(conn) => {
                audit_inbox_transaction(conn, |conn| insert_group(conn, "audit_inbox", &batch))
                    .map_err(|e| e.to_string())
            }
            None => Err("the audit inbox cannot be opened".into()),
        };
        if result.is_err() {
            // A connection that failed is opened afresh for the next group.
            inbox = None;
        } else {
            since_move += batch.iter().map(|job| job.rows.len()).sum::<usize>();
            if since_move >= MOVE_AT {
                since_move = 0;
                let _ = mover.try_send(Wake::Rows);
            }
        }
        reply(batch, &result);
    }
}

/// SQLite: moves the inbox into `audit_events` when woken or every [`MOVE_EVERY`], and at once
/// (answering when done) for a flush.
fn mover(db: Database, wakes: Receiver<Wake>) {
    let mut inbox: Option<DbConnection> = None;
    let mut stopping = false;
    while !stopping {
        let mut flushes = Vec::new();
        match wakes.recv_timeout(MOVE_EVERY) {
            Ok(Wake::Flush(done)) => flushes.push(done),
            Ok(Wake::Rows) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // The server is stopping: what is left is moved once more.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => stopping = true,
        }
        while let Ok(wake) = wakes.try_recv() {
            if let Wake::Flush(done) = wake {
                flushes.push(done);
            }
        }
        if inbox.is_none() {
            inbox = db.audit_inbox_attached().ok().flatten();
        }
        let result = match inbox.as_mut() {
            Some(conn) => move_all(conn).map_err(|e| e.to_string()),
            None => Err("the audit inbox cannot be opened".into()),
        };
        if let Err(e) = &result {
            log::error!("moving the audit inbox failed: {e}");
            inbox = None;
        }
        for done in flushes {
            let _ = done.send(result.clone());
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Last {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    seq: Option<i64>,
}

/// Moves every row in the inbox, [`MOVE_BATCH`] to a transaction, with SQL alone (the inbox is
/// attached to `conn`): first copied into `audit_events`, skipping rows a move interrupted by a
/// crash had already copied, then deleted from the inbox; then the inbox is checkpointed.
fn move_all(conn: &mut DbConnection) -> Result<(), StoreError> {
    use diesel::RunQueryDsl;
    loop {
        let last = diesel::sql_query(format!(
            "SELECT MAX(seq) AS seq FROM \
             (SELECT seq FROM inbox.audit_inbox ORDER BY seq LIMIT {MOVE_BATCH})"
        ))
        .get_result::<Last>(conn)?
        .seq;
        let Some(last) = last else {
            break;
        };
        // A deferred transaction: BEGIN IMMEDIATE would take the inbox's write lock too and hold
        // up the audit writer while the rows are copied.
        let copied = write_transaction_deferred(conn, |conn| {
            diesel::sql_query(format!(
                "INSERT INTO main.audit_events ({COLUMNS}) SELECT {COLUMNS} FROM inbox.audit_inbox \
                 WHERE seq <= {last} ORDER BY seq ON CONFLICT (system_id, id) DO NOTHING"
            ))
            .execute(conn)
        });
        copied?;
        let deleted = as_audit_inbox_writer(|| {
            diesel::sql_query(format!("DELETE FROM inbox.audit_inbox WHERE seq <= {last}"))
                .execute(conn)
        })?;
        if deleted < MOVE_BATCH {
            break;
        }
    }
    checkpoint_attached_inbox(conn)?;
    Ok(())
}

/// Finds AuditEvents (`AuditEvent?patient=&agent=&action=&entity=&date=`), newest first.
fn search_sql(system_id: i64, filters: &[(String, String)], limit: usize) -> Sql {
    let mut sql = Sql::new(
        "SELECT id, recorded, action, outcome, agent, patient_id, entity, detail, content \
         FROM audit_events WHERE system_id = ",
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
    sql.push(&limit.to_string());
    sql
}

/// AuditEvents matching `filters` (see [`search_sql`]), newest first.
pub fn search(
    conn: &mut DbConnection,
    system_id: i64,
    filters: &[(String, String)],
    limit: usize,
) -> Result<Vec<Stored>, StoreError> {
    use diesel::RunQueryDsl;
    let sql = search_sql(system_id, filters, limit);
    Ok(crate::store::search::prepared(conn, &sql).load(conn)?)
}
