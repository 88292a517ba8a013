//! Query plans: the SQL the server builds for the searches a shared care record lives on is served
//! from the search indexes on both backends, not by scanning a table.
//!
//! The check asks each database for the plan of the exact statement `carerecord::search::sql`
//! builds (with its bound values) over the test corpus: `EXPLAIN QUERY PLAN` on SQLite, where no
//! `SCAN` of a table may appear and the expected index must; `EXPLAIN` on PostgreSQL, where the
//! expected index must appear and no `Seq Scan`. On PostgreSQL the statistics are those the server
//! gathers before searching, and sequential scans are switched off for the session: over a few
//! hundred rows a sequential scan is honestly the cheapest, and the question here is whether an
//! index serves the query at all.
//!
//! Findings (both backends): the identifier, reference (patient/subject) and date searches use
//! `search_token_lookup`, `search_reference_lookup` and `search_date_lookup`, and a date `eq`
//! scans only the searched range of `low`; chains add the lookup indexes of every level;
//! `_include` uses `search_reference_resource`, `_revinclude` `search_reference_lookup`, and
//! `$everything` walks out from the patient through the reference indexes without touching the
//! rest of the local system.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use carerecord::fhir::definitions::Definitions;
use carerecord::fhir::ResourceType;
use carerecord::search::query::{self, Clause};
use carerecord::search::sql::{self, Bind, Dialect, Page, Sql};
use carerecord::search::Search;
use common::corpus::Corpus;
use common::TestApp;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};

#[derive(QueryableByName)]
struct SqlitePlanLine {
    #[diesel(sql_type = Text)]
    detail: String,
}

#[derive(QueryableByName)]
struct PgPlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName)]
struct SystemId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

enum Conn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

macro_rules! bound {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                Bind::Text(v) => query.bind::<Text, _>(v.clone()),
                Bind::Int(v) => query.bind::<BigInt, _>(*v),
                Bind::Float(v) => query.bind::<Double, _>(*v),
                Bind::Bool(v) => query.bind::<diesel::sql_types::Bool, _>(*v),
                Bind::NullText => {
                    query.bind::<diesel::sql_types::Nullable<Text>, _>(None::<String>)
                }
            };
        }
        query
    }};
}

impl Conn {
    fn open(app: &TestApp) -> Self {
        match app.database_url.strip_prefix("sqlite://") {
            Some(path) => Conn::Sqlite(SqliteConnection::establish(path).unwrap()),
            None => {
                let mut pg = PgConnection::establish(&app.database_url).unwrap();
                diesel::sql_query("SET enable_seqscan = off")
                    .execute(&mut pg)
                    .unwrap();
                Conn::Pg(pg)
            }
        }
    }

    fn system_id(&mut self, slug: &str) -> i64 {
        let query = diesel::sql_query(format!(
            "SELECT id FROM local_systems WHERE slug = '{slug}'"
        ));
        match self {
            Conn::Sqlite(c) => query.get_result::<SystemId>(c).unwrap().id,
            Conn::Pg(c) => query.get_result::<SystemId>(c).unwrap().id,
        }
    }

    /// The plan lines of a statement.
    fn plan(&mut self, sql: &Sql) -> Vec<String> {
        match self {
            Conn::Sqlite(c) => {
                let text = format!("EXPLAIN QUERY PLAN {}", sql.render(Dialect::Sqlite));
                let query = bound!(
                    diesel::sql_query(text).into_boxed::<diesel::sqlite::Sqlite>(),
                    &sql.binds
                );
                query
                    .load::<SqlitePlanLine>(c)
                    .unwrap()
                    .into_iter()
                    .map(|l| l.detail)
                    .collect()
            }
            Conn::Pg(c) => {
                let text = format!("EXPLAIN {}", sql.render(Dialect::Postgres));
                let query = bound!(
                    diesel::sql_query(text).into_boxed::<diesel::pg::Pg>(),
                    &sql.binds
                );
                query
                    .load::<PgPlanLine>(c)
                    .unwrap()
                    .into_iter()
                    .map(|l| l.line)
                    .collect()
            }
        }
    }

