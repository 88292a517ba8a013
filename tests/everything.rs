//! `Patient/[id]/$everything` (<https://hl7.org/fhir/R4/patient-operation-everything.html>), on
//! SQLite and PostgreSQL: the patient, every resource in its compartment and the Organizations,
//! Practitioners, PractitionerRoles and Locations those refer to — all of it, and nothing of any
//! other patient; `_since`, `_type` and `_count` with paging links; the type-level form with `_id`;
//! and its errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;

use common::corpus::Corpus;
use common::searching::{entries, link, searchset, walk};
use common::TestApp;
use serde_json::{json, Value};

/// Every `reference` string in a resource.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("reference") {
                out.push(r.clone());
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// What `$everything` must return for `patient`, worked out from the corpus: the patient, the
/// Encounters and ServiceRequests whose subject it is, and the supporting resources they (and
/// the patient) refer to.
fn expected(corpus: &Corpus, patient: &str) -> BTreeSet<String> {
    let me = format!("Patient/{patient}");
    let members: Vec<&Value> = corpus
        .resources
        .iter()
        .filter(|r| {
            (r["resourceType"] == "Patient" && r["id"] == patient)
                || (r["subject"]["reference"] == me.as_str())
        })
        .collect();
    let mut found: BTreeSet<String> = members
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect();
    let mut refs = Vec::new();
    members.iter().for_each(|r| references(r, &mut refs));
    found.extend(refs.into_iter().filter(|r| {
        [
            "Organization/",
            "Practitioner/",
            "PractitionerRole/",
            "Location/",
        ]
        .iter()
        .any(|t| r.starts_with(t))
    }));
    found
}

fn everything_in(pages: &[Value]) -> Vec<String> {
    pages.iter().flat_map(|p| entries(p, "match")).collect()
}

