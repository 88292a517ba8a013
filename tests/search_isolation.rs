//! Search never crosses local systems, on SQLite and PostgreSQL. Systems `a` and `b` hold the same
//! corpus with the same ids (each copy marked by `meta.source`), and `b` holds a few resources more
//! that would match `a`'s searches if a query leaked. No search, `_include`, `_revinclude`, chain,
//! `_has`, sort, count, compartment search, system search, paging link or `$everything` through
//! one system's base returns anything of the other.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::corpus::{Corpus, SMITH_NHS};
use common::searching::{link, walk};
use common::TestApp;
use serde_json::{json, Value};

/// Resources only `b` has, each matching many of the searches below.
fn b_only() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "p-b-only",
               "name": [{"family": "Smith", "given": ["Zoë"]}], "gender": "male",
               "birthDate": "1980-02-29",
               "meta": {"tag": [{"system": "https://carerecord.invalid/tags", "code": "vip"}]},
               "generalPractitioner": [{"reference": "Organization/org-riverside"}]}),
        json!({"resourceType": "Encounter", "id": "e-b-only", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": "Patient/p-smith"},
               "participant": [{"individual": {"reference": "Practitioner/pract-okafor"}}],
               "period": {"start": "2024-03-10T11:00:00Z", "end": "2024-03-10T11:30:00Z"},
               "length": {"value": 60, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
               "serviceProvider": {"reference": "Organization/org-riverside"}}),
        json!({"resourceType": "ServiceRequest", "id": "sr-b-only", "status": "active",
               "intent": "order", "subject": {"reference": "Patient/p-smith"},
               "requester": {"reference": "Practitioner/pract-okafor"},
               "performer": [{"reference": "Organization/org-stmarys"}]}),
        json!({"resourceType": "Organization", "id": "org-b-only", "name": "Riverside Annexe"}),
    ]
}

/// The searches, relative to a system's base.
fn searches() -> Vec<String> {
    let nhs = "https://fhir.nhs.uk/Id/nhs-number";
    [
        "Patient?family=smi",
        "Patient?name=zoe",
        "Patient?_id=p-smith,p-b-only",
        "Patient?_tag=vip",
        "Patient?birthdate=1980-02-29",
        "Patient?gender:not=female",
        "Patient?gender:missing=true",
        "Patient?general-practitioner=Organization/org-riverside",
        "Patient?_lastUpdated=ge2000&_sort=family&_count=1000",
        "Patient?_profile:below=https://fhir.hl7.org.uk/",
        "Encounter?subject=Patient/p-smith",
        "Encounter?date=2024-03-10",
        "Encounter?length=60",
        "Encounter?status=finished&_total=accurate",
        "Encounter?subject:Patient.family=smith",
        "Encounter?subject:Patient.general-practitioner:Organization.name=riverside",
        "Encounter?service-provider.name=riverside",
        "Patient?_has:Encounter:subject:date=2024-03-10",
        "Organization?_has:Patient:general-practitioner:_has:Encounter:subject:status=finished",
        "Organization?name=riverside",
        "Encounter?_id=e-morning&_include=Encounter:*",
        "Patient?_id=p-smith&_revinclude=Encounter:subject&_revinclude=ServiceRequest:subject",
        "Organization?_id=org-riverside&_revinclude=Patient:general-practitioner&_revinclude:iterate=Encounter:subject",
        "Encounter?_id=e-morning&_include=Encounter:subject&_include:iterate=Patient:general-practitioner",
        "ServiceRequest?requester=Practitioner/pract-okafor&_include=ServiceRequest:performer",
        "Patient/p-smith/Encounter",
        "Patient/p-smith/ServiceRequest?_sort=-_lastUpdated",
        "Patient/p-smith/$everything",
        "Patient/$everything?_id=p-smith",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        format!("Patient?identifier={nhs}|{SMITH_NHS}"),
        format!("Encounter?subject:Patient.identifier={nhs}|{SMITH_NHS}"),
        "?_type=Patient,Organization&_id=p-smith,p-b-only,org-riverside,org-b-only".to_owned(),
        "?_lastUpdated=ge2000&_count=1000".to_owned(),
    ])
    .collect()
}