    /// What is wrong with a plan that should use every index in `indexes` and scan no table
    /// (the common-table expressions of `$everything` are read whole by design) nor the whole of
    /// the local system or of a type in it.
    fn problems(&self, plan: &[String], indexes: &[&str]) -> Vec<String> {
        let text = plan.join("\n");
        let mut problems: Vec<String> = indexes
            .iter()
            .filter(|index| !text.contains(&format!(" {index}")))
            .map(|index| format!("does not use {index}"))
            .collect();
        for line in plan {
            let scan = match self {
                // A SEARCH constrained by the local system (and type) alone reads all of it.
                Conn::Sqlite(_) => {
                    line.strip_prefix("SCAN ")
                        .is_some_and(|table| !matches!(table, "members" | "record"))
                        || line.ends_with("(system_id=?)")
                        || line.ends_with("(system_id=? AND resource_type=?)")
                }
                Conn::Pg(_) => line.contains("Seq Scan"),
            };
            if scan {
                problems.push(format!("scans: {}", line.trim()));
            }
        }
        problems
    }
}

fn first_page() -> Page {
    Page {
        from: None,
        backwards: false,
        limit: 51,
    }
}

async fn searches_are_served_from_the_indexes(app: TestApp) {
    Corpus::load(&app, "default").await;
    // The server gathers PostgreSQL's statistics before its first search.
    assert_eq!(
        app.get("/fhir/default/Patient?_id=p-smith").await.status,
        200
    );
    let base = app.base("default");
    let search = Search::new(&Definitions::shared().unwrap());
    let mut conn = Conn::open(&app);
    let system_id = conn.system_id("default");
    let request = |rtype: ResourceType, query: &str| {
        let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        query::parse(&search.registry, &[rtype], &params, false).unwrap()
    };
    let select =
        |request: &query::SearchRequest| sql::select(system_id, request, &base, &first_page());

    let nhs = "https://fhir.nhs.uk/Id/nhs-number";
    let mut cases: Vec<(String, Sql, Vec<&str>)> = [
        (
            ResourceType::Patient,
            format!("identifier={nhs}|9434765919"),
            vec!["search_token_lookup"],
        ),
        (
            ResourceType::Patient,
            format!("identifier={nhs}|943+476+5919"),
            vec!["search_token_lookup"],
        ),
        (
            ResourceType::Encounter,
            "patient=Patient/p-smith".to_owned(),
            vec!["search_reference_lookup"],
        ),
        (
            ResourceType::Encounter,
            "subject=Patient/p-smith".to_owned(),
            vec!["search_reference_lookup"],
        ),
        (
            ResourceType::ServiceRequest,
            "subject=p-smith".to_owned(),
            vec!["search_reference_lookup"],
        ),
        (
            ResourceType::Encounter,
            "date=2024-03-10".to_owned(),
            vec!["search_date_lookup"],
        ),
        (
            ResourceType::Encounter,
            "date=2024-03".to_owned(),
            vec!["search_date_lookup"],
        ),
        (
            ResourceType::Patient,
            "birthdate=1980-02-29".to_owned(),
            vec!["search_date_lookup"],
        ),
        (
            ResourceType::Patient,
            "birthdate=lt1970".to_owned(),
            vec!["search_date_lookup"],
        ),
        (
            ResourceType::Patient,
            "family=smi".to_owned(),
            vec!["search_string_lookup"],
        ),
        (
            ResourceType::Encounter,
            format!("subject:Patient.identifier={nhs}|9434765919"),
            vec!["search_reference_lookup", "search_token_lookup"],
        ),
        (
            ResourceType::Patient,
            "_has:Encounter:subject:status=cancelled".to_owned(),
            vec!["search_token_lookup", "search_reference_resource"],
        ),
        // Narrowed by the reference; the date is then checked per resource (by index too).
        (
            ResourceType::Encounter,
            "subject=Patient/p-smith&date=ge2024-01-01".to_owned(),
            vec!["search_reference_lookup"],
        ),
    ]
    .into_iter()
    .map(|(rtype, query, indexes)| {
        let sql = select(&request(rtype, &query));
        (format!("{rtype}?{query}"), sql, indexes)
    })
    .collect();

    // Compartment search.
    let mut compartment = request(ResourceType::Encounter, "status=finished");
    compartment.clauses.insert(
        0,
        Clause::InCompartment {
            params: search.compartment.params(ResourceType::Encounter).to_vec(),
            patient: "p-smith".into(),
        },
    );
    cases.push((
        "Patient/p-smith/Encounter".into(),
        select(&compartment),
        vec!["search_reference_lookup"],
    ));
    // _include and _revinclude for a page of matches.
    cases.push((
        "_include=Encounter:subject".into(),
        sql::include(system_id, &[1, 2, 3], &["subject".to_owned()], None),
        vec!["search_reference_resource"],
    ));
    cases.push((
        "_revinclude=Encounter:subject".into(),
        sql::revinclude(
            system_id,
            ResourceType::Encounter,
            &["subject".to_owned()],
            &[("Patient".to_owned(), "p-smith".to_owned())],
        ),
        vec!["search_reference_lookup"],
    ));
    // $everything
    let compartment_params: Vec<String> = search
        .compartment
        .member_types()
        .flat_map(|t| search.compartment.params(t).to_vec())
        .collect();
    cases.push((
        "Patient/p-smith/$everything".into(),
        sql::everything(
            system_id,
            "p-smith",
            &compartment_params,
            &[],
            None,
            &first_page(),
        ),
        vec!["search_reference_resource"],
    ));

    let mut failures = Vec::new();
    for (what, sql, indexes) in &cases {
        let plan = conn.plan(sql);
        // Shown with --nocapture, for the record.
        eprintln!("{what}:\n    {}", plan.join("\n    "));
        let problems = conn.problems(&plan, indexes);
        if !problems.is_empty() {
            failures.push(format!(
                "{what}: {}\n    {}",
                problems.join("; "),
                plan.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[derive(QueryableByName)]
struct Collation {
    #[diesel(sql_type = Text)]
    column: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    collation: Option<String>,
}

/// Prefix searches (`value >= 'alvarez' AND value < 'alvare{'`, also `:below` and `:text`) hold in
/// byte order only: under a linguistic collation, the default of many PostgreSQL databases,
/// punctuation is ignored at first and 'alvarez' sorts after 'alvare{'. The test database is
/// C.UTF-8, so the searches alone would not show it; the columns must compare bytes whatever the
/// database's default. (SQLite compares bytes throughout.)
async fn prefix_searched_columns_compare_bytes(app: TestApp) {
    let Conn::Pg(mut pg) = Conn::open(&app) else {
        return;
    };
    let columns: Vec<Collation> = diesel::sql_query(
        "SELECT table_name || '.' || column_name AS column, collation_name AS collation \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND (table_name, column_name) IN (('search_string', 'value_norm'), \
         ('search_token', 'text_norm'), ('search_uri', 'value')) ORDER BY 1",
    )
    .load(&mut pg)
    .unwrap();
    let found: Vec<(String, Option<String>)> = columns
        .into_iter()
        .map(|c| (c.column, c.collation))
        .collect();
    let c = Some("C".to_owned());
    assert_eq!(
        found,
        [
            ("search_string.value_norm".to_owned(), c.clone()),
            ("search_token.text_norm".to_owned(), c.clone()),
            ("search_uri.value".to_owned(), c),
        ]
    );
}

on_both_backends!(
    searches_are_served_from_the_indexes,
    prefix_searched_columns_compare_bytes,
);
