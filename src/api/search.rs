//! # search
//! <https://hl7.org/fhir/R4/search.html>, <https://hl7.org/fhir/R4/http.html#search>
//!
//! - `GET [base]/[type]?params` and `POST [base]/[type]/_search` (form body)
//! - `GET [base]/Patient/[id]/[type]?params`: compartment search
//! - `GET [base]?_type=A,B&params` and `POST [base]/_search` (form body): system search over
//!   common parameters
//!
//! 200 with a `searchset` Bundle: matches (`search.mode` match) and `_include`/`_revinclude`d
//! resources (include); `self`, `first`, `next`, `previous`, `last` links carrying a keyset cursor;
//! `total` when `_total=accurate|estimate`, or when the whole result fits the first page.
//! 400 `INVALID_PARAMETER` naming the parameter for an unknown parameter (a warning in an
//! OperationOutcome entry under `Prefer: handling=lenient`), a bad modifier, prefix or value, or a
//! query too costly to answer (no selective parameter on a large type).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::context::{FhirRequest, Handling};
use super::guard;
use super::response::{fhir, resource_id, resource_type};
use crate::auth::Role;
use crate::error::ApiError;
use crate::fhir::bundle::{SearchMode, SearchsetBuilder};
use crate::fhir::outcome::{operation_outcome, Issue, IssueType, SpineCode};
use crate::fhir::ResourceType;
use crate::search::paging::{self, LAST};
use crate::search::query::{
    self, Clause, Include, Predicate, SearchRequest, StringMode, Summary, TokenMatch, Total,
};
use crate::search::registry::ParamType;
use crate::search::shape;
use crate::search::sql::{self, Page, Position, MAX_SORT_KEYS};
use crate::store::search::{self as store_search, Hit};

/// A search with no selective parameter is refused on a type larger than this.
pub const UNSELECTIVE_LIMIT: i64 = 100_000;
/// At most this many resources are included per page.
pub const MAX_INCLUDED: usize = 1000;
/// `:iterate` follows references at most this many times.
const MAX_ITERATIONS: usize = 4;

pub async fn search_type(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let params = ctx.params.clone();
    run(ctx, vec![rtype], None, params, rtype.as_str().to_owned()).await
}

pub async fn search_type_post(
    ctx: FhirRequest,
    path: web::Path<(String, String)>,
    body: FormBody,
) -> Result<HttpResponse, ApiError> {
    let rtype = resource_type(&path.1)?;
    let mut params = ctx.params.clone();
    params.extend(body.0);
    run(ctx, vec![rtype], None, params, rtype.as_str().to_owned()).await
}

pub async fn search_compartment(
    ctx: FhirRequest,
    path: web::Path<(String, String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, compartment, raw_id, type_name) = path.into_inner();
    if compartment != "Patient" {
        return Err(ApiError::UnknownRoute(format!(
            "{compartment}/{raw_id}/{type_name}"
        )));
    }
    let id = resource_id(&raw_id)?;
    let rtype = resource_type(&type_name)?;
    let params = ctx.state.search.compartment.params(rtype).to_vec();
    let clause = if rtype == ResourceType::Patient {
        Clause::Id(vec![id.to_string()])
    } else if params.is_empty() {
        return Err(ApiError::invalid_parameter(
            "compartment",
            format!("{rtype} is not in the Patient compartment"),
        ));
    } else {
        Clause::InCompartment {
            params,
            patient: id.to_string(),
        }
    };
    let query = ctx.params.clone();
    run(
        ctx,
        vec![rtype],
        Some(clause),
        query,
        format!("Patient/{id}/{rtype}"),
    )
    .await
}

pub async fn search_system(ctx: FhirRequest) -> Result<HttpResponse, ApiError> {
    let params = ctx.params.clone();
    system(ctx, params).await
}

