//! Transactions and batches (<https://hl7.org/fhir/R4/http.html#transaction>), conditional
//! interactions and PATCH: the engine the HTTP API and `carerecord import` share.
//!
//! A transaction is one database transaction: entries are processed in the FHIR order (DELETE,
//! POST, PUT/PATCH, GET); `urn:uuid:`/`urn:oid:` fullUrls and conditional references
//! (`Patient?identifier=...`) are resolved first and every reference to them rewritten, in one
//! linear pass over each resource; references are checked once every entry is written. Any
//! failure rolls everything back and names the entry. A batch runs each entry on its own.

pub mod conditional;
pub mod patch;

use std::collections::{HashMap, HashSet};

use actix_web::http::StatusCode;
use serde_json::{json, Map, Value};

use crate::audit::Agent;
use crate::auth::{authorize, Caller, Interaction, Role};
use crate::comments;
use crate::error::ApiError;
use crate::fhir::instant::Millis;
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::{ResourceId, ResourceType, VersionId};
use crate::search::Search;
use crate::store::resources::{self, Deleted, ReadResult, WriteError, WriteKind, Written};
use crate::store::{write_transaction, DbConnection};
use crate::validation::Validator;
use crate::write::{prepare, Prepare};

/// The most entries a Bundle may carry (413 beyond).
pub const MAX_ENTRIES: usize = 10_000;
/// A conditional delete removes at most this many resources (412 beyond).
pub const MAX_CONDITIONAL_DELETES: usize = 100;
/// A contended transaction is retried this many times.
const RETRIES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Delete,
    Post,
    Put,
    Patch,
    Get,
}

impl Method {
    /// The FHIR transaction processing order: DELETE, POST, PUT/PATCH, GET/HEAD.
    fn rank(self) -> u8 {
        match self {
            Self::Delete => 0,
            Self::Post => 1,
            Self::Put | Self::Patch => 2,
            Self::Get => 3,
        }
    }
}

/// What an entry's `request.url` names.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Type(ResourceType),
    Instance(ResourceType, ResourceId),
    Version(ResourceType, ResourceId, VersionId),
    /// `Type?condition`: a conditional write, or a search for GET.
    Conditional(ResourceType, String),
}

impl Target {
    fn resource_type(&self) -> ResourceType {
        match self {
            Self::Type(t)
            | Self::Instance(t, _)
            | Self::Version(t, _, _)
            | Self::Conditional(t, _) => *t,
        }
    }
}

/// One parsed entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub index: usize,
    pub full_url: Option<String>,
    pub method: Method,
    pub target: Target,
    pub resource: Option<Map<String, Value>>,
    pub if_none_exist: Option<String>,
    pub if_match: Option<VersionId>,
    pub if_none_match: Option<String>,
}

/// The outcome of one entry, as it goes into the response Bundle.
#[derive(Debug, Clone, Default)]
pub struct EntryResult {
    pub status: u16,
    pub location: Option<String>,
    pub version: Option<VersionId>,
    pub last_modified: Option<Millis>,
    /// The resource (JSON text), when there is one to return.
    pub resource: Option<String>,
    pub outcome: Option<Vec<Issue>>,
    /// What a write did (`Unchanged` also for a conditional create that found its resource).
    pub kind: Option<WriteKind>,
}

/// A failed entry: which one, and why.
#[derive(Debug)]
pub struct EntryError {
    pub index: usize,
    pub full_url: Option<String>,
    pub error: ApiError,
}

impl EntryError {
    /// The error's issues, each naming the entry.
    pub fn issues(&self) -> Vec<Issue> {
        let prefix = format!("Bundle.entry[{}]", self.index);
        let label = match &self.full_url {
            Some(url) => format!("{prefix} ({url})"),
            None => prefix.clone(),
        };
        self.error
            .issues()
            .into_iter()
            .map(|mut issue| {
                issue.diagnostics = format!("{label}: {}", issue.diagnostics);
                issue.expression = issue
                    .expression
                    .iter()
                    .map(|e| match e.split_once('.') {
                        Some((head, rest))
                            if head.chars().next().is_some_and(char::is_uppercase) =>
                        {
                            format!("{prefix}.resource.{rest}")
                        }
                        _ => format!("{prefix}.{e}"),
                    })
                    .collect();
                if issue.expression.is_empty() {
                    issue.expression.push(prefix.clone());
                }
                issue
            })
            .collect()
    }

    pub fn status(&self) -> StatusCode {
        use actix_web::ResponseError;
        self.error.status_code()
    }
}

/// What the engine needs besides the connection.
pub struct Engine<'a> {
    pub validator: &'a Validator,
    pub search: &'a Search,
    pub system_id: i64,
    /// The local system's FHIR base, for absolute references to itself.
    pub base: &'a str,
    pub lenient: bool,
    /// The caller, whose access each entry is checked against (`None`: a local import).
    pub caller: Option<&'a Caller>,
    /// The local system's slug (what a token is bound to).
    pub system: &'a str,
    /// Who acts, for the AuditEvents written with each entry (`None`: not audited).
    pub agent: Option<&'a Agent>,
}

/// Checks each entry against the caller's access before anything runs.
fn authorize_entries(engine: &Engine<'_>, entries: &[Entry]) -> Result<(), EntryError> {
    let Some(caller) = engine.caller else {
        return Ok(());
    };
    for entry in entries {
        if caller.role() == Role::Patient {
            return Err(entry_error(
                entry,
                ApiError::Forbidden("a patient may not send transactions or batches".into()),
            ));
        }
        let interaction = match (entry.method, &entry.target) {
            (Method::Post, _) => Interaction::Create,
            (Method::Put | Method::Patch, _) => Interaction::Update,
            (Method::Delete, _) => Interaction::Delete,
            (Method::Get, Target::Type(_) | Target::Conditional(..)) => Interaction::Search,
            (Method::Get, _) => Interaction::Read,
        };
        authorize(
            caller,
            engine.system,
            entry.target.resource_type().as_str(),
            interaction,
        )
        .map_err(|denied| entry_error(entry, ApiError::Forbidden(denied.to_string())))?;
    }
    Ok(())
}

