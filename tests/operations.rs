//! Capabilities, health, and the administration of local systems (HTTP and command line).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Command;

use common::TestApp;
use serde_json::{json, Value};

async fn metadata_describes_exactly_what_is_implemented(app: TestApp) {
    let reply = app.get("/fhir/default/metadata").await;
    assert_eq!(reply.status, 200);
    let cs = reply.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["status"], "active");
    assert_eq!(cs["kind"], "instance");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert!(cs["date"].as_str().is_some());
    assert_eq!(cs["implementation"]["url"], app.base("default"));
    assert!(cs["format"].as_array().unwrap().contains(&json!("json")));
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Patient",
            "Encounter",
            "ServiceRequest",
            "Organization",
            "Practitioner",
            "PractitionerRole",
            "Location",
            "Provenance",
            "AuditEvent",
            "StructureDefinition",
            "ValueSet",
            "CodeSystem",
            "SearchParameter",
            "OperationDefinition",
        ]
    );
    assert_eq!(resources[0]["operation"][0]["name"], "validate");
    assert_eq!(
        resources[9]["interaction"],
        json!([{"code": "read"}, {"code": "search-type"}])
    );
    let interactions: Vec<&str> = resources[0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        interactions,
        [
            "read",
            "vread",
            "update",
            "patch",
            "delete",
            "history-instance",
            "history-type",
            "create",
            "search-type"
        ]
    );
    assert_eq!(
        cs["rest"][0]["interaction"],
        json!([{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}, {"code": "search-system"}])
    );
    let patient_params: Vec<&str> = resources[0]["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for expected in [
        "identifier",
        "family",
        "birthdate",
        "_id",
        "_lastUpdated",
        "_tag",
    ] {
        assert!(patient_params.contains(&expected), "{expected}");
    }
    assert!(resources[0]["searchRevInclude"]
        .as_array()
        .unwrap()
        .contains(&json!("Encounter:subject")));
    assert_eq!(resources[0]["operation"][1]["name"], "everything");
    // Strict R4 shape: every element is one the CapabilityStatement definition has.
    let known = [
        "resourceType",
        "status",
        "date",
        "publisher",
        "kind",
        "software",
        "implementation",
        "fhirVersion",
        "format",
        "rest",
    ];
    for key in cs.as_object().unwrap().keys() {
        assert!(known.contains(&key.as_str()), "unexpected element {key}");
    }
    app.add_system("north").await;
    let north = app.get("/fhir/north/metadata").await.json();
    assert_eq!(north["implementation"]["url"], app.base("north"));
}

async fn metrics_are_served_as_prometheus_text(app: TestApp) {
    app.get("/fhir/default/metadata").await;
    app.get("/fhir/default/Patient/missing").await;
    let reply = app
        .send("GET", "/metrics", &[("authorization", "")], None)
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(reply.body).unwrap();
    assert!(
        text.contains("carerecord_http_requests_total{method=\"GET\",status=\"2xx\"}"),
        "{text}"
    );
    assert!(
        text.contains("carerecord_http_requests_total{method=\"GET\",status=\"4xx\"}"),
        "{text}"
    );
    assert!(
        text.contains("carerecord_http_request_duration_seconds_count"),
        "{text}"
    );
    assert!(
        text.contains("carerecord_db_connections{state=\"idle\"}"),
        "{text}"
    );
}

