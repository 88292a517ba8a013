//! What a search returns beyond its matches (<https://hl7.org/fhir/R4/search.html#return>), on
//! SQLite and PostgreSQL: `_include` and `_revinclude` (with `:iterate`, a target type and `*`)
//! with `search.mode` match/include, `_sort` on several keys with `-` and a stable order, `_count`,
//! `_summary` (true, text, data, count, false), `_elements`, `_total` (none, estimate, accurate), and
//! every entry point: type search by GET and by POST `_search`, compartment search, and system
//! search over `_type`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;

use common::corpus::Corpus;
use common::searching::{entries, ids, link, match_ids, searchset, walk};
use common::TestApp;
use serde_json::{json, Value};

fn sorted(items: Vec<String>) -> Vec<String> {
    let set: BTreeSet<String> = items.into_iter().collect();
    set.into_iter().collect()
}

/// The matches and the included resources (`Type/id`, sorted) of a search.
async fn matches_and_includes(app: &TestApp, query: &str) -> (Vec<String>, Vec<String>) {
    let bundle = searchset(app, &format!("/fhir/default/{query}")).await;
    let modes: BTreeSet<&str> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["search"]["mode"].as_str().unwrap())
        .collect();
    assert!(
        modes.iter().all(|m| *m == "match" || *m == "include"),
        "{query}: {modes:?}"
    );
    let included = entries(&bundle, "include");
    assert_eq!(
        included.len(),
        sorted(included.clone()).len(),
        "{query}: an included resource appears twice"
    );
    (
        sorted(entries(&bundle, "match")),
        sorted(included.into_iter().collect()),
    )
}

fn refs(list: &[&str]) -> Vec<String> {
    sorted(ids(list))
}