/// The AuditEvents of a transaction's entries, written in its own database transaction.
fn audit_entries(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    entries: &[Entry],
    results: &[EntryResult],
) -> Result<(), TxError> {
    let Some(agent) = engine.agent else {
        return Ok(());
    };
    let rows: Vec<crate::audit::Row> = entries
        .iter()
        .zip(results)
        .map(|(entry, result)| {
            let rtype = entry.target.resource_type();
            let (action, interaction) = match entry.method {
                Method::Post => ("C", "create"),
                Method::Put => ("U", "update"),
                Method::Patch => ("U", "patch"),
                Method::Delete => ("D", "delete"),
                Method::Get => ("R", "read"),
            };
            let patient = result
                .resource
                .as_deref()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
                .and_then(|v| crate::auth::patient_of(rtype, &v));
            let entity = result.location.clone().or_else(|| match &entry.target {
                Target::Instance(t, id) => Some(format!("{t}/{id}")),
                Target::Conditional(t, c) => Some(format!("{t}?{c}")),
                Target::Version(t, id, v) => Some(format!("{t}/{id}/_history/{v}")),
                Target::Type(t) => Some(t.to_string()),
            });
            crate::audit::row(
                agent,
                &crate::audit::Access {
                    action,
                    interaction: interaction.into(),
                    outcome: if result.status < 400 { "0" } else { "4" },
                    outcome_description: None,
                    entity,
                    patient,
                },
            )
        })
        .collect();
    crate::audit::insert(conn, engine.system_id, &rows).map_err(|e| match e {
        crate::store::StoreError::Query(q) => TxError::from(q),
        other => TxError::Entry(EntryError {
            index: 0,
            full_url: None,
            error: ApiError::from(other),
        }),
    })
}

fn entry_error(entry: &Entry, error: ApiError) -> EntryError {
    use actix_web::ResponseError;
    if error.status_code().is_server_error() {
        // The cause stays in the log; the client is told only that it was internal.
        log::error!("Bundle.entry[{}] failed: {error}", entry.index);
    }
    EntryError {
        index: entry.index,
        full_url: entry.full_url.clone(),
        error,
    }
}

fn bad(
    index: usize,
    full_url: Option<&String>,
    field: &str,
    message: impl Into<String>,
) -> EntryError {
    EntryError {
        index,
        full_url: full_url.cloned(),
        error: ApiError::invalid_parameter(field, message),
    }
}

/// The kind of Bundle posted to the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Transaction,
    Batch,
}

