//! `carerecord import`: bundles, directories and NDJSON into a local system, with a summary and a
//! non-zero exit on failures; on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Command;

use common::TestApp;
use serde_json::json;

fn import(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_carerecord"))
        .arg("import")
        .args(args)
        .arg("--quiet")
        .env("CARERECORD_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn loads_bundles_directories_and_ndjson(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let feeds = dir.path().join("feeds");
    std::fs::create_dir(&feeds).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::copy(
        examples.join("gp-referral-transaction.json"),
        feeds.join("1-gp.json"),
    )
    .unwrap();
    std::fs::copy(
        examples.join("hospital-discharge-transaction.json"),
        feeds.join("2-hospital.json"),
    )
    .unwrap();
    let ndjson = dir.path().join("practitioners.ndjson");
    let lines: Vec<String> = (0..250)
        .map(|i| json!({"resourceType": "Practitioner", "id": format!("p{i}"), "name": [{"family": format!("Doctor{i}")}]}).to_string())
        .collect();
    std::fs::write(&ndjson, lines.join("\n")).unwrap();

    // The hospital bundle needs the GP's patient: load the GP feed first, then the rest together.
    let (ok, text) = import(&app, &[feeds.join("1-gp.json").to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("5 created"), "{text}");
    let (ok, text) = import(
        &app,
        &[
            feeds.to_str().unwrap(),
            ndjson.to_str().unwrap(),
            "--jobs",
            "2",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("253 created") && text.contains("5 unchanged") && text.contains("0 failed"),
        "{text}"
    );
    // NDJSON again: every line unchanged.
    let (ok, text) = import(&app, &[ndjson.to_str().unwrap()]);
    assert!(ok && text.contains("250 unchanged"), "{text}");
    let found = app
        .get("/fhir/default/Practitioner?_summary=count")
        .await
        .json();
    assert_eq!(found["total"], 251);
    let encounters = app.get("/fhir/default/Encounter?subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919").await.json();
    assert_eq!(encounters["total"], 2);
}

async fn failures_are_reported_and_fail_the_exit_status(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let ndjson = dir.path().join("mixed.ndjson");
    let lines = [
        json!({"resourceType": "Patient", "id": "good1", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}]}).to_string(),
        json!({"resourceType": "Patient", "id": "bad", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}]}).to_string(),
        "not json".to_owned(),
        json!({"resourceType": "Observation", "id": "x"}).to_string(),
        json!({"resourceType": "Patient", "id": "good2"}).to_string(),
    ];
    std::fs::write(&ndjson, lines.join("\n")).unwrap();
    let (ok, text) = import(&app, &[ndjson.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("2 created") && text.contains("3 failed"),
        "{text}"
    );
    assert!(
        text.contains("INVALID") || text.contains("NHS number"),
        "{text}"
    );
    assert_eq!(app.get("/fhir/default/Patient/good1").await.status, 200);
    assert_eq!(app.get("/fhir/default/Patient/good2").await.status, 200);
    assert_eq!(app.get("/fhir/default/Patient/bad").await.status, 404);
    let (ok, text) = import(&app, &["/no/such/file.json"]);
    assert!(!ok && text.contains("no such file"), "{text}");
    let (ok, text) = import(&app, &[ndjson.to_str().unwrap(), "--system", "nowhere"]);
    assert!(!ok && text.contains("unknown local system"), "{text}");
}

on_both_backends!(
    loads_bundles_directories_and_ndjson,
    failures_are_reported_and_fail_the_exit_status
);
