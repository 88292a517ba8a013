//! The REST interactions of the foundation, on SQLite and PostgreSQL: create, read, vread, update,
//! delete, history, conditional headers, Prefer, idempotent updates and faithful round trips.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{fixture, minimal, TestApp};
use serde_json::{json, Value};

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}], "active": true})
}

async fn create_answers_201_with_location_etag_and_server_id(app: TestApp) {
    let mut body = patient("Smith");
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"versionId": "42", "lastUpdated": "2000-01-01T00:00:00Z"});
    let reply = app.post("/fhir/default/Patient", &body).await;
    assert_eq!(reply.status, 201);
    let created = reply.json();
    let id = created["id"].as_str().unwrap();
    assert_ne!(id, "client-chosen", "the server assigns the id on create");
    assert_eq!(created["meta"]["versionId"], "1");
    assert_ne!(created["meta"]["lastUpdated"], "2000-01-01T00:00:00Z");
    assert_eq!(reply.header("etag").as_deref(), Some("W/\"1\""));
    assert!(reply.header("last-modified").is_some());
    assert_eq!(
        reply.header("location").unwrap(),
        format!("{}/Patient/{id}/_history/1", app.base("default"))
    );
    assert_eq!(
        reply.header("content-type").unwrap(),
        "application/fhir+json; charset=utf-8"
    );

    let read = app.get(&format!("/fhir/default/Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), created);
    assert_eq!(read.header("etag").as_deref(), Some("W/\"1\""));
}

async fn every_supported_type_can_be_created_and_read(app: TestApp) {
    for rtype in [
        "Patient",
        "Encounter",
        "ServiceRequest",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
    ] {
        let patient = app.create("default", &patient("Subject")).await;
        let id = app.create("default", &minimal(rtype, Some(&patient))).await;
        let read = app.get(&format!("/fhir/default/{rtype}/{id}")).await;
        assert_eq!(read.status, 200, "{rtype}");
        assert_eq!(read.json()["resourceType"], rtype);
    }
}

async fn update_creates_versions_and_vread_reads_each(app: TestApp) {
    let id = app.create("default", &patient("Jones")).await;
    let path = format!("/fhir/default/Patient/{id}");
    let mut v2 = patient("Jones-Smith");
    v2["id"] = json!(id);
    let reply = app.put(&path, &v2).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("etag").as_deref(), Some("W/\"2\""));
    assert_eq!(reply.json()["meta"]["versionId"], "2");

    let first = app.get(&format!("{path}/_history/1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["name"][0]["family"], "Jones");
    assert_eq!(first.header("etag").as_deref(), Some("W/\"1\""));
    let second = app.get(&format!("{path}/_history/2")).await;
    assert_eq!(second.json()["name"][0]["family"], "Jones-Smith");
    app.get(&format!("{path}/_history/3"))
        .await
        .assert_outcome(404, "not-found");
    app.get(&format!("{path}/_history/abc"))
        .await
        .assert_outcome(404, "not-found");
}

async fn update_as_create_uses_the_client_id(app: TestApp) {
    let mut body = patient("Patel");
    body["id"] = json!("gp-feed-123");
    let reply = app.put("/fhir/default/Patient/gp-feed-123", &body).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json()["id"], "gp-feed-123");
    assert_eq!(reply.header("etag").as_deref(), Some("W/\"1\""));
    assert!(reply
        .header("location")
        .unwrap()
        .ends_with("/Patient/gp-feed-123/_history/1"));
}

async fn resending_the_same_content_creates_no_version(app: TestApp) {
    let mut body = patient("Idem");
    body["id"] = json!("idem");
    body["meta"] = json!({"tag": [{"system": "http://example.org/tags", "code": "feed"}]});
    let path = "/fhir/default/Patient/idem";
    assert_eq!(app.put(path, &body).await.status, 201);
    // The same content again, even with a stale client versionId/lastUpdated, is a no-op.
    body["meta"]["versionId"] = json!("7");
    body["meta"]["lastUpdated"] = json!("2001-01-01T00:00:00Z");
    for _ in 0..3 {
        let again = app.put(path, &body).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.header("etag").as_deref(), Some("W/\"1\""));
    }
    let history = app.get(&format!("{path}/_history")).await.json();
    assert_eq!(history["total"], 1);
    // A real change (here only the tag) makes version 2.
    body["meta"]["tag"][0]["code"] = json!("other");
    let changed = app.put(path, &body).await;
    assert_eq!(changed.header("etag").as_deref(), Some("W/\"2\""));
}