pub async fn search_system_post(
    ctx: FhirRequest,
    body: FormBody,
) -> Result<HttpResponse, ApiError> {
    let mut params = ctx.params.clone();
    params.extend(body.0);
    system(ctx, params).await
}

async fn system(ctx: FhirRequest, query: Vec<(String, String)>) -> Result<HttpResponse, ApiError> {
    let mut types = Vec::new();
    let mut params = Vec::new();
    for (name, value) in query {
        if name == "_type" {
            for t in value.split(',') {
                types.push(resource_type(t.trim()).map_err(|_| {
                    ApiError::invalid_parameter(
                        "_type",
                        format!("{t} is not a resource type this server stores"),
                    )
                })?);
            }
        } else {
            params.push((name, value));
        }
    }
    if types.is_empty() {
        types = ResourceType::ALL.to_vec();
    }
    types.dedup();
    run(ctx, types, None, params, String::new()).await
}

/// A form-encoded body (`POST .../_search`).
pub struct FormBody(pub Vec<(String, String)>);

impl actix_web::FromRequest for FormBody {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let form = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if form == Some(false) {
                return Err(ApiError::UnsupportedMediaType {
                    found: "a body that is not a form".into(),
                    expected: "search parameters as application/x-www-form-urlencoded",
                });
            }
            let bytes = body
                .await
                .map_err(|_| ApiError::PayloadTooLarge { limit: 262_144 })?;
            let params = serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| ApiError::invalid_parameter("body", e.to_string()))?;
            Ok(FormBody(params))
        })
    }
}

/// Whether a clause narrows the search through an index rather than scanning one.
fn selective(clause: &Clause) -> bool {
    match clause {
        Clause::Id(_) | Clause::InCompartment { .. } => true,
        Clause::ExcludeRestricted { .. } => false,
        Clause::LastUpdated(_) => true,
        Clause::Missing { .. } => false,
        Clause::Param { negate, any_of, .. } => {
            !negate
                && any_of.iter().all(|p| {
                    !matches!(
                        p,
                        Predicate::String {
                            mode: StringMode::Contains,
                            ..
                        } | Predicate::Token(TokenMatch::Text(_))
                    )
                })
        }
        Clause::Chain { inner, .. } | Clause::Has { inner, .. } => selective(inner),
    }
}

fn invalid(e: query::ParamError) -> ApiError {
    ApiError::invalid_parameter(&e.param, e.message)
}

