//! The benchmarks' synthetic data and load driver: what the generator writes validates and loads
//! (the bundles through the API in name order, the NDJSON with `carerecord import` into a second
//! system), and every load driver scenario runs without an error on it. On SQLite and
//! PostgreSQL; tiny sizes, no throughput asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::Path;
use std::time::Duration;

use carerecord::loadgen::{self, Config, Scenario};
use carerecord::synthetic::{self, Manifest, Options};
use common::TestApp;

/// Patients generated: patient 0 is heavy (100 encounters, 20 referrals), two are ordinary.
const PATIENTS: usize = 3;

fn generate(dir: &Path) -> synthetic::Summary {
    let summary = synthetic::generate(&Options::new(PATIENTS, 42, dir)).unwrap();
    assert_eq!(summary.patients, PATIENTS);
    assert_eq!(summary.heavy.len(), 1);
    summary
}

/// Every bundle file in name order, as a loader would send them.
fn bundle_files(dir: &Path) -> Vec<std::path::PathBuf> {
    loadgen::bundle_phases(dir)
        .unwrap()
        .into_iter()
        .flatten()
        .collect()
}

async fn generated_data_validates_and_loads(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path());
    let manifest = Manifest::read(dir.path()).unwrap();
    assert_eq!(manifest.nhs_numbers.len(), PATIENTS);
    assert_eq!(manifest.resources, summary.resources);

    // Same seed, same bytes.
    let again = tempfile::tempdir().unwrap();
    generate(again.path());
    for file in bundle_files(dir.path()) {
        let twin = again.path().join(file.strip_prefix(dir.path()).unwrap());
        assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(twin).unwrap());
    }

    // The bundles, GP feeds then hospital feeds, through the API.
    let files = bundle_files(dir.path());
    assert!(files
        .iter()
        .any(|f| f.to_string_lossy().contains("hospital")));
    for file in &files {
        let body = std::fs::read(file).unwrap();
        let reply = app
            .send(
                "POST",
                "/fhir/default",
                &[("content-type", "application/fhir+json")],
                Some(&body),
            )
            .await;
        assert_eq!(
            reply.status,
            200,
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&reply.body)
        );
    }
    let heavy = &manifest.heavy[0];
    let found = app
        .get(&format!(
            "/fhir/default/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{heavy}"
        ))
        .await
        .json();
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let encounters = app
        .get(&format!(
            "/fhir/default/Encounter?patient={id}&_summary=count"
        ))
        .await
        .json();
    assert_eq!(encounters["total"], synthetic::HEAVY_ENCOUNTERS);
    let referrals = app
        .get(&format!(
            "/fhir/default/ServiceRequest?patient={id}&category=http://snomed.info/sct|3457005&_summary=count"
        ))
        .await
        .json();
    assert_eq!(referrals["total"], synthetic::HEAVY_REFERRALS);
    // Hospital encounters found their patient by NHS number.
    let hospital = app
        .get(&format!(
            "/fhir/default/Encounter?patient={id}&class=http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP&_summary=count"
        ))
        .await
        .json();
    assert!(hospital["total"].as_u64().unwrap() > 0, "{hospital}");
    // Replaying a feed creates nothing.
    let replay = app
        .send(
            "POST",
            "/fhir/default",
            &[("content-type", "application/fhir+json")],
            Some(&std::fs::read(&files[0]).unwrap()),
        )
        .await;
    assert_eq!(replay.status, 200);
    assert!(!String::from_utf8_lossy(&replay.body).contains("201 Created"));

    // The NDJSON, with `carerecord import`, into a second system: every resource, with its id.
    app.add_system("second").await;
    let imported = carerecord::import::run(carerecord::import::ImportOptions {
        database_url: app.database_url.clone(),
        system: "second".into(),
        paths: vec![dir.path().join("ndjson")],
        // One file at a time: each type's references point at earlier files.
        jobs: 1,
        progress: false,
    })
    .unwrap();
    assert_eq!(imported.failed, 0, "{:?}", imported.reasons);
    assert_eq!(imported.created as usize, summary.resources);
    for (rtype, count) in &summary.by_type {
        let total = app
            .get(&format!("/fhir/second/{rtype}?_summary=count"))
            .await
            .json();
        assert_eq!(total["total"], *count, "{rtype}");
    }
}

async fn load_driver_scenarios_run_without_errors(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let token = app.token("feeder", "default", "loadgen", None, None);
    let base = app.base("default");
    let config = |scenario: Scenario| {
        let mut config = Config::new(scenario, &base, dir.path());
        config.token = Some(token.clone());
        config.concurrency = 2;
        config.duration = Duration::from_secs(20);
        config.requests = Some(if scenario == Scenario::Ingest {
            1_000
        } else {
            20
        });
        config.server_pid = Some(std::process::id());
        config
    };
    // Ingest first: it loads what the other scenarios use.
    let report = loadgen::run(&config(Scenario::Ingest)).await.unwrap();
    assert_eq!(report.errors, 0, "{}", report.summary());
    assert_eq!(report.requests as usize, bundle_files(dir.path()).len());
    assert!(report.resources_per_second.unwrap() > 0.0);
    for scenario in Scenario::ALL.into_iter().skip(1) {
        let report = loadgen::run(&config(scenario)).await.unwrap();
        assert_eq!(report.errors, 0, "{}", report.summary());
        assert_eq!(report.requests, 20, "{}", report.summary());
        assert!(report.latency.p50 > 0.0 && report.latency.max >= report.latency.p99);
        assert!(report.server_peak_rss_mb.unwrap() > 0.0);
        let line = report.to_json();
        assert_eq!(line["scenario"], scenario.as_str());
        assert_eq!(line["errors"], 0);
    }
    // Fixed rate: 20 requests due at 200/s take about 0.1 s.
    let mut fixed = config(Scenario::Read);
    fixed.rate = Some(200.0);
    let report = loadgen::run(&fixed).await.unwrap();
    assert_eq!((report.errors, report.requests), (0, 20));
    assert!(report.seconds >= 0.09, "{}", report.summary());
    // Loopback only.
    let mut remote = config(Scenario::Read);
    remote.base = "http://192.0.2.1:8080/fhir/default".into();
    assert!(loadgen::run(&remote).await.is_err());
}

on_both_backends!(
    generated_data_validates_and_loads,
    load_driver_scenarios_run_without_errors
);