async fn delete_then_read_is_gone_and_deleting_twice_is_fine(app: TestApp) {
    let id = app.create("default", &patient("Gone")).await;
    let path = format!("/fhir/default/Patient/{id}");
    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.header("etag").as_deref(), Some("W/\"2\""));
    app.get(&path).await.assert_outcome(410, "deleted");
    app.get(&format!("{path}/_history/2"))
        .await
        .assert_outcome(410, "deleted");
    assert_eq!(app.get(&format!("{path}/_history/1")).await.status, 200);
    let again = app.delete(&path).await;
    assert_eq!(again.status, 204);
    assert_eq!(again.header("etag").as_deref(), Some("W/\"2\""));
    app.delete("/fhir/default/Patient/never-existed")
        .await
        .assert_outcome(404, "not-found");
    // Update after delete brings the resource back as a new version.
    let mut body = patient("Back");
    body["id"] = json!(id);
    let back = app.put(&path, &body).await;
    assert_eq!(back.status, 201);
    assert_eq!(back.header("etag").as_deref(), Some("W/\"3\""));
}

async fn if_match_guards_update_and_delete(app: TestApp) {
    let id = app.create("default", &patient("Match")).await;
    let path = format!("/fhir/default/Patient/{id}");
    let mut body = patient("Match-2");
    body["id"] = json!(id);
    let stale = app
        .send_json("PUT", &path, &[("if-match", "W/\"2\"")], &body)
        .await;
    let issue = stale.assert_outcome(412, "conflict");
    assert_eq!(issue["details"]["coding"][0]["code"], "PRECONDITION_FAILED");
    let ok = app
        .send_json("PUT", &path, &[("if-match", "W/\"1\"")], &body)
        .await;
    assert_eq!(ok.status, 200);
    app.send("DELETE", &path, &[("if-match", "W/\"1\"")], None)
        .await
        .assert_outcome(412, "conflict");
    let bad = app
        .send("DELETE", &path, &[("if-match", "two")], None)
        .await;
    bad.assert_outcome(400, "invalid");
    assert_eq!(
        app.send("DELETE", &path, &[("if-match", "W/\"2\"")], None)
            .await
            .status,
        204
    );
    let mut missing = patient("Nobody");
    missing["id"] = json!("nobody");
    app.send_json(
        "PUT",
        "/fhir/default/Patient/nobody",
        &[("if-match", "W/\"1\"")],
        &missing,
    )
    .await
    .assert_outcome(404, "not-found");
}

async fn conditional_read_answers_304(app: TestApp) {
    let id = app.create("default", &patient("Cache")).await;
    let path = format!("/fhir/default/Patient/{id}");
    let read = app.get(&path).await;
    let last_modified = read.header("last-modified").unwrap();

    let same = app
        .send("GET", &path, &[("if-none-match", "W/\"1\"")], None)
        .await;
    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());
    let any = app
        .send("GET", &path, &[("if-none-match", "*")], None)
        .await;
    assert_eq!(any.status, 304);
    let other = app
        .send("GET", &path, &[("if-none-match", "W/\"9\"")], None)
        .await;
    assert_eq!(other.status, 200);

    let unchanged = app
        .send("GET", &path, &[("if-modified-since", &last_modified)], None)
        .await;
    assert_eq!(unchanged.status, 304);
    let old = app
        .send(
            "GET",
            &path,
            &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
            None,
        )
        .await;
    assert_eq!(old.status, 200);
}