async fn run(
    ctx: FhirRequest,
    types: Vec<ResourceType>,
    compartment: Option<Clause>,
    params: Vec<(String, String)>,
    path: String,
) -> Result<HttpResponse, ApiError> {
    let lenient = ctx.prefer.handling == Handling::Lenient;
    let mut request =
        query::parse(&ctx.state.search.registry, &types, &params, lenient).map_err(invalid)?;
    if request.sort.len() > MAX_SORT_KEYS {
        return Err(ApiError::invalid_parameter(
            "_sort",
            format!("at most {MAX_SORT_KEYS} sort keys"),
        ));
    }
    if let Some(clause) = compartment {
        request.clauses.insert(0, clause);
    }
    confine(&ctx, &types, &mut request)?;
    let page_size = request.count;
    let page = match &request.cursor {
        Some(cursor) => paging::decode(cursor, page_size, &request.sort).ok_or_else(|| {
            ApiError::invalid_parameter("_cursor", "is not a cursor this server issued")
        })?,
        None => Page {
            from: None,
            backwards: false,
            limit: page_size + 1,
        },
    };
    let system_id = ctx.system_id;
    let base = ctx.base.clone();
    let registry_types = types.clone();
    let include_params = |include: &Include| -> Vec<String> {
        match &include.param {
            Some(p) => vec![p.clone()],
            None => ctx
                .state
                .search
                .registry
                .params(include.source)
                .filter(|p| p.kind == ParamType::Reference)
                .map(|p| p.code.clone())
                .collect(),
        }
    };
    let includes: Vec<(Include, Vec<String>)> = request
        .includes
        .iter()
        .map(|i| (i.clone(), include_params(i)))
        .collect();
    let revincludes: Vec<(Include, Vec<String>)> = request
        .revincludes
        .iter()
        .map(|i| (i.clone(), include_params(i)))
        .collect();
    let unselective = !request.clauses.iter().any(selective)
        && (!request.clauses.is_empty() || !request.sort.is_empty());
    let query_request = request.clone();
    let query_page = page.clone();
    let statistics_due = ctx.state.db.statistics_due();
    let (hits, total, included) = ctx
        .state
        .db
        .run(move |conn| {
            if let Some(statistics) = &statistics_due {
                statistics.refresh(conn)?;
            }
            if unselective {
                for rtype in &registry_types {
                    let size = store_search::count(conn, &sql::type_size(system_id, *rtype))?;
                    if size > UNSELECTIVE_LIMIT {
                        return Err(ApiError::Invalid {
                            status: StatusCode::BAD_REQUEST,
                            issues: vec![Issue::error(
                                IssueType::TooCostly,
                                format!("this search has no selective parameter and {rtype} holds {size} resources here; add an identifier, reference, date or starts-with parameter"),
                            )
                            .with_details(SpineCode::InvalidParameter)],
                        });
                    }
                }
            }
            let wants_count = matches!(query_request.total, Total::Accurate | Total::Estimate) || query_request.summary == Summary::Count;
            let total = if wants_count {
                Some(store_search::count(conn, &sql::count(system_id, &query_request, &base))?)
            } else {
                None
            };
            if query_request.summary == Summary::Count || page_size == 0 {
                return Ok((Vec::new(), total, Vec::new()));
            }
            let hits = store_search::hits(conn, &sql::select(system_id, &query_request, &base, &query_page))?;
            // One row more than the page was fetched to tell whether another page follows; what
            // it refers to belongs to that page, not this one.
            let on_page = &hits[..hits.len().min(page_size)];
            let included = gather_includes(conn, system_id, on_page, &includes, &revincludes)?;
            Ok::<_, ApiError>((hits, total, included))
        })
        .await?;
    let (hits, included) = drop_hidden(&ctx, hits, included).await?;
    audit_search(&ctx, &types, &params, &hits, &included).await?;
    respond(&ctx, &request, &page, path, hits, total, included)
}

/// Narrows a search to what the caller may see, in the query itself (never by dropping rows
/// after paging): a patient to their compartment; a clinician without break-glass away from
/// restricted records.
fn confine(
    ctx: &FhirRequest,
    types: &[ResourceType],
    request: &mut SearchRequest,
) -> Result<(), ApiError> {
    let Some(caller) = &ctx.caller else {
        return Ok(());
    };
    let compartment = &ctx.state.search.compartment;
    match caller.role() {
        Role::Patient => {
            let own = caller.patient().map(|p| p.to_string()).unwrap_or_default();
            let [rtype] = types else {
                return Err(ApiError::Forbidden(
                    "a patient searches one type of their own record at a time".into(),
                ));
            };
            let clause = match rtype {
                ResourceType::Patient => Clause::Id(vec![own]),
                other if !compartment.params(*other).is_empty() => Clause::InCompartment {
                    params: compartment.params(*other).to_vec(),
                    patient: own,
                },
                other => {
                    return Err(ApiError::Forbidden(format!(
                        "{other} is outside a patient's own record"
                    )))
                }
            };
            request.clauses.insert(0, clause);
        }
        Role::Clinician if caller.break_glass.is_none() => {
            let params: Vec<String> = types
                .iter()
                .flat_map(|t| compartment.params(*t).to_vec())
                .collect();
            request.clauses.push(Clause::ExcludeRestricted { params });
        }
        _ => {}
    }
    Ok(())
}