fn as_set(list: Vec<String>) -> BTreeSet<String> {
    let set: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(set.len(), list.len(), "an entry appears twice: {list:?}");
    set
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn everything_is_complete_and_only_the_patients(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    assert_eq!(
        expected(&corpus, "p-smith"),
        set(&[
            "Patient/p-smith",
            "Encounter/e-morning",
            "Encounter/e-afternoon",
            "ServiceRequest/sr-cardio",
            "Organization/org-riverside",
            "Organization/org-stmarys",
            "Practitioner/pract-okafor",
            "Location/loc-clinic",
        ])
    );
    for patient in [
        "p-smith",
        "p-smithson",
        "p-smyth",
        "p-olaf",
        "p-zoe",
        "p-obrien",
        "pat-002",
        "pat-017",
        "pat-060",
    ] {
        let bundle = searchset(
            &app,
            &format!("/fhir/default/Patient/{patient}/$everything?_count=1000"),
        )
        .await;
        let found = as_set(entries(&bundle, "match"));
        assert_eq!(found, expected(&corpus, patient), "{patient}");
        assert_eq!(bundle["total"], found.len(), "{patient}");
        for entry in bundle["entry"].as_array().unwrap() {
            let resource = &entry["resource"];
            let url = entry["fullUrl"].as_str().unwrap();
            assert!(url.starts_with(&app.base("default")), "{url}");
            if resource["resourceType"] == "Patient" {
                assert_eq!(resource["id"], patient);
            }
            if let Some(subject) = resource["subject"]["reference"].as_str() {
                assert_eq!(subject, format!("Patient/{patient}"));
            }
        }
    }

    // The type-level form, and POST.
    let bundle = searchset(&app, "/fhir/default/Patient/$everything?_id=p-smithson").await;
    assert_eq!(
        as_set(entries(&bundle, "match")),
        expected(&corpus, "p-smithson")
    );
    let reply = app
        .send(
            "POST",
            "/fhir/default/Patient/p-smithson/$everything",
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        as_set(entries(&reply.json(), "match")),
        expected(&corpus, "p-smithson")
    );
}

async fn since_type_count_and_paging(app: TestApp) {
    let corpus = Corpus::load(&app, "default").await;
    let whole = expected(&corpus, "p-smith");

    // _type
    let bundle = searchset(
        &app,
        "/fhir/default/Patient/p-smith/$everything?_type=Encounter,Organization",
    )
    .await;
    assert_eq!(
        as_set(entries(&bundle, "match")),
        set(&[
            "Encounter/e-morning",
            "Encounter/e-afternoon",
            "Organization/org-riverside",
            "Organization/org-stmarys",
        ])
    );

    // _count and paging: next links collect everything once; previous links walk back.
    for size in [1, 3, 5] {
        let start = format!("/fhir/default/Patient/p-smith/$everything?_count={size}");
        let pages = walk(&app, &start, "next").await;
        assert_eq!(pages.len(), whole.len().div_ceil(size), "_count={size}");
        assert!(pages.iter().all(|p| entries(p, "match").len() <= size));
        let forward = everything_in(&pages);
        assert_eq!(as_set(forward.clone()), whole, "_count={size}");
        let back = walk(
            &app,
            &link(pages.last().unwrap(), "self").unwrap(),
            "previous",
        )
        .await;
        let backward: Vec<String> = back
            .iter()
            .rev()
            .flat_map(|p| entries(p, "match"))
            .collect();
        assert_eq!(backward, forward, "_count={size}");
        let first = searchset(&app, &link(&pages[1], "first").unwrap()).await;
        assert_eq!(entries(&first, "match"), entries(&pages[0], "match"));
        assert!(link(&pages[0], "next")
            .unwrap()
            .contains(&format!("_count={size}")));
    }

    // _since: what changed after an instant.
    let cutoff = app.get("/fhir/default/ServiceRequest/sr-050").await.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut afternoon = app.get("/fhir/default/Encounter/e-afternoon").await.json();
    afternoon["status"] = json!("entered-in-error");
    assert_eq!(
        app.put("/fhir/default/Encounter/e-afternoon", &afternoon)
            .await
            .status,
        200
    );
    let new = json!({"resourceType": "Encounter", "id": "e-new", "status": "planned",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                     "subject": {"reference": "Patient/p-smith"}});
    assert_eq!(
        app.put("/fhir/default/Encounter/e-new", &new).await.status,
        201
    );
    let other = json!({"resourceType": "Encounter", "id": "e-other", "status": "planned",
                       "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                       "subject": {"reference": "Patient/p-zoe"}});
    assert_eq!(
        app.put("/fhir/default/Encounter/e-other", &other)
            .await
            .status,
        201
    );
    let bundle = searchset(
        &app,
        &format!("/fhir/default/Patient/p-smith/$everything?_since={cutoff}"),
    )
    .await;
    assert_eq!(
        as_set(entries(&bundle, "match")),
        set(&["Encounter/e-afternoon", "Encounter/e-new"])
    );
    // A deleted member is gone.
    assert_eq!(
        app.delete("/fhir/default/Encounter/e-morning").await.status,
        204
    );
    let bundle = searchset(
        &app,
        "/fhir/default/Patient/p-smith/$everything?_type=Encounter",
    )
    .await;
    assert_eq!(
        as_set(entries(&bundle, "match")),
        set(&["Encounter/e-afternoon", "Encounter/e-new"])
    );
}

async fn everything_errors(app: TestApp) {
    Corpus::load(&app, "default").await;
    app.get("/fhir/default/Patient/nobody/$everything")
        .await
        .assert_outcome(404, "not-found");
    assert_eq!(
        app.delete("/fhir/default/Patient/p-obrien").await.status,
        204
    );
    app.get("/fhir/default/Patient/p-obrien/$everything")
        .await
        .assert_outcome(410, "deleted");
    for (query, param) in [
        ("_count=0", "_count"),
        ("_count=1001", "_count"),
        ("_since=yesterday", "_since"),
        ("_type=Observation", "_type"),
        ("colour=blue", "colour"),
        ("_cursor=zz", "_cursor"),
    ] {
        let issue = app
            .get(&format!(
                "/fhir/default/Patient/p-smith/$everything?{query}"
            ))
            .await
            .assert_outcome(400, "invalid");
        assert_eq!(issue["expression"], json!([param]), "{query}");
        assert_eq!(issue["details"]["coding"][0]["code"], "INVALID_PARAMETER");
    }
    let issue = app
        .get("/fhir/default/Patient/$everything")
        .await
        .assert_outcome(400, "invalid");
    assert_eq!(issue["expression"], json!(["_id"]));
}

on_both_backends!(
    everything_is_complete_and_only_the_patients,
    since_type_count_and_paging,
    everything_errors,
);