/// Reads a transaction or batch Bundle into entries (400 naming the entry for any problem; 413
/// past [`MAX_ENTRIES`]).
pub fn parse(bundle: Map<String, Value>, base: &str) -> Result<(Kind, Vec<Entry>), EntryError> {
    let whole = |error: ApiError| EntryError {
        index: 0,
        full_url: None,
        error,
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(whole(ApiError::invalid_parameter(
            "resourceType",
            "the base takes a Bundle of type transaction or batch",
        )));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => Kind::Transaction,
        Some("batch") => Kind::Batch,
        other => {
            return Err(whole(ApiError::invalid_parameter(
                "Bundle.type",
                format!(
                    "must be transaction or batch, not {}",
                    other.unwrap_or("missing")
                ),
            )))
        }
    };
    let raw_entries = match bundle.get("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries.clone(),
        Some(_) => {
            return Err(whole(ApiError::invalid_parameter(
                "Bundle.entry",
                "must be an array",
            )))
        }
    };
    if raw_entries.len() > MAX_ENTRIES {
        return Err(whole(ApiError::TooManyEntries {
            count: raw_entries.len(),
            limit: MAX_ENTRIES,
        }));
    }
    let mut entries = Vec::with_capacity(raw_entries.len());
    let mut full_urls = HashSet::new();
    for (index, raw) in raw_entries.into_iter().enumerate() {
        let Value::Object(mut raw) = raw else {
            return Err(bad(
                index,
                None,
                "Bundle.entry",
                "an entry must be an object",
            ));
        };
        let full_url = raw
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(url) = &full_url {
            if !full_urls.insert(url.clone()) {
                return Err(bad(
                    index,
                    full_url.as_ref(),
                    "Bundle.entry.fullUrl",
                    format!("{url} appears twice in the Bundle"),
                ));
            }
        }
        let request = raw
            .get("request")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let method = match request.get("method").and_then(Value::as_str) {
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("PATCH") => Method::Patch,
            Some("DELETE") => Method::Delete,
            Some("GET" | "HEAD") => Method::Get,
            _ => {
                return Err(bad(
                    index,
                    full_url.as_ref(),
                    "Bundle.entry.request.method",
                    "must be GET, HEAD, POST, PUT, PATCH or DELETE",
                ))
            }
        };
        let url = request.get("url").and_then(Value::as_str).ok_or_else(|| {
            bad(
                index,
                full_url.as_ref(),
                "Bundle.entry.request.url",
                "is required",
            )
        })?;
        let target = parse_url(url, base)
            .map_err(|m| bad(index, full_url.as_ref(), "Bundle.entry.request.url", m))?;
        let resource = match raw.remove("resource") {
            Some(Value::Object(resource)) => Some(resource),
            Some(_) => {
                return Err(bad(
                    index,
                    full_url.as_ref(),
                    "Bundle.entry.resource",
                    "must be a resource",
                ))
            }
            None => None,
        };
        match (method, &target, &resource) {
            (Method::Post, Target::Type(_), Some(_)) => {}
            (Method::Put, Target::Instance(..) | Target::Conditional(..), Some(_)) => {}
            (Method::Patch, Target::Instance(..) | Target::Conditional(..), Some(_)) => {}
            (Method::Delete, Target::Instance(..) | Target::Conditional(..), _) => {}
            (Method::Get, _, _) => {}
            _ => {
                return Err(bad(index, full_url.as_ref(), "Bundle.entry.request", format!("{method:?} {url} is not a valid entry (POST takes a type, PUT/PATCH/DELETE an id or a condition; POST, PUT and PATCH need a resource)")))
            }
        }
        if let (Some(resource), Method::Post | Method::Put) = (&resource, method) {
            let found = resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if found != target.resource_type().as_str() {
                return Err(bad(
                    index,
                    full_url.as_ref(),
                    "Bundle.entry.resource.resourceType",
                    format!(
                        "is {found} but the request is for {}",
                        target.resource_type()
                    ),
                ));
            }
            if let (Target::Instance(_, id), Method::Put) = (&target, method) {
                if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                    return Err(bad(
                        index,
                        full_url.as_ref(),
                        "Bundle.entry.resource.id",
                        format!("must be {id}, as in the request url"),
                    ));
                }
            }
        }
        let if_match = match request.get("ifMatch").and_then(Value::as_str) {
            Some(tag) => Some(VersionId::parse_etag(tag).ok_or_else(|| {
                bad(
                    index,
                    full_url.as_ref(),
                    "Bundle.entry.request.ifMatch",
                    "must be an entity tag such as W/\"3\"",
                )
            })?),
            None => None,
        };
        entries.push(Entry {
            index,
            full_url,
            method,
            target,
            resource,
            if_none_exist: request
                .get("ifNoneExist")
                .and_then(Value::as_str)
                .map(|c| c.trim_start_matches('?').to_owned()),
            if_match,
            if_none_match: request
                .get("ifNoneMatch")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok((kind, entries))
}

/// `Patient`, `Patient/1`, `Patient/1/_history/2`, `Patient?identifier=...` (or an absolute URL on
/// this base).
pub fn parse_url(url: &str, base: &str) -> Result<Target, String> {
    let relative = url
        .strip_prefix(base)
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(url);
    let (path, query) = match relative.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (relative, None),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let rtype = |name: &str| {
        ResourceType::parse(name).ok_or_else(|| {
            format!(
                "{name} is not a resource type this server stores ({})",
                ResourceType::supported_list()
            )
        })
    };
    let id = |value: &str| {
        ResourceId::parse(value).ok_or_else(|| format!("'{value}' is not a valid id"))
    };
    match (parts.as_slice(), query) {
        ([t], None) => Ok(Target::Type(rtype(t)?)),
        ([t], Some(q)) => Ok(Target::Conditional(rtype(t)?, q.to_owned())),
        ([t, i], None) => Ok(Target::Instance(rtype(t)?, id(i)?)),
        ([t, i, "_history", v], None) => Ok(Target::Version(
            rtype(t)?,
            id(i)?,
            VersionId::parse(v).ok_or_else(|| format!("'{v}' is not a version"))?,
        )),
        _ => Err(format!(
            "'{url}' is not a resource URL this server understands"
        )),
    }
}

/// Runs a transaction: all or nothing, in one database transaction (retried when a concurrent
/// writer wins a race). Resources are validated and indexed before the transaction begins, so
/// the write lock is held only for the database work.
pub fn transaction(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    entries: &[Entry],
) -> Result<Vec<EntryResult>, EntryError> {
    authorize_entries(engine, entries)?;
    let provisional = Provisional::new(entries);
    let prepared = prepare_ahead(engine, entries, &provisional)?;
    let mut attempt = 0;
    loop {
        let result = write_transaction(conn, |conn| {
            run_transaction(engine, conn, entries, &provisional, &prepared)
        });
        match result {
            Err(TxError::Contended) if attempt < RETRIES => attempt += 1,
            Err(TxError::Contended) => {
                return Err(EntryError {
                    index: 0,
                    full_url: None,
                    error: ApiError::Conflict(
                        "the transaction kept colliding with concurrent writers; retry it".into(),
                    ),
                })
            }
            Err(TxError::Entry(e)) => return Err(e),
            Ok(results) => return Ok(results),
        }
    }
}

/// Ids chosen before the transaction: a fresh id for every POST (kept unless a conditional
/// create finds its resource), the URL's id for every PUT; and what fullUrls map to then.
struct Provisional {
    ids: HashMap<usize, ResourceId>,
    mapping: HashMap<String, String>,
}

impl Provisional {
    fn new(entries: &[Entry]) -> Self {
        let mut ids = HashMap::new();
        let mut mapping = HashMap::new();
        for entry in entries {
            let id = match (entry.method, &entry.target) {
                (Method::Post, _) => Some(ResourceId::generate()),
                (Method::Put, Target::Instance(_, id)) => Some(id.clone()),
                _ => None,
            };
            if let Some(id) = id {
                if let Some(url) = &entry.full_url {
                    mapping.insert(
                        url.clone(),
                        format!("{}/{id}", entry.target.resource_type()),
                    );
                }
                ids.insert(entry.index, id);
            }
        }
        Self { ids, mapping }
    }
}

/// A resource validated and indexed ahead of the transaction, with the mapping keys its
/// rewriting used (it is prepared again if any of them resolves differently).
struct Prepared {
    content: Map<String, Value>,
    derived: crate::store::resources::Derived,
    used: Vec<String>,
}

/// Validates and indexes every POST and PUT whose references do not wait on the database.
fn prepare_ahead(
    engine: &Engine<'_>,
    entries: &[Entry],
    provisional: &Provisional,
) -> Result<HashMap<usize, Prepared>, EntryError> {
    let mut prepared = HashMap::new();
    for entry in entries {
        let (Method::Post | Method::Put, Some(resource), Some(id)) = (
            entry.method,
            &entry.resource,
            provisional.ids.get(&entry.index),
        ) else {
            continue;
        };
        let mut conditional = Vec::new();
        collect_conditional_references(&Value::Object(resource.clone()), &mut conditional);
        if !conditional.is_empty() {
            continue;
        }
        let mut content = resource.clone();
        let used = rewrite(&mut content, &provisional.mapping);
        if entry.method == Method::Post {
            content.shift_remove("id");
        } else {
            content.insert("id".into(), Value::String(id.to_string()));
        }
        let how = Prepare {
            lenient: engine.lenient,
            defer_references: true,
            always_unprocessable: false,
        };
        let (content, derived) = prepare(
            engine.validator,
            engine.search,
            entry.target.resource_type(),
            content,
            how,
        )
        .map_err(|e| entry_error(entry, e))?;
        prepared.insert(
            entry.index,
            Prepared {
                content,
                derived,
                used,
            },
        );
    }
    Ok(prepared)
}
/// Runs a batch: every entry on its own; one failing does not affect the others.
pub fn batch(engine: &Engine<'_>, conn: &mut DbConnection, entries: &[Entry]) -> Vec<EntryResult> {
    let mut results = vec![EntryResult::default(); entries.len()];
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by_key(|e| (e.method.rank(), e.index));
    for entry in order {
        let one = std::slice::from_ref(entry);
        let result = transaction(engine, conn, one).map(|mut r| r.remove(0));
        let slot = entries
            .iter()
            .position(|e| e.index == entry.index)
            .unwrap_or(0);
        results[slot] = match result {
            Ok(result) => result,
            Err(error) => EntryResult {
                status: error.status().as_u16(),
                outcome: Some(error.error.issues()),
                ..EntryResult::default()
            },
        };
    }
    results
}

enum TxError {
    Contended,
    Entry(EntryError),
}

impl From<diesel::result::Error> for TxError {
    fn from(err: diesel::result::Error) -> Self {
        if crate::store::is_unique_violation(&err) {
            Self::Contended
        } else {
            Self::Entry(EntryError {
                index: 0,
                full_url: None,
                error: ApiError::from(err),
            })
        }
    }
}

fn write_failure(entry: &Entry, err: WriteError, id: Option<&ResourceId>) -> TxError {
    match err {
        WriteError::Contended => TxError::Contended,
        other => TxError::Entry(entry_error(
            entry,
            ApiError::from_write(other, entry.target.resource_type(), id),
        )),
    }
}

/// What resolution decided for a write entry.
#[derive(Debug, Clone)]
enum Plan {
    /// Write this id (create, update, patch, or delete).
    Write(ResourceId),
    /// Delete each of these (a conditional delete).
    DeleteAll(Vec<ResourceId>),
    /// Nothing to write: a conditional create found the resource (200 with it).
    Existing(ResourceId),
    /// Nothing to write: a conditional delete found nothing (204).
    Nothing,
    /// A read.
    Read,
}

fn run_transaction(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    entries: &[Entry],
    provisional: &Provisional,
    ahead: &HashMap<usize, Prepared>,
) -> Result<Vec<EntryResult>, TxError> {
    let fail = |entry: &Entry, error: ApiError| TxError::Entry(entry_error(entry, error));
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by_key(|e| (e.method.rank(), e.index));

    // 1. Resolve every target, in processing order, and map fullUrls to what they became. Every
    //    condition the transaction tests is locked first, all in one order; the conditional
    //    creates, updates, patches and references of the common form are then looked up
    //    together, a type at a time.
    let references: HashMap<usize, Vec<String>> = entries
        .iter()
        .filter_map(|e| {
            let found = conditional_references(e.resource.as_ref()?);
            (!found.is_empty()).then_some((e.index, found))
        })
        .collect();
    // Every condition tested, and whether it is looked up ahead (a conditional delete finds its
    // matches itself: it may take many).
    let mut tested: Vec<(ResourceType, String, bool)> = Vec::new();
    for entry in &order {
        let rtype = entry.target.resource_type();
        match (entry.method, &entry.target, &entry.if_none_exist) {
            (Method::Post, _, Some(condition))
            | (Method::Put | Method::Patch, Target::Conditional(_, condition), _) => {
                tested.push((rtype, condition.clone(), true));
            }
            (Method::Delete, Target::Conditional(_, condition), _) => {
                tested.push((rtype, condition.clone(), false));
            }
            _ => {}
        }
    }
    tested.extend(references.values().flatten().filter_map(|reference| {
        match parse_url(reference, engine.base) {
            Ok(Target::Conditional(rtype, condition)) => Some((rtype, condition, true)),
            _ => None,
        }
    }));
    let whole = |error: ApiError| {
        TxError::Entry(EntryError {
            index: 0,
            full_url: None,
            error,
        })
    };
    let locks: Vec<(ResourceType, String)> =
        tested.iter().map(|(t, c, _)| (*t, c.clone())).collect();
    conditional::lock_all(conn, engine.system_id, &locks).map_err(whole)?;
    let mut looked_up: HashMap<(ResourceType, String), Vec<conditional::Match>> = HashMap::new();
    for rtype in ResourceType::ALL {
        let conditions: Vec<&str> = tested
            .iter()
            .filter(|(t, _, ahead)| *t == rtype && *ahead)
            .map(|(_, c, _)| c.as_str())
            .collect();
        if conditions.is_empty() {
            continue;
        }
        let found =
            conditional::find_many(conn, engine.search, engine.system_id, rtype, &conditions)
                .map_err(whole)?;
        looked_up.extend(found.into_iter().map(|(c, m)| ((rtype, c), m)));
    }
    let mut plans: HashMap<usize, Plan> = HashMap::new();
    let mut mapping: HashMap<String, String> = HashMap::new();
    let mut written: HashSet<(ResourceType, String)> = HashSet::new();
    for entry in &order {
        let rtype = entry.target.resource_type();
        let find = |conn: &mut DbConnection, condition: &str, limit: usize| {
            conditional::find(
                conn,
                engine.search,
                engine.system_id,
                engine.base,
                rtype,
                condition,
                limit,
            )
        };
        let fresh = || {
            provisional
                .ids
                .get(&entry.index)
                .cloned()
                .unwrap_or_else(ResourceId::generate)
        };
        let plan = match (entry.method, &entry.target) {
            (Method::Get, _) => Plan::Read,
            (Method::Post, _) => match &entry.if_none_exist {
                None => Plan::Write(fresh()),
                Some(condition) => {
                    let found = match looked_up.get(&(rtype, condition.clone())) {
                        Some(found) => found.clone(),
                        None => find(conn, condition, 2).map_err(|e| fail(entry, e))?,
                    };
                    match found.as_slice() {
                        [] => Plan::Write(fresh()),
                        [one] => Plan::Existing(one.id.clone()),
                        _ => {
                            return Err(fail(
                                entry,
                                ApiError::PreconditionFailed(format!(
                                    "ifNoneExist {condition} matches more than one {rtype}"
                                )),
                            ))
                        }
                    }
                }
            },
            (_, Target::Instance(_, id)) => Plan::Write(id.clone()),
            (Method::Delete, Target::Conditional(_, condition)) => {
                let found = find(conn, condition, MAX_CONDITIONAL_DELETES + 1)
                    .map_err(|e| fail(entry, e))?;
                if found.len() > MAX_CONDITIONAL_DELETES {
                    return Err(fail(entry, ApiError::PreconditionFailed(format!("{condition} matches more than {MAX_CONDITIONAL_DELETES} resources; a conditional delete removes at most that many"))));
                }
                if found.is_empty() {
                    Plan::Nothing
                } else {
                    Plan::DeleteAll(found.into_iter().map(|m| m.id).collect())
                }
            }
            (Method::Put, Target::Conditional(_, condition)) => {
                let found = match looked_up.get(&(rtype, condition.clone())) {
                    Some(found) => found.clone(),
                    None => find(conn, condition, 2).map_err(|e| fail(entry, e))?,
                };
                let body_id = entry
                    .resource
                    .as_ref()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match found.as_slice() {
                    [] => match body_id {
                        Some(id) => Plan::Write(ResourceId::parse(&id).ok_or_else(|| {
                            fail(
                                entry,
                                ApiError::InvalidId {
                                    value: id.clone(),
                                    expression: format!("{rtype}.id"),
                                },
                            )
                        })?),
                        None => Plan::Write(ResourceId::generate()),
                    },
                    [one] => {
                        if body_id.as_deref().is_some_and(|b| b != one.id.as_str()) {
                            return Err(fail(entry, ApiError::IdMismatch(format!("the resource's id differs from the {rtype}/{} that {condition} matches", one.id))));
                        }
                        Plan::Write(one.id.clone())
                    }
                    _ => {
                        return Err(fail(
                            entry,
                            ApiError::PreconditionFailed(format!(
                                "{condition} matches more than one {rtype}"
                            )),
                        ))
                    }
                }
            }
            (Method::Patch, Target::Conditional(_, condition)) => {
                let found = match looked_up.get(&(rtype, condition.clone())) {
                    Some(found) => found.clone(),
                    None => find(conn, condition, 2).map_err(|e| fail(entry, e))?,
                };
                match found.as_slice() {
                    [] => {
                        return Err(fail(
                            entry,
                            ApiError::NotFound(format!("{rtype}?{condition}")),
                        ))
                    }
                    [one] => Plan::Write(one.id.clone()),
                    _ => {
                        return Err(fail(
                            entry,
                            ApiError::PreconditionFailed(format!(
                                "{condition} matches more than one {rtype}"
                            )),
                        ))
                    }
                }
            }
            (_, target) => {
                return Err(fail(
                    entry,
                    ApiError::invalid_parameter(
                        "Bundle.entry.request.url",
                        format!("{target:?} cannot be used with {:?}", entry.method),
                    ),
                ))
            }
        };
        if let Plan::Write(id) | Plan::Existing(id) = &plan {
            if entry.method != Method::Get && !written.insert((rtype, id.to_string())) {
                return Err(fail(
                    entry,
                    ApiError::invalid_parameter(
                        "Bundle.entry",
                        format!("two entries write {rtype}/{id}"),
                    ),
                ));
            }
            if let Some(url) = &entry.full_url {
                mapping.insert(url.clone(), format!("{rtype}/{id}"));
            }
        }
        plans.insert(entry.index, plan);
    }

    // 2. Conditional references (`Patient?identifier=...`) resolve to exactly one resource.
    for entry in entries {
        for reference in references.get(&entry.index).into_iter().flatten() {
            if mapping.contains_key(reference) {
                continue;
            }
            let Ok(Target::Conditional(rtype, condition)) = parse_url(reference, engine.base)
            else {
                continue;
            };
            let found = match looked_up.get(&(rtype, condition.clone())) {
                Some(found) => found.clone(),
                None => conditional::find(
                    conn,
                    engine.search,
                    engine.system_id,
                    engine.base,
                    rtype,
                    &condition,
                    2,
                )
                .map_err(|e| fail(entry, e))?,
            };
            match found.as_slice() {
                [one] => {
                    mapping.insert(reference.clone(), format!("{rtype}/{}", one.id));
                }
                [] => {
                    return Err(fail(
                        entry,
                        ApiError::ReferenceNotFound {
                            reference: reference.clone(),
                            expression: format!("{rtype}"),
                        },
                    ))
                }
                _ => {
                    return Err(fail(
                        entry,
                        ApiError::PreconditionFailed(format!(
                            "the conditional reference {reference} matches more than one {rtype}"
                        )),
                    ))
                }
            }
        }
    }

    // 3. Each POST and PUT resource, final: prepared ahead when its references resolved as
    //    expected, prepared now otherwise.
    let mut ready: HashMap<usize, (Map<String, Value>, crate::store::resources::Derived)> =
        HashMap::new();
    for entry in &order {
        let (Method::Post | Method::Put, Some(Plan::Write(id))) =
            (entry.method, plans.get(&entry.index))
        else {
            continue;
        };
        let rtype = entry.target.resource_type();
        // Patient comments belong to the server: a create may not carry them, and an update keeps
        // the stored ones whatever its payload says (see `comments`).
        let incoming_comments = entry.resource.as_ref().is_some_and(comments::has_comments);
        if entry.method == Method::Post && incoming_comments {
            return Err(fail(
                entry,
                ApiError::Invalid {
                    status: actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                    issues: vec![crate::fhir::outcome::Issue::error(
                        crate::fhir::outcome::IssueType::BusinessRule,
                        "patient comments are added with $add-comment, not written by feeders",
                    )
                    .at(format!("{rtype}.extension"))],
                },
            ));
        }
        let stored_comments = if entry.method == Method::Put {
            match resources::read_current(conn, engine.system_id, rtype, id)
                .map_err(|e| fail(entry, e.into()))?
            {
                ReadResult::Found(stored) => {
                    serde_json::from_str::<Map<String, Value>>(&stored.content)
                        .ok()
                        .filter(comments::has_comments)
                }
                _ => None,
            }
        } else {
            None
        };
        let merge = stored_comments.is_some() || incoming_comments;
        let still_valid = ahead.get(&entry.index).filter(|p| {
            !merge
                && provisional.ids.get(&entry.index) == Some(id)
                && p.used
                    .iter()
                    .all(|key| mapping.get(key) == provisional.mapping.get(key))
        });
        let (content, derived) = match still_valid {
            Some(p) => (p.content.clone(), p.derived.clone()),
            None => {
                let mut content = entry.resource.clone().unwrap_or_default();
                if merge {
                    comments::keep_stored_comments(
                        &mut content,
                        &stored_comments.clone().unwrap_or_default(),
                    );
                }
                rewrite(&mut content, &mapping);
                if entry.method == Method::Post {
                    content.shift_remove("id");
                } else {
                    content.insert("id".into(), Value::String(id.to_string()));
                }
                let how = Prepare {
                    lenient: engine.lenient,
                    defer_references: true,
                    always_unprocessable: false,
                };
                prepare(
                    engine.validator,
                    engine.search,
                    entry.target.resource_type(),
                    content,
                    how,
                )
                .map_err(|e| fail(entry, e))?
            }
        };
        ready.insert(entry.index, (content, derived));
    }

    // 4. Execute, in processing order: deletes, then every create in one batch, then updates and
    //    patches, then reads. References are checked once everything is written.
    let mut results: HashMap<usize, EntryResult> = HashMap::new();
    let mut deferred: Vec<(&Entry, resources::ReferenceCheck)> = Vec::new();
    let mut creates: Vec<(&Entry, crate::store::bulk::NewResource)> = Vec::new();
    let mut creates_done = false;
    for entry in &order {
        let rtype = entry.target.resource_type();
        let plan = plans.get(&entry.index).cloned().unwrap_or(Plan::Nothing);
        if entry.method.rank() > Method::Post.rank() && !creates_done {
            flush_creates(engine, conn, &mut creates, &mut results)?;
            creates_done = true;
        }
        let result = match (entry.method, plan) {
            // A read that finds nothing is that entry's answer, not the transaction's failure.
            (Method::Get, _) => match read(engine, conn, entry) {
                Ok(result) => result,
                Err(e @ (ApiError::NotFound(_) | ApiError::Gone(_))) => {
                    use actix_web::ResponseError;
                    EntryResult {
                        status: e.status_code().as_u16(),
                        outcome: Some(e.issues()),
                        ..EntryResult::default()
                    }
                }
                Err(e) => return Err(fail(entry, e)),
            },
            (_, Plan::Existing(id)) => {
                match resources::read_current(conn, engine.system_id, rtype, &id)
                    .map_err(|e| fail(entry, e.into()))?
                {
                    ReadResult::Found(stored) => EntryResult {
                        status: 200,
                        location: Some(format!("{rtype}/{id}/_history/{}", stored.version)),
                        version: Some(stored.version),
                        last_modified: Some(stored.last_updated),
                        resource: Some(stored.content),
                        outcome: None,
                        kind: Some(WriteKind::Unchanged),
                    },
                    _ => return Err(fail(entry, ApiError::not_found(rtype, id.as_str()))),
                }
            }
            (Method::Delete, Plan::Nothing) => EntryResult {
                status: 204,
                ..EntryResult::default()
            },
            (Method::Delete, Plan::DeleteAll(ids)) => {
                for id in &ids {
                    resources::delete_in(conn, engine.system_id, rtype, id, None)
                        .map_err(|e| write_failure(entry, e, Some(id)))?;
                }
                EntryResult {
                    status: 204,
                    ..EntryResult::default()
                }
            }
            (Method::Delete, Plan::Write(id)) => {
                match resources::delete_in(conn, engine.system_id, rtype, &id, entry.if_match)
                    .map_err(|e| write_failure(entry, e, Some(&id)))?
                {
                    Deleted::NotFound => {
                        return Err(fail(entry, ApiError::not_found(rtype, id.as_str())))
                    }
                    Deleted::Deleted { version, .. } | Deleted::AlreadyDeleted { version } => {
                        EntryResult {
                            status: 204,
                            version: Some(version),
                            ..EntryResult::default()
                        }
                    }
                }
            }
            (Method::Post, Plan::Write(id)) => {
                let (content, mut derived) = ready
                    .remove(&entry.index)
                    .ok_or_else(|| fail(entry, ApiError::Internal("unprepared create".into())))?;
                deferred.extend(
                    std::mem::take(&mut derived.references)
                        .into_iter()
                        .map(|r| (*entry, r)),
                );
                creates.push((
                    *entry,
                    crate::store::bulk::NewResource {
                        rtype,
                        id,
                        content,
                        derived,
                    },
                ));
                continue;
            }
            (Method::Put, Plan::Write(id)) => {
                let (content, mut derived) = ready
                    .remove(&entry.index)
                    .ok_or_else(|| fail(entry, ApiError::Internal("unprepared update".into())))?;
                deferred.extend(
                    std::mem::take(&mut derived.references)
                        .into_iter()
                        .map(|r| (*entry, r)),
                );
                let written = resources::update_in(
                    conn,
                    engine.system_id,
                    rtype,
                    &id,
                    content,
                    entry.if_match,
                    &derived,
                    "PUT",
                )
                .map_err(|e| write_failure(entry, e, Some(&id)))?;
                written_result(rtype, &written)
            }
            (Method::Patch, Plan::Write(id)) => {
                let binary = entry.resource.clone().unwrap_or_default();
                let patch = patch::from_binary(&binary).map_err(|e| fail(entry, e))?;
                let written = patch_in(engine, conn, rtype, &id, &patch, entry.if_match, true)
                    .map_err(|e| match e {
                        PatchFailure::Write(w) => write_failure(entry, w, Some(&id)),
                        PatchFailure::Api(a) => fail(entry, a),
                    })?;
                written_result(rtype, &written)
            }
            (method, plan) => {
                return Err(fail(
                    entry,
                    ApiError::Internal(format!("no plan for {method:?} with {plan:?}")),
                ))
            }
        };
        results.insert(entry.index, result);
    }
    if !creates_done {
        flush_creates(engine, conn, &mut creates, &mut results)?;
    }
    check_deferred(engine, conn, &deferred)?;
    let results: Vec<EntryResult> = entries
        .iter()
        .map(|e| results.remove(&e.index).unwrap_or_default())
        .collect();
    audit_entries(engine, conn, entries, &results)?;
    Ok(results)
}

/// Writes the transaction's creates in one batch.
fn flush_creates(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    creates: &mut Vec<(&Entry, crate::store::bulk::NewResource)>,
    results: &mut HashMap<usize, EntryResult>,
) -> Result<(), TxError> {
    if creates.is_empty() {
        return Ok(());
    }
    let (entries, items): (Vec<&Entry>, Vec<crate::store::bulk::NewResource>) =
        std::mem::take(creates).into_iter().unzip();
    match crate::store::bulk::create_many_in(conn, engine.system_id, items) {
        Ok(written) => {
            for (entry, written) in entries.iter().zip(written) {
                results.insert(
                    entry.index,
                    written_result(entry.target.resource_type(), &written),
                );
            }
            Ok(())
        }
        Err(WriteError::Contended) => Err(TxError::Contended),
        Err(WriteError::DuplicateNhsNumber {
            nhs_number,
            existing,
        }) => {
            let entry = entries
                .iter()
                .find(|e| {
                    e.resource.as_ref().is_some_and(|r| {
                        r.get("identifier")
                            .is_some_and(|i| i.to_string().contains(&nhs_number))
                    })
                })
                .or(entries.first())
                .copied();
            let error = WriteError::DuplicateNhsNumber {
                nhs_number,
                existing,
            };
            match entry {
                Some(entry) => Err(write_failure(entry, error, None)),
                None => Err(TxError::Contended),
            }
        }
        Err(other) => match entries.first() {
            Some(entry) => Err(write_failure(entry, other, None)),
            None => Err(TxError::Contended),
        },
    }
}

/// Every reference of every written resource must resolve in the local system, now that the
/// whole transaction is written: one query per referenced type.
fn check_deferred(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    deferred: &[(&Entry, resources::ReferenceCheck)],
) -> Result<(), TxError> {
    if deferred.is_empty() {
        return Ok(());
    }
    let all: Vec<resources::ReferenceCheck> = deferred.iter().map(|(_, r)| r.clone()).collect();
    // No resource of this kind exists, so no reference is excused as a self-reference.
    let nobody = ResourceId::generate();
    match resources::check_references(conn, engine.system_id, ResourceType::Patient, &nobody, &all)
    {
        Ok(()) => Ok(()),
        Err(WriteError::ReferenceNotFound {
            reference,
            expression,
        }) => {
            let entry = deferred
                .iter()
                .find(|(_, r)| {
                    format!("{}/{}", r.resource_type, r.id) == reference
                        && r.expression == expression
                })
                .map(|(e, _)| *e);
            let error = ApiError::ReferenceNotFound {
                reference,
                expression,
            };
            Err(match entry {
                Some(entry) => TxError::Entry(entry_error(entry, error)),
                None => TxError::Entry(EntryError {
                    index: 0,
                    full_url: None,
                    error,
                }),
            })
        }
        Err(WriteError::Contended) => Err(TxError::Contended),
        Err(other) => Err(TxError::Entry(EntryError {
            index: 0,
            full_url: None,
            error: ApiError::from_write(other, ResourceType::Patient, None),
        })),
    }
}

fn written_result(rtype: ResourceType, written: &Written) -> EntryResult {
    EntryResult {
        status: if written.kind == WriteKind::Created {
            201
        } else {
            200
        },
        location: Some(format!(
            "{rtype}/{}/_history/{}",
            written.id, written.stored.version
        )),
        version: Some(written.stored.version),
        last_modified: Some(written.stored.last_updated),
        resource: Some(written.stored.content.clone()),
        outcome: None,
        kind: Some(written.kind),
    }
}

/// Why a PATCH failed.
pub enum PatchFailure {
    Write(WriteError),
    Api(ApiError),
}

/// Applies a JSON Patch to the current version and writes the result (validated like any write;
/// an invalid result is 422), inside the caller's transaction.
pub fn patch_in(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    rtype: ResourceType,
    id: &ResourceId,
    patch_document: &json_patch::Patch,
    if_match: Option<VersionId>,
    defer_references: bool,
) -> Result<Written, PatchFailure> {
    let current = resources::read_current(conn, engine.system_id, rtype, id)
        .map_err(|e| PatchFailure::Api(e.into()))?;
    let stored = match current {
        ReadResult::Found(stored) => stored,
        ReadResult::Deleted { .. } => {
            return Err(PatchFailure::Api(ApiError::Gone(format!("{rtype}/{id}"))))
        }
        ReadResult::NotFound => {
            return Err(PatchFailure::Api(ApiError::not_found(rtype, id.as_str())))
        }
    };
    if let Some(expected) = if_match {
        if expected != stored.version {
            return Err(PatchFailure::Write(WriteError::VersionMismatch {
                current: Some(stored.version),
            }));
        }
    }
    let resource: Map<String, Value> = serde_json::from_str(&stored.content)
        .map_err(|e| PatchFailure::Api(ApiError::Internal(format!("stored JSON: {e}"))))?;
    let mut patched = patch::apply(&resource, patch_document).map_err(PatchFailure::Api)?;
    comments::keep_stored_comments(&mut patched, &resource);
    let how = Prepare {
        lenient: engine.lenient,
        defer_references,
        always_unprocessable: true,
    };
    let (content, mut derived) =
        prepare(engine.validator, engine.search, rtype, patched, how).map_err(PatchFailure::Api)?;
    if defer_references {
        let references = std::mem::take(&mut derived.references);
        resources::check_references(conn, engine.system_id, rtype, id, &references)
            .map_err(PatchFailure::Write)?;
    }
    resources::update_in(
        conn,
        engine.system_id,
        rtype,
        id,
        content,
        if_match,
        &derived,
        "PATCH",
    )
    .map_err(PatchFailure::Write)
}

/// A GET entry: read, vread, or a search (its first page, matches only).
fn read(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    entry: &Entry,
) -> Result<EntryResult, ApiError> {
    let (rtype, id, version) = match &entry.target {
        Target::Instance(t, id) => (*t, id.clone(), None),
        Target::Version(t, id, v) => (*t, id.clone(), Some(*v)),
        Target::Conditional(t, condition) => return search_entry(engine, conn, *t, condition),
        Target::Type(t) => return search_entry(engine, conn, *t, ""),
    };
    let found = match version {
        None => resources::read_current(conn, engine.system_id, rtype, &id)?,
        Some(v) => resources::read_version(conn, engine.system_id, rtype, &id, v)?,
    };
    match found {
        ReadResult::Found(stored) => {
            let unchanged = entry.if_none_match.as_deref().is_some_and(|tags| {
                tags.split(',')
                    .any(|t| t.trim() == "*" || VersionId::parse_etag(t) == Some(stored.version))
            });
            Ok(EntryResult {
                status: if unchanged { 304 } else { 200 },
                location: None,
                version: Some(stored.version),
                last_modified: Some(stored.last_updated),
                resource: (!unchanged).then_some(stored.content),
                outcome: None,
                kind: None,
            })
        }
        ReadResult::Deleted { .. } => Err(ApiError::Gone(format!("{rtype}/{id}"))),
        ReadResult::NotFound => Err(ApiError::not_found(rtype, id.as_str())),
    }
}

fn search_entry(
    engine: &Engine<'_>,
    conn: &mut DbConnection,
    rtype: ResourceType,
    condition: &str,
) -> Result<EntryResult, ApiError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(condition)
        .map_err(|e| ApiError::invalid_parameter("url", e.to_string()))?;
    let request =
        crate::search::query::parse(&engine.search.registry, &[rtype], &params, engine.lenient)
            .map_err(|e| ApiError::invalid_parameter(&e.param, e.message))?;
    let page = crate::search::sql::Page {
        from: None,
        backwards: false,
        limit: request.count,
    };
    let hits = crate::store::search::hits(
        conn,
        &crate::search::sql::select(engine.system_id, &request, engine.base, &page),
    )?;
    let mut bundle = crate::fhir::bundle::SearchsetBuilder::default();
    bundle.link("self", format!("{}/{rtype}?{condition}", engine.base));
    for hit in hits {
        if let Some(content) = hit.content {
            bundle
                .entry(
                    Some(format!("{}/{}/{}", engine.base, hit.resource_type, hit.id)),
                    content,
                    crate::fhir::bundle::SearchMode::Match,
                )
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        }
    }
    Ok(EntryResult {
        status: 200,
        resource: Some(
            bundle
                .to_json()
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        ),
        ..EntryResult::default()
    })
}

/// Every conditional reference in a resource, once each.
fn conditional_references(resource: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(Value::String(reference)) = resource.get("reference") {
        if reference.contains('?') && !reference.starts_with("http") {
            found.push(reference.clone());
        }
    }
    resource
        .values()
        .for_each(|v| collect_conditional_references(v, &mut found));
    found
}

/// Every string in the resource that is a conditional reference (`Type?query` in a `reference`).
fn collect_conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("reference") {
                if reference.contains('?')
                    && !reference.starts_with("http")
                    && !out.contains(reference)
                {
                    out.push(reference.clone());
                }
            }
            map.values()
                .for_each(|v| collect_conditional_references(v, out));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| collect_conditional_references(v, out)),
        _ => {}
    }
}