/// Included resources the caller may not see are left out (matches are already confined).
async fn drop_hidden(
    ctx: &FhirRequest,
    hits: Vec<Hit>,
    included: Vec<Hit>,
) -> Result<(Vec<Hit>, Vec<Hit>), ApiError> {
    let Some(caller) = ctx.caller.clone() else {
        return Ok((hits, included));
    };
    if included.is_empty() || matches!(caller.role(), Role::Feeder | Role::Admin) {
        return Ok((hits, included));
    }
    let owners: Vec<Option<String>> = included
        .iter()
        .map(|h| {
            ResourceType::parse(&h.resource_type)
                .and_then(|t| h.content.as_deref().and_then(|c| guard::owner(t, c)))
        })
        .collect();
    let distinct: Vec<String> = owners
        .iter()
        .flatten()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let system_id = ctx.system_id;
    let patient_role = caller.role() == Role::Patient;
    let hidden = ctx
        .state
        .db
        .run(move |conn| guard::hidden_patients(conn, system_id, Some(&caller), &distinct))
        .await?;
    let kept = included
        .into_iter()
        .zip(owners)
        .filter(|(_, owner)| match owner {
            Some(owner) => !hidden.contains(owner),
            // A patient sees only their own compartment, not the practitioners and places in it.
            None => !patient_role,
        })
        .map(|(h, _)| h)
        .collect();
    Ok((hits, kept))
}

/// One AuditEvent per patient whose data the search returned (one without a patient when none).
async fn audit_search(
    ctx: &FhirRequest,
    types: &[ResourceType],
    params: &[(String, String)],
    hits: &[Hit],
    included: &[Hit],
) -> Result<(), ApiError> {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    let entity = format!("{}?{query}", names.join(","));
    let patients: std::collections::BTreeSet<String> = hits
        .iter()
        .chain(included)
        .filter_map(|h| {
            ResourceType::parse(&h.resource_type)
                .and_then(|t| h.content.as_deref().and_then(|c| guard::owner(t, c)))
        })
        .collect();
    let access = |patient: Option<String>| crate::audit::Access {
        action: "E",
        interaction: "search-type".into(),
        outcome: "0",
        outcome_description: None,
        entity: Some(entity.clone()),
        patient,
    };
    let accesses: Vec<crate::audit::Access> = if patients.is_empty() {
        vec![access(None)]
    } else {
        patients.into_iter().map(|p| access(Some(p))).collect()
    };
    guard::audit_reads(ctx, accesses).await
}

/// `_include` and `_revinclude` (with `:iterate`) for a page of matches, bounded.
fn gather_includes(
    conn: &mut crate::store::DbConnection,
    system_id: i64,
    page: &[Hit],
    includes: &[(Include, Vec<String>)],
    revincludes: &[(Include, Vec<String>)],
) -> Result<Vec<Hit>, ApiError> {
    let mut seen: std::collections::HashSet<i64> = page.iter().map(|h| h.pk).collect();
    let mut included: Vec<Hit> = Vec::new();
    let mut frontier: Vec<Hit> = page.to_vec();
    for round in 0..=MAX_ITERATIONS {
        let mut found = Vec::new();
        for (include, params) in includes {
            if round > 0 && !include.iterate {
                continue;
            }
            let sources: Vec<i64> = frontier
                .iter()
                .filter(|h| h.resource_type == include.source.as_str())
                .map(|h| h.pk)
                .collect();
            if sources.is_empty() || params.is_empty() {
                continue;
            }
            found.extend(store_search::hits(
                conn,
                &sql::include(system_id, &sources, params, include.target),
            )?);
        }
        for (include, params) in revincludes {
            if round > 0 && !include.iterate {
                continue;
            }
            let targets: Vec<(String, String)> = frontier
                .iter()
                .map(|h| (h.resource_type.clone(), h.id.clone()))
                .collect();
            if targets.is_empty() || params.is_empty() {
                continue;
            }
            found.extend(store_search::hits(
                conn,
                &sql::revinclude(system_id, include.source, params, &targets),
            )?);
        }
        frontier = found.into_iter().filter(|h| seen.insert(h.pk)).collect();
        included.extend(frontier.iter().cloned());
        if frontier.is_empty() || included.len() >= MAX_INCLUDED {
            break;
        }
    }
    included.truncate(MAX_INCLUDED);
    Ok(included)
}