async fn include_and_revinclude(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "Encounter?_id=e-morning&_include=Encounter:subject",
            refs(&["Encounter/e-morning"]),
            refs(&["Patient/p-smith"]),
        ),
        (
            "Encounter?_id=e-morning&_include=Encounter:subject:Patient",
            refs(&["Encounter/e-morning"]),
            refs(&["Patient/p-smith"]),
        ),
        (
            "Encounter?_id=e-morning&_include=Encounter:participant:Practitioner",
            refs(&["Encounter/e-morning"]),
            refs(&["Practitioner/pract-okafor"]),
        ),
        (
            "Encounter?_id=e-morning&_include=Encounter:*",
            refs(&["Encounter/e-morning"]),
            refs(&[
                "Patient/p-smith",
                "Practitioner/pract-okafor",
                "Location/loc-clinic",
                "Organization/org-riverside",
            ]),
        ),
        (
            "Encounter?_id=e-morning,e-afternoon&_include=Encounter:subject",
            refs(&["Encounter/e-morning", "Encounter/e-afternoon"]),
            refs(&["Patient/p-smith"]),
        ),
        // Without :iterate an include applies to the matches only.
        (
            "Encounter?_id=e-morning&_include=Encounter:subject&_include=Patient:general-practitioner",
            refs(&["Encounter/e-morning"]),
            refs(&["Patient/p-smith"]),
        ),
        (
            "Encounter?_id=e-morning&_include=Encounter:subject&_include:iterate=Patient:general-practitioner",
            refs(&["Encounter/e-morning"]),
            refs(&["Patient/p-smith", "Organization/org-riverside"]),
        ),
        (
            "ServiceRequest?_id=sr-derm&_include=ServiceRequest:requester&_include:iterate=PractitionerRole:practitioner&_include:iterate=PractitionerRole:organization",
            refs(&["ServiceRequest/sr-derm"]),
            refs(&[
                "PractitionerRole/role-okafor-riverside",
                "Practitioner/pract-okafor",
                "Organization/org-riverside",
            ]),
        ),
        (
            "Patient?_id=p-smith&_revinclude=Encounter:subject",
            refs(&["Patient/p-smith"]),
            refs(&["Encounter/e-morning", "Encounter/e-afternoon"]),
        ),
        (
            "Patient?_id=p-smith&_revinclude=Encounter:subject&_revinclude=ServiceRequest:subject",
            refs(&["Patient/p-smith"]),
            refs(&[
                "Encounter/e-morning",
                "Encounter/e-afternoon",
                "ServiceRequest/sr-cardio",
            ]),
        ),
        (
            "Patient?_id=p-smith&_revinclude=Encounter:*",
            refs(&["Patient/p-smith"]),
            refs(&["Encounter/e-morning", "Encounter/e-afternoon"]),
        ),
        (
            "Organization?_id=org-riverside&_revinclude=Patient:general-practitioner&_revinclude:iterate=Encounter:subject",
            refs(&["Organization/org-riverside"]),
            refs(&[
                "Patient/p-smith",
                "Patient/p-smithson",
                "Patient/p-zoe",
                "Encounter/e-morning",
                "Encounter/e-afternoon",
                "Encounter/e-nextday",
                "Encounter/e-2021",
            ]),
        ),
        (
            "Patient?_id=p-smithson&_revinclude=Encounter:subject&_include:iterate=Encounter:location",
            refs(&["Patient/p-smithson"]),
            refs(&["Encounter/e-nextday", "Location/loc-ward7"]),
        ),
        (
            "Practitioner?_id=pract-okafor&_revinclude=PractitionerRole:practitioner&_include:iterate=PractitionerRole:organization",
            refs(&["Practitioner/pract-okafor"]),
            refs(&[
                "PractitionerRole/role-okafor-riverside",
                "Organization/org-riverside",
            ]),
        ),
        // A match that would also be included is listed once, as a match.
        (
            "Patient?_id=p-smith,p-smithson&_revinclude=Encounter:subject&_include:iterate=Encounter:subject",
            refs(&["Patient/p-smith", "Patient/p-smithson"]),
            refs(&[
                "Encounter/e-morning",
                "Encounter/e-afternoon",
                "Encounter/e-nextday",
            ]),
        ),
    ];
    let mut failures = Vec::new();
    for (query, matches, included) in &cases {
        let found = matches_and_includes(&app, query).await;
        if (&found.0, &found.1) != (matches, included) {
            failures.push(format!(
                "{query}: matched {:?} included {:?}",
                found.0, found.1
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Includes follow the page: only what this page's matches point at.
    let bundle = searchset(
        &app,
        "/fhir/default/Encounter?status=finished&_count=5&_include=Encounter:subject",
    )
    .await;
    let page = match_ids(&bundle);
    assert_eq!(page.len(), 5);
    let subjects: Vec<String> = sorted(
        corpus
            .resources
            .iter()
            .filter(|r| page.iter().any(|id| r["id"] == id.as_str()))
            .map(|r| r["subject"]["reference"].as_str().unwrap().to_owned())
            .collect(),
    );
    assert_eq!(sorted(entries(&bundle, "include")), subjects);

    // A deleted target is not included.
    assert_eq!(
        app.delete("/fhir/default/Location/loc-clinic").await.status,
        204
    );
    let (_, included) =
        matches_and_includes(&app, "Encounter?_id=e-morning&_include=Encounter:location").await;
    assert!(included.is_empty(), "{included:?}");
}

/// The ids of a search in the order returned.
async fn order(app: &TestApp, query: &str) -> Vec<String> {
    match_ids(&searchset(app, &format!("/fhir/default/{query}")).await)
}

async fn sort_keys_and_stability(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let specials = "_id=p-smith,p-smithson,p-smyth,p-olaf,p-zoe,p-obrien,p-davidson,p-noname";
    // Ascending sorts by the lowest value, descending by the highest (a year covers the whole
    // year); a resource without the value sorts first ascending and last descending.
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("Patient?{specials}&_sort=birthdate"),
            ids(&[
                "p-davidson",
                "p-obrien",
                "p-olaf",
                "p-smyth",
                "p-smith",
                "p-smithson",
                "p-zoe",
                "p-noname",
            ]),
        ),
        (
            format!("Patient?{specials}&_sort=-birthdate"),
            ids(&[
                "p-noname",
                "p-zoe",
                "p-smyth",
                "p-smithson",
                "p-smith",
                "p-olaf",
                "p-obrien",
                "p-davidson",
            ]),
        ),
        (
            format!("Patient?{specials}&_sort=gender,-birthdate"),
            ids(&[
                "p-davidson",
                "p-zoe",
                "p-smithson",
                "p-olaf",
                "p-smyth",
                "p-smith",
                "p-obrien",
                "p-noname",
            ]),
        ),
        (
            format!("Patient?{specials}&_sort=family"),
            ids(&[
                "p-noname",
                "p-davidson",
                "p-obrien",
                "p-zoe",
                "p-olaf",
                "p-smith",
                "p-smithson",
                "p-smyth",
            ]),
        ),
        (
            format!("Patient?{specials}&_sort=-_id"),
            ids(&[
                "p-zoe",
                "p-smyth",
                "p-smithson",
                "p-smith",
                "p-olaf",
                "p-obrien",
                "p-noname",
                "p-davidson",
            ]),
        ),
        // Ties keep the order of creation.
        (
            "Encounter?length:missing=false&_sort=-length".to_owned(),
            ids(&["e-morning", "e-afternoon", "e-2021", "e-nextday", "e-long"]),
        ),
        (
            "Encounter?_id=e-morning,e-nextday,e-2021,e-long&_sort=subject".to_owned(),
            ids(&["e-long", "e-morning", "e-nextday", "e-2021"]),
        ),
        (
            "Encounter?_id=e-morning,e-afternoon,e-nextday,e-long,e-open&_sort=-date,_id"
                .to_owned(),
            ids(&["e-open", "e-long", "e-nextday", "e-afternoon", "e-morning"]),
        ),
    ];
    let mut failures = Vec::new();
    for (query, expected) in &cases {
        let found = order(&app, query).await;
        if &found != expected {
            failures.push(format!("{query}: {found:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // _lastUpdated descending: newest first.
    let bundle = searchset(
        &app,
        "/fhir/default/Patient?_sort=-_lastUpdated&_count=1000",
    )
    .await;
    let stamps: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["lastUpdated"].as_str().unwrap())
        .collect();
    assert_eq!(stamps.len(), corpus.ids("Patient").len());
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{stamps:?}");

    // A stable order: equal keys keep the order of creation, the same search gives the same
    // order every time, and walking it a page at a time gives exactly the one-page order.
    let by_status = order(&app, "Encounter?_sort=status&_count=1000").await;
    let creation = corpus.ids("Encounter");
    let mut expected = creation.clone();
    let status_of = |id: &String| {
        corpus
            .resources
            .iter()
            .find(|r| r["resourceType"] == "Encounter" && r["id"] == id.as_str())
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    expected.sort_by_key(status_of); // a stable sort: creation order within a status
    assert_eq!(by_status, expected);
    for query in [
        "Encounter?_sort=status,-date&_count=1000",
        "Encounter?_sort=-class,subject&_count=1000",
        "Patient?_sort=gender,family&_count=1000",
    ] {
        let whole = order(&app, query).await;
        assert_eq!(order(&app, query).await, whole, "{query}");
        let paged: Vec<String> = walk(
            &app,
            &format!("/fhir/default/{}", query.replace("_count=1000", "_count=7")),
            "next",
        )
        .await
        .iter()
        .flat_map(match_ids)
        .collect();
        assert_eq!(paged, whole, "{query}");
    }
}

fn keys(resource: &Value) -> BTreeSet<String> {
    resource.as_object().unwrap().keys().cloned().collect()
}

fn key_set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            t["system"] == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
                && t["code"] == "SUBSETTED"
        })
}

async fn first_resource(app: &TestApp, query: &str) -> Value {
    let bundle = searchset(app, &format!("/fhir/default/{query}")).await;
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 1, "{query}");
    bundle["entry"][0]["resource"].clone()
}

async fn count_summary_elements_total(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let finished = 4 + corpus
        .bulk_encounters_where(|e| e.status == "finished")
        .len();

    // _count
    let bundle = searchset(&app, "/fhir/default/Encounter?status=finished&_count=5").await;
    assert_eq!(match_ids(&bundle).len(), 5);
    assert!(link(&bundle, "next").is_some());
    assert!(
        bundle.get("total").is_none(),
        "no total unless asked for past one page"
    );
    let bundle = searchset(&app, "/fhir/default/Encounter?status=finished&_count=0").await;
    assert!(bundle.get("entry").is_none(), "{bundle}");

    // _total
    for total in ["accurate", "estimate"] {
        let bundle = searchset(
            &app,
            &format!("/fhir/default/Encounter?status=finished&_count=5&_total={total}"),
        )
        .await;
        assert_eq!(bundle["total"], finished, "_total={total}");
        assert_eq!(match_ids(&bundle).len(), 5);
    }
    let bundle = searchset(&app, "/fhir/default/Patient?_id=p-smith").await;
    assert_eq!(bundle["total"], 1, "a result on one page is counted");
    let bundle = searchset(&app, "/fhir/default/Patient?_id=p-smith&_total=none").await;
    assert!(bundle.get("total").is_none(), "{bundle}");

    // _summary=count
    let bundle = searchset(
        &app,
        "/fhir/default/Encounter?status=finished&_summary=count",
    )
    .await;
    assert_eq!(bundle["total"], finished);
    assert!(bundle.get("entry").is_none(), "{bundle}");

    // _summary=true: the elements marked isSummary in the base definition.
    let patient = first_resource(&app, "Patient?_id=p-smith&_summary=true").await;
    assert_eq!(
        keys(&patient),
        key_set(&[
            "resourceType",
            "id",
            "meta",
            "identifier",
            "active",
            "name",
            "telecom",
            "gender",
            "birthDate",
            "address"
        ])
    );
    assert!(subsetted(&patient), "{patient}");
    assert_eq!(
        patient["meta"]["profile"][0],
        common::corpus::UK_CORE_PATIENT
    );
    let encounter = first_resource(&app, "Encounter?_id=e-morning&_summary=true").await;
    assert_eq!(
        keys(&encounter),
        key_set(&[
            "resourceType",
            "id",
            "meta",
            "status",
            "class",
            "type",
            "subject",
            "participant"
        ])
    );
    // _summary=text: text, id, meta and the mandatory elements.
    let encounter = first_resource(&app, "Encounter?_id=e-morning&_summary=text").await;
    assert_eq!(
        keys(&encounter),
        key_set(&["resourceType", "id", "meta", "text", "status", "class"])
    );
    assert!(subsetted(&encounter));
    // _summary=data: everything but the text.
    let encounter = first_resource(&app, "Encounter?_id=e-morning&_summary=data").await;
    let whole = app.get("/fhir/default/Encounter/e-morning").await.json();
    let mut expected = keys(&whole);
    expected.remove("text");
    assert_eq!(keys(&encounter), expected);
    assert!(subsetted(&encounter));
    // _summary=false: the whole resource, as read.
    let encounter = first_resource(&app, "Encounter?_id=e-morning&_summary=false").await;
    assert_eq!(encounter, whole);

    // _elements: the listed elements, plus the mandatory ones, marked SUBSETTED.
    let patient = first_resource(&app, "Patient?_id=p-smith&_elements=identifier,gender").await;
    assert_eq!(
        keys(&patient),
        key_set(&["resourceType", "id", "meta", "identifier", "gender"])
    );
    assert!(subsetted(&patient));
    let encounter = first_resource(&app, "Encounter?_id=e-morning&_elements=subject").await;
    assert_eq!(
        keys(&encounter),
        key_set(&["resourceType", "id", "meta", "status", "class", "subject"])
    );
    // Included resources are whole.
    let bundle = searchset(
        &app,
        "/fhir/default/Encounter?_id=e-morning&_elements=subject&_include=Encounter:subject",
    )
    .await;
    let included = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "include")
        .unwrap();
    assert_eq!(
        included["resource"],
        app.get("/fhir/default/Patient/p-smith").await.json()
    );
}