async fn prefer_return_shapes_write_responses(app: TestApp) {
    let minimal = app
        .send_json(
            "POST",
            "/fhir/default/Patient",
            &[("prefer", "return=minimal")],
            &patient("Min"),
        )
        .await;
    assert_eq!(minimal.status, 201);
    assert!(minimal.body.is_empty());
    assert!(minimal.header("location").is_some());

    let outcome = app
        .send_json(
            "POST",
            "/fhir/default/Patient",
            &[("prefer", "return=OperationOutcome")],
            &patient("Oo"),
        )
        .await;
    assert_eq!(outcome.status, 201);
    let body = outcome.json();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "information");

    let full = app
        .send_json(
            "POST",
            "/fhir/default/Patient",
            &[("prefer", "return=representation")],
            &patient("Full"),
        )
        .await;
    assert_eq!(full.json()["name"][0]["family"], "Full");

    let id = app.create("default", &patient("Del")).await;
    let deleted = app
        .send(
            "DELETE",
            &format!("/fhir/default/Patient/{id}"),
            &[("prefer", "return=OperationOutcome")],
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json()["resourceType"], "OperationOutcome");
}

async fn history_lists_versions_newest_first_at_every_level(app: TestApp) {
    let a = app.create("default", &patient("A")).await;
    let mut a2 = patient("A2");
    a2["id"] = json!(a);
    app.put(&format!("/fhir/default/Patient/{a}"), &a2).await;
    let e = app.create("default", &minimal("Encounter", None)).await;
    app.delete(&format!("/fhir/default/Patient/{a}")).await;

    let instance = app
        .get(&format!("/fhir/default/Patient/{a}/_history"))
        .await
        .json();
    assert_eq!(instance["type"], "history");
    assert_eq!(instance["total"], 3);
    let methods: Vec<&str> = instance["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["DELETE", "PUT", "POST"]);
    assert!(instance["entry"][0].get("resource").is_none());
    assert_eq!(instance["entry"][1]["resource"]["meta"]["versionId"], "2");
    assert_eq!(instance["entry"][2]["response"]["status"], "201 Created");

    let by_type = app.get("/fhir/default/Patient/_history").await.json();
    assert_eq!(by_type["entry"].as_array().unwrap().len(), 3);
    let system = app.get("/fhir/default/_history").await.json();
    let entries = system["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["request"]["url"], format!("Patient/{a}"));
    assert_eq!(entries[1]["request"]["url"], "Encounter");
    assert_eq!(
        entries[1]["fullUrl"],
        format!("{}/Encounter/{e}", app.base("default"))
    );

    app.get("/fhir/default/Patient/missing/_history")
        .await
        .assert_outcome(404, "not-found");
}

async fn history_pages_with_count_and_filters_with_since(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create("default", &patient(&format!("P{i}"))).await);
    }
    // Walk the pages: every version exactly once, newest first.
    let mut seen = Vec::new();
    let mut next = Some(format!("{}/Patient/_history?_count=3", app.base("default")));
    let mut pages = 0;
    while let Some(url) = next {
        let page = app.get(&url).await.json();
        pages += 1;
        for entry in page["entry"].as_array().into_iter().flatten() {
            seen.push(entry["resource"]["id"].as_str().unwrap().to_owned());
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        // A write between pages does not disturb the walk.
        if pages == 1 {
            app.create("default", &patient("Late")).await;
        }
    }
    assert_eq!(pages, 3);
    ids.reverse();
    assert_eq!(seen, ids);

    let since = app
        .get(&format!("/fhir/default/Patient/{}", ids[0]))
        .await
        .json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    let recent = app
        .get(&format!(
            "/fhir/default/Patient/_history?_since={}",
            since.replace('+', "%2B")
        ))
        .await
        .json();
    let recent_ids: Vec<&str> = recent["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(recent_ids.contains(&ids[0].as_str()));
    assert!(!recent_ids.contains(&ids[6].as_str()) || recent_ids.len() == 8);

    app.get("/fhir/default/_history?_count=0")
        .await
        .assert_outcome(400, "invalid");
    app.get("/fhir/default/_history?_count=5000")
        .await
        .assert_outcome(400, "invalid");
    app.get("/fhir/default/_history?_since=yesterday")
        .await
        .assert_outcome(400, "invalid");
    let unknown = app.get("/fhir/default/_history?_sort=x").await;
    let issue = unknown.assert_outcome(400, "invalid");
    assert_eq!(issue["expression"][0], "_sort");
    let lenient = app
        .send(
            "GET",
            "/fhir/default/_history?_sort=x",
            &[("prefer", "handling=lenient")],
            None,
        )
        .await;
    assert_eq!(lenient.status, 200);
}

/// The resource without `meta.versionId`/`meta.lastUpdated` (and without `meta` if that empties it).
fn without_server_meta(mut resource: Value) -> Value {
    let object = resource.as_object_mut().unwrap();
    if let Some(meta) = object.get_mut("meta").and_then(Value::as_object_mut) {
        meta.shift_remove("versionId");
        meta.shift_remove("lastUpdated");
        if meta.is_empty() {
            object.shift_remove("meta");
        }
    }
    resource
}

/// Stored = sent + id + meta: nothing dropped, re-typed or reordered.
async fn examples_round_trip_unchanged(app: TestApp) {
    for name in [
        "UKCore-Patient-RichardSmith-Example",
        "UKCore-Encounter-InpatientEncounter-Example",
        "UKCore-ServiceRequest-ColonoscopyRequest-Example",
        "UKCore-ServiceRequest-CTChestScan-Example",
        "UKCore-ServiceRequest-ECG-Example",
        "UKCore-ServiceRequest-HipReplacement-Example",
    ]
    .map(|name| format!("ukcore/{name}"))
    .into_iter()
    .chain([
        "r4/patient-example-ra4".to_owned(),
        "r4/json-good".to_owned(),
    ]) {
        let original = fixture(&format!("tests/fixtures/{name}.json"));
        let rtype = original["resourceType"].as_str().unwrap();
        let id = original["id"].as_str().unwrap();
        let path = format!("/fhir/default/{rtype}/{id}");
        // Lenient: the examples refer to resources that are not loaded here.
        let reply = app
            .send_json("PUT", &path, &[("prefer", "handling=lenient")], &original)
            .await;
        assert_eq!(
            reply.status,
            201,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let read = app.get(&path).await;
        let text = String::from_utf8(read.body.clone()).unwrap();
        let stored: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(stored["meta"]["versionId"], "1");
        assert_ne!(
            stored["meta"]["lastUpdated"],
            original["meta"]["lastUpdated"]
        );
        let (stored, original) = (without_server_meta(stored), without_server_meta(original));
        assert_eq!(stored, original, "{name} changed in storage");
        // Element order is the client's (after resourceType, id, meta).
        let order = |v: &Value| -> Vec<String> {
            v.as_object()
                .unwrap()
                .keys()
                .filter(|k| !matches!(k.as_str(), "resourceType" | "id" | "meta"))
                .cloned()
                .collect()
        };
        assert_eq!(order(&stored), order(&original), "{name} reordered");
    }
}

/// Writers racing on one resource all succeed and leave consecutive versions, none lost.
async fn concurrent_updates_make_consecutive_versions(app: TestApp) {
    let writers = 12;
    let replies = futures_util::future::join_all((0..writers).map(|i| {
        let body = json!({"resourceType": "Patient", "id": "raced", "birthDate": format!("19{:02}-01-01", 10 + i)});
        let app = &app;
        async move { app.put("/fhir/default/Patient/raced", &body).await }
    }))
    .await;
    let mut created = 0;
    for reply in &replies {
        match reply.status.as_u16() {
            201 => created += 1,
            200 => {}
            other => panic!(
                "unexpected {other}: {}",
                String::from_utf8_lossy(&reply.body)
            ),
        }
    }
    assert_eq!(created, 1, "exactly one writer creates the resource");
    let history = app
        .get("/fhir/default/Patient/raced/_history?_count=100")
        .await
        .json();
    assert_eq!(history["total"], writers);
    let mut versions: Vec<u64> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    versions.reverse();
    assert_eq!(versions, (1..=writers).collect::<Vec<u64>>());
}

on_both_backends!(
    concurrent_updates_make_consecutive_versions,
    create_answers_201_with_location_etag_and_server_id,
    every_supported_type_can_be_created_and_read,
    update_creates_versions_and_vread_reads_each,
    update_as_create_uses_the_client_id,
    resending_the_same_content_creates_no_version,
    delete_then_read_is_gone_and_deleting_twice_is_fine,
    if_match_guards_update_and_delete,
    conditional_read_answers_304,
    prefer_return_shapes_write_responses,
    history_lists_versions_newest_first_at_every_level,
    history_pages_with_count_and_filters_with_since,
    examples_round_trip_unchanged,
);