fn respond(
    ctx: &FhirRequest,
    request: &SearchRequest,
    page: &Page,
    path: String,
    mut hits: Vec<Hit>,
    total: Option<i64>,
    included: Vec<Hit>,
) -> Result<HttpResponse, ApiError> {
    let size = request.count;
    let fetched_more = hits.len() > size;
    hits.truncate(size);
    if page.backwards {
        hits.reverse();
    }
    let (has_next, has_previous) = if page.backwards {
        (page.from.is_some(), fetched_more)
    } else {
        (fetched_more, page.from.is_some())
    };
    let total = match (total, request.total) {
        (Some(n), _) => Some(u64::try_from(n).unwrap_or(0)),
        (None, Total::Default) if page.from.is_none() && !page.backwards && !fetched_more => {
            Some(hits.len() as u64)
        }
        _ => None,
    };
    let link = |cursor: Option<String>| {
        let mut pairs = request.echo.clone();
        if let Some(cursor) = cursor {
            pairs.push(("_cursor".into(), cursor));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        let slash = if path.is_empty() { "" } else { "/" };
        if query.is_empty() {
            format!("{}{slash}{path}", ctx.base)
        } else {
            format!("{}{slash}{path}?{query}", ctx.base)
        }
    };
    let position = |hit: &Hit| Position {
        keys: hit.keys().into_iter().take(request.sort.len()).collect(),
        pk: hit.pk,
    };
    let mut bundle = SearchsetBuilder::default();
    bundle.total(total);
    bundle.link("self", link(request.cursor.clone()));
    bundle.link("first", link(None));
    if let (true, Some(last)) = (has_next, hits.last()) {
        bundle.link("next", link(Some(paging::encode(&position(last), false))));
    }
    if let (true, Some(first)) = (has_previous, hits.first()) {
        bundle.link(
            "previous",
            link(Some(paging::encode(&position(first), true))),
        );
    }
    if request.summary != Summary::Count {
        bundle.link("last", link(Some(LAST.to_owned())));
    }
    let defs = ctx.state.validator.definitions();
    let whole = shape::is_whole(request.summary, request.elements.as_ref());
    let corrupt = |e: serde_json::Error| ApiError::Internal(format!("stored JSON: {e}"));
    for (hit, mode) in hits
        .iter()
        .map(|h| (h, SearchMode::Match))
        .chain(included.iter().map(|h| (h, SearchMode::Include)))
    {
        let Some(content) = &hit.content else {
            continue;
        };
        let resource = if whole || mode == SearchMode::Include {
            content.clone()
        } else {
            shape::shape(defs, content, request.summary, request.elements.as_ref())
                .ok_or_else(|| ApiError::Internal("stored JSON is unreadable".into()))?
        };
        bundle
            .entry(
                Some(format!("{}/{}/{}", ctx.base, hit.resource_type, hit.id)),
                resource,
                mode,
            )
            .map_err(corrupt)?;
    }
    if !request.ignored.is_empty() {
        let issues: Vec<Issue> = request
            .ignored
            .iter()
            .map(|e| {
                Issue::warning(IssueType::NotSupported, format!("ignored: {}", e.message))
                    .at(e.param.clone())
            })
            .collect();
        bundle
            .entry(
                None,
                operation_outcome(&issues).to_string(),
                SearchMode::Outcome,
            )
            .map_err(corrupt)?;
    }
    Ok(fhir(StatusCode::OK).body(bundle.to_json().map_err(corrupt)?))
}