/// Replaces every string that names a resolved entry (a `urn:uuid:` fullUrl, a conditional
/// reference) with the resource's `Type/id` — in references, extensions and contained resources
/// alike. One pass, one hash lookup per string: linear in the bundle's size.
/// Returns the mapping keys it replaced.
fn rewrite(resource: &mut Map<String, Value>, mapping: &HashMap<String, String>) -> Vec<String> {
    fn walk(value: &mut Value, mapping: &HashMap<String, String>, used: &mut Vec<String>) {
        match value {
            Value::String(text) => {
                if let Some(target) = mapping.get(text.as_str()) {
                    used.push(std::mem::replace(text, target.clone()));
                }
            }
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, mapping, used)),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, mapping, used)),
            _ => {}
        }
    }
    let mut used = Vec::new();
    if !mapping.is_empty() {
        resource
            .values_mut()
            .for_each(|v| walk(v, mapping, &mut used));
    }
    used
}

/// The response Bundle (`transaction-response` or `batch-response`).
pub fn response_bundle(
    kind: Kind,
    entries: &[Entry],
    results: &[EntryResult],
    return_resource: bool,
    return_outcome: bool,
) -> Value {
    let response_entries: Vec<Value> = entries
        .iter()
        .zip(results)
        .map(|(entry, result)| {
            let mut response = Map::new();
            response.insert("status".into(), Value::String(status_line(result.status)));
            if let Some(location) = &result.location {
                response.insert("location".into(), Value::String(location.clone()));
            }
            if let Some(version) = result.version {
                response.insert("etag".into(), Value::String(version.etag()));
            }
            if let Some(modified) = result.last_modified {
                response.insert("lastModified".into(), Value::String(modified.to_instant()));
            }
            if let Some(issues) = &result.outcome {
                response.insert("outcome".into(), operation_outcome(issues));
            } else if return_outcome {
                response.insert(
                    "outcome".into(),
                    operation_outcome(&[Issue::information(format!(
                        "{} {}",
                        entry_label(entry),
                        status_line(result.status)
                    ))]),
                );
            }
            let mut out = Map::new();
            if let Some(url) = &entry.full_url {
                out.insert("fullUrl".into(), Value::String(url.clone()));
            }
            let include_resource = return_resource || entry.method == Method::Get;
            if let (true, Some(resource)) = (include_resource, &result.resource) {
                if let Ok(value) = serde_json::from_str::<Value>(resource) {
                    out.insert("resource".into(), value);
                }
            }
            out.insert("response".into(), Value::Object(response));
            Value::Object(out)
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": match kind { Kind::Transaction => "transaction-response", Kind::Batch => "batch-response" },
        "entry": response_entries,
    })
}

fn entry_label(entry: &Entry) -> String {
    format!("entry {}", entry.index)
}

fn status_line(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_owned()
}