/// Asserts that every entry of a searchset is `system`'s own.
fn assert_own(app: &TestApp, system: &str, what: &str, bundle: &Value) {
    let base = app.base(system);
    let marker = format!("urn:carerecord-test:{system}");
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    for entry in &entries {
        if entry["search"]["mode"] == "outcome" {
            continue;
        }
        let url = entry["fullUrl"].as_str().unwrap();
        assert!(url.starts_with(&format!("{base}/")), "{what}: {url}");
        let resource = &entry["resource"];
        let id = resource["id"].as_str().unwrap();
        if system == "a" {
            assert!(!id.contains("b-only"), "{what}: {id}");
        }
        // b's own extras carry no marker; the corpus copies carry their system's.
        if !id.contains("b-only") {
            assert_eq!(resource["meta"]["source"], marker.as_str(), "{what}: {id}");
        }
    }
    if let (Some(total), None) = (bundle["total"].as_u64(), link(bundle, "next")) {
        let matches = entries
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .count();
        assert_eq!(
            total as usize, matches,
            "{what}: total counts only this system"
        );
    }
    for relation in ["self", "first", "next", "previous", "last"] {
        if let Some(url) = link(bundle, relation) {
            assert!(url.starts_with(&base), "{what}: {url}");
        }
    }
}

async fn searches_never_cross_local_systems(app: TestApp) {
    app.add_system("a").await;
    app.add_system("b").await;
    Corpus::load(&app, "a").await;
    Corpus::load(&app, "b").await;
    for resource in b_only() {
        let path = format!(
            "/fhir/b/{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        assert_eq!(app.put(&path, &resource).await.status, 201, "{path}");
    }
    let mut differ = 0;
    for query in searches() {
        let mut found = Vec::new();
        for system in ["a", "b"] {
            let path = if query.starts_with('?') {
                format!("/fhir/{system}{query}")
            } else {
                format!("/fhir/{system}/{query}")
            };
            let reply = app.get(&path).await;
            assert_eq!(
                reply.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&reply.body)
            );
            let bundle = reply.json();
            assert_own(&app, system, &path, &bundle);
            let ids: Vec<String> = bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let url = e["fullUrl"].as_str().unwrap();
                    let (_, path) = url.rsplit_once("/fhir/").unwrap();
                    path.split_once('/').unwrap().1.to_owned()
                })
                .collect();
            found.push(ids);
        }
        // b answers with a's matches plus its own extras, never fewer.
        let (a, b) = (&found[0], &found[1]);
        assert!(a.iter().all(|id| b.contains(id)), "{query}: {a:?} vs {b:?}");
        if a != b {
            differ += 1;
        }
        assert!(!a.is_empty(), "{query}: the search finds something in a");
    }
    assert!(differ > 20, "b's extras show up in b's searches ({differ})");

    // Paging links and POST _search stay in their system; a cursor from b's link used on a's base
    // pages through a's data only.
    for system in ["a", "b"] {
        let pages = walk(
            &app,
            &format!("/fhir/{system}/Patient?_count=9&_sort=family"),
            "next",
        )
        .await;
        for (i, page) in pages.iter().enumerate() {
            assert_own(&app, system, &format!("{system} page {i}"), page);
        }
        let reply = app
            .send(
                "POST",
                &format!("/fhir/{system}/Encounter/_search"),
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(b"subject=Patient%2Fp-smith&_include=Encounter%3Aparticipant"),
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_own(&app, system, &format!("{system} POST"), &reply.json());
    }
    let b_first = walk(&app, "/fhir/b/Encounter?_count=5", "next").await;
    let b_next = link(&b_first[0], "next").unwrap();
    let borrowed = b_next.replace("/fhir/b/", "/fhir/a/");
    let page = common::searching::searchset(&app, &borrowed).await;
    assert_own(&app, "a", "a's base with b's cursor", &page);
}

on_both_backends!(searches_never_cross_local_systems);