async fn entry_points(app: TestApp) {
    Corpus::load(&app, "default").await;
    let base = app.base("default");
    let form = [("content-type", "application/x-www-form-urlencoded")];

    // GET and POST _search give the same matches; a POST may also carry parameters in the URL.
    let get = order(&app, "Encounter?subject=Patient/p-smith&status=finished").await;
    assert_eq!(sorted(get.clone()), refs(&["e-afternoon", "e-morning"]));
    let reply = app
        .send(
            "POST",
            "/fhir/default/Encounter/_search",
            &form,
            Some(b"subject=Patient%2Fp-smith&status=finished"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(match_ids(&reply.json()), get);
    let reply = app
        .send(
            "POST",
            "/fhir/default/Encounter/_search?_count=1",
            &form,
            Some(b"subject=p-smith"),
        )
        .await;
    assert_eq!(reply.status, 200);
    let first = reply.json();
    assert_eq!(match_ids(&first).len(), 1);
    let next = link(&first, "next").unwrap();
    assert!(next.starts_with(&format!("{base}/Encounter?")), "{next}");
    let mut both = match_ids(&first);
    both.extend(match_ids(&searchset(&app, &next).await));
    assert_eq!(sorted(both), refs(&["e-afternoon", "e-morning"]));
    let reply = app
        .send(
            "POST",
            "/fhir/default/Encounter/_search",
            &[("content-type", "application/fhir+json")],
            Some(b"{}"),
        )
        .await;
    assert_eq!(reply.status, 415);

    // Compartment search: the type's compartment parameters name the patient.
    let compartment = [
        (
            "Patient/p-smith/Encounter",
            refs(&["e-morning", "e-afternoon"]),
        ),
        (
            "Patient/p-olaf/Encounter?status=in-progress",
            ids(&["e-open"]),
        ),
        ("Patient/p-smith/ServiceRequest", ids(&["sr-cardio"])),
        ("Patient/p-smithson/ServiceRequest", ids(&["sr-physio"])),
        ("Patient/p-smith/Patient", ids(&["p-smith"])),
        ("Patient/nobody/Encounter", ids(&[])),
    ];
    for (path, expected) in compartment {
        let bundle = searchset(&app, &format!("/fhir/default/{path}")).await;
        assert_eq!(sorted(match_ids(&bundle)), sorted(expected), "{path}");
        let own = link(&bundle, "self").unwrap();
        assert!(
            own.starts_with(&format!("{base}/{}", path.split('?').next().unwrap())),
            "{own}"
        );
    }
    assert_eq!(
        order(&app, "Patient/p-smith/Encounter?_sort=-date").await,
        ids(&["e-afternoon", "e-morning"])
    );
    app.get("/fhir/default/Patient/p-smith/Organization")
        .await
        .assert_outcome(400, "invalid");

    // System search: _type with the parameters every type has.
    let cutoff = app.get("/fhir/default/ServiceRequest/sr-050").await.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(std::time::Duration::from_millis(5));
    app.put(
        "/fhir/default/Patient/new-patient",
        &json!({"resourceType": "Patient", "id": "new-patient"}),
    )
    .await;
    app.put(
        "/fhir/default/Organization/new-org",
        &json!({"resourceType": "Organization", "id": "new-org", "name": "New"}),
    )
    .await;
    app.put(
        "/fhir/default/Encounter/new-encounter",
        &json!({"resourceType": "Encounter", "id": "new-encounter", "status": "planned",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}),
    )
    .await;
    let system = [
        (
            format!("?_type=Patient,Organization&_lastUpdated=gt{cutoff}"),
            refs(&["Patient/new-patient", "Organization/new-org"]),
        ),
        (
            format!("?_lastUpdated=gt{cutoff}"),
            refs(&[
                "Patient/new-patient",
                "Organization/new-org",
                "Encounter/new-encounter",
            ]),
        ),
        (
            "?_type=Patient,Organization&_id=p-smith,org-riverside,e-morning".to_owned(),
            refs(&["Patient/p-smith", "Organization/org-riverside"]),
        ),
        (
            "?_type=Patient&family=smi".to_owned(),
            refs(&["Patient/p-smith", "Patient/p-smithson"]),
        ),
        (
            "?_type=Patient,Organization&_tag=vip".to_owned(),
            refs(&["Patient/p-smith", "Patient/p-zoe"]),
        ),
    ];
    for (query, expected) in system {
        let bundle = searchset(&app, &format!("/fhir/default{query}")).await;
        assert_eq!(sorted(entries(&bundle, "match")), expected, "{query}");
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            assert!(entry["fullUrl"].as_str().unwrap().starts_with(&base));
        }
    }
    // POST [base]/_search, as for a type.
    let reply = app
        .send(
            "POST",
            "/fhir/default/_search",
            &form,
            Some(b"_type=Patient%2COrganization&_id=p-smith%2Corg-riverside"),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        sorted(entries(&reply.json(), "match")),
        refs(&["Patient/p-smith", "Organization/org-riverside"])
    );
    app.get("/fhir/default?_type=Patient,Organization&name=smith")
        .await
        .assert_outcome(400, "invalid");
    app.get("/fhir/default?_type=Observation")
        .await
        .assert_outcome(400, "invalid");
}

on_both_backends!(
    include_and_revinclude,
    sort_keys_and_stability,
    count_summary_elements_total,
    entry_points,
);