async fn health_checks_the_database(app: TestApp) {
    let reply = app.get("/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "pass");
    assert!(reply.header("x-request-id").is_some());
    let traced = app
        .send("GET", "/health", &[("x-request-id", "trace-123")], None)
        .await;
    assert_eq!(traced.header("x-request-id").as_deref(), Some("trace-123"));
}

async fn admin_api_manages_local_systems(app: TestApp) {
    let default = app.get("/admin/systems/default").await;
    assert_eq!(default.status, 200);
    assert_eq!(default.json()["fhirBase"], "/fhir/default");

    let created = app
        .send_json(
            "PUT",
            "/admin/systems/east-ics",
            &[],
            &json!({"name": "East ICS"}),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["name"], "East ICS");
    let renamed = app
        .send_json(
            "PUT",
            "/admin/systems/east-ics",
            &[],
            &json!({"name": "East of England ICS"}),
        )
        .await;
    assert_eq!(renamed.status, 200);
    let list: Value = app.get("/admin/systems").await.json();
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["default", "east-ics"]);
    assert_eq!(app.get("/fhir/east-ics/metadata").await.status, 200);

    app.get("/admin/systems/missing")
        .await
        .assert_outcome(404, "not-found");
    app.send_json("PUT", "/admin/systems/Bad_Slug", &[], &json!({"name": "x"}))
        .await
        .assert_outcome(400, "invalid");
    app.send_json("PUT", "/admin/systems/ok", &[], &json!({"name": ""}))
        .await
        .assert_outcome(400, "invalid");
    app.send_json(
        "PUT",
        "/admin/systems/ok",
        &[],
        &json!({"name": "x", "extra": 1}),
    )
    .await
    .assert_outcome(400, "invalid");
    app.send(
        "PUT",
        "/admin/systems/ok",
        &[("content-type", "application/json")],
        Some(b"{"),
    )
    .await
    .assert_outcome(400, "structure");
}

/// The `system add`/`system list`/`migrate` commands work on the same database the server uses.
async fn command_line_manages_local_systems(app: TestApp) {
    let binary = env!("CARGO_BIN_EXE_carerecord");
    let run = |args: &[&str]| {
        Command::new(binary)
            .args(args)
            .env("CARERECORD_DATABASE_URL", &app.database_url)
            .output()
            .unwrap()
    };
    let added = run(&["system", "add", "west", "--name", "West ICS"]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let again = run(&["system", "add", "west", "--name", "West ICS"]);
    assert!(!again.status.success());
    let bad = run(&["system", "add", "No Good", "--name", "x"]);
    assert!(!bad.status.success());
    let listed = run(&["system", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("default\t") && text.contains("west\tWest ICS"),
        "{text}"
    );
    assert!(run(&["migrate"]).status.success());
    // The running server sees the new system at once.
    assert_eq!(app.get("/fhir/west/metadata").await.status, 200);
}

/// A read's audit is kept before the read is answered: a server killed straight after (no
/// shutdown, on SQLite with the audit still in its inbox file) loses none, and the next process to
/// search the trail finds it.
async fn read_audits_survive_a_killed_server(app: TestApp) {
    let created = app
        .send_json(
            "POST",
            "/fhir/default/Patient",
            &[],
            &common::minimal("Patient", None),
        )
        .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_dir = tempfile::tempdir().unwrap();
    /// Kills the server however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Killed(
        Command::new(env!("CARGO_BIN_EXE_carerecord"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("CARERECORD_DATABASE_URL", &app.database_url)
            .env("CARERECORD_DATA_DIR", data_dir.path())
            .env("CARERECORD_JWT_SECRET", common::TEST_SECRET)
            .env("CARERECORD_JWT_ISSUER", common::TEST_ISSUER)
            .env("CARERECORD_JWT_AUDIENCE", common::TEST_AUDIENCE)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let other = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the second server did not start");
    let reader = app.token("clinician", "default", "killed-reader", None, None);
    let bearer = format!("Bearer {reader}");
    let read = app
        .send(
            "GET",
            &format!("{other}/fhir/default/Patient/{id}"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(read.status, 200);
    drop(server);

    let trail = app
        .get("/fhir/default/AuditEvent?agent=killed-reader")
        .await
        .json();
    let events = trail["entry"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{trail}");
    assert_eq!(events[0]["resource"]["action"], "R");
    assert_eq!(
        events[0]["resource"]["entity"][0]["what"]["reference"],
        format!("Patient/{id}/_history/1")
    );
}

on_both_backends!(
    metrics_are_served_as_prometheus_text,
    metadata_describes_exactly_what_is_implemented,
    health_checks_the_database,
    admin_api_manages_local_systems,
    command_line_manages_local_systems,
    read_audits_survive_a_killed_server,
);
