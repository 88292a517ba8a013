//! Transactions, batches, conditional interactions and PATCH, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{fixture, minimal, TestApp};
use serde_json::{json, Value};

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
const CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rtype}})
}

fn patient(nhs: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}]})
}

fn encounter(subject: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "finished", "class": {"system": CLASS, "code": "AMB"}, "subject": {"reference": subject}})
}

/// Each entry's `response.status`, in order.
fn statuses(response: &Value) -> Vec<&str> {
    response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect()
}

/// Every resource id of a type in the system.
async fn ids(app: &TestApp, rtype: &str) -> Vec<String> {
    let found = app
        .get(&format!("/fhir/default/{rtype}?_count=1000"))
        .await
        .json();
    found["entry"].as_array().map_or(Vec::new(), |entries| {
        entries
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect()
    })
}

async fn history_size(app: &TestApp) -> usize {
    app.get("/fhir/default/_history?_count=1000").await.json()["entry"]
        .as_array()
        .map_or(0, Vec::len)
}

async fn urn_uuid_references_are_rewritten_everywhere(app: TestApp) {
    let org = "urn:uuid:0b1f6c2e-1111-4a6e-9d1d-0d3b7f3f1a01";
    let pat = "urn:uuid:0b1f6c2e-2222-4a6e-9d1d-0d3b7f3f1a02";
    let mut p = patient("9434765919");
    p["generalPractitioner"] = json!([{"reference": org}]);
    // Nested: inside an extension, and inside a contained resource.
    p["extension"] = json!([{"url": "http://example.org/registered-with", "valueReference": {"reference": org}}]);
    let mut e = encounter(pat);
    e["contained"] = json!([{"resourceType": "Location", "id": "room", "name": "Room 1", "managingOrganization": {"reference": org}}]);
    e["location"] = json!([{"location": {"reference": "#room"}}]);
    // The Encounter comes first: references to later entries resolve too.
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "transaction",
                vec![
                    post("urn:uuid:0b1f6c2e-3333-4a6e-9d1d-0d3b7f3f1a03", e),
                    post(pat, p),
                    post(
                        org,
                        json!({"resourceType": "Organization", "name": "Practice"}),
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let response = reply.json();
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for entry in entries {
        assert_eq!(entry["response"]["status"], "201 Created");
        assert!(entry["response"]["etag"]
            .as_str()
            .unwrap()
            .starts_with("W/\"1\""));
        assert!(entry["response"]["lastModified"].is_string());
    }
    let location = |i: usize| {
        entries[i]["response"]["location"]
            .as_str()
            .unwrap()
            .split("/_history")
            .next()
            .unwrap()
            .to_owned()
    };
    let (enc_ref, pat_ref, org_ref) = (location(0), location(1), location(2));
    let stored_patient = app.get(&format!("/fhir/default/{pat_ref}")).await.json();
    assert_eq!(
        stored_patient["generalPractitioner"][0]["reference"],
        org_ref.as_str()
    );
    assert_eq!(
        stored_patient["extension"][0]["valueReference"]["reference"],
        org_ref.as_str()
    );
    let stored_encounter = app.get(&format!("/fhir/default/{enc_ref}")).await.json();
    assert_eq!(stored_encounter["subject"]["reference"], pat_ref.as_str());
    assert_eq!(
        stored_encounter["contained"][0]["managingOrganization"]["reference"],
        org_ref.as_str()
    );
    // Search sees the rewritten references.
    let by_patient = app
        .get(&format!("/fhir/default/Encounter?subject={pat_ref}"))
        .await
        .json();
    assert_eq!(by_patient["total"], 1);
}

async fn conditional_references_resolve_to_exactly_one(app: TestApp) {
    let pid = app.create("default", &patient("9434765919")).await;
    let conditional = format!("Patient?identifier={NHS}|9434765919");
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "transaction",
                vec![post(
                    "urn:uuid:0b1f6c2e-4444-4a6e-9d1d-0d3b7f3f1a04",
                    encounter(&conditional),
                )],
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let location = reply.json()["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = app.get(&format!("/fhir/default/{location}")).await.json();
    assert_eq!(stored["subject"]["reference"], format!("Patient/{pid}"));
    // No match: the whole transaction fails, naming the entry.
    let before = history_size(&app).await;
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "transaction",
                vec![
                    post(
                        "urn:uuid:0b1f6c2e-5555-4a6e-9d1d-0d3b7f3f1a05",
                        json!({"resourceType": "Organization", "name": "Kept?"}),
                    ),
                    post(
                        "urn:uuid:0b1f6c2e-6666-4a6e-9d1d-0d3b7f3f1a06",
                        encounter(&format!("Patient?identifier={NHS}|9000000009")),
                    ),
                ],
            ),
        )
        .await;
    let issue = reply.assert_outcome(422, "not-found");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[1]"),
        "{issue}"
    );
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("urn:uuid:0b1f6c2e-6666"),
        "{issue}"
    );
    assert_eq!(history_size(&app).await, before);
    // Several matches: 412.
    app.create("default", &json!({"resourceType": "Organization", "name": "Twin", "identifier": [{"system": "http://ods", "value": "X1"}]})).await;
    app.create("default", &json!({"resourceType": "Organization", "name": "Twin", "identifier": [{"system": "http://ods", "value": "X1"}]})).await;
    let mut p = patient("9000000009");
    p["managingOrganization"] = json!({"reference": "Organization?identifier=http://ods|X1"});
    app.post(
        "/fhir/default",
        &bundle(
            "transaction",
            vec![post("urn:uuid:0b1f6c2e-7777-4a6e-9d1d-0d3b7f3f1a07", p)],
        ),
    )
    .await
    .assert_outcome(412, "conflict");
}

/// Many conditional creates and references in one transaction (looked up together, a type at a
/// time) each resolve as they would alone: a match is used, no match creates, a reference to a
/// system|code that differs only in its system finds nothing, and two matches refuse the bundle.
async fn many_conditions_in_one_transaction_resolve_each_on_its_own(app: TestApp) {
    const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
    let org = |code: &str| json!({"resourceType": "Organization", "name": format!("Org {code}"), "identifier": [{"system": ODS, "value": code}]});
    let conditional_post = |n: u32, resource: Value, condition: String| {
        let mut entry = post(
            &format!("urn:uuid:0b1f6c2e-{n:04}-4a6e-9d1d-0d3b7f3f1a00"),
            resource,
        );
        entry["request"]["ifNoneExist"] = json!(condition);
        entry
    };
    let existing_org = app.create("default", &org("A1")).await;
    let provider = app.create("default", &org("A2")).await;
    let first = app.create("default", &patient("9434765919")).await;
    let second = app.create("default", &patient("9000000009")).await;
    let mut seen = encounter(&format!("Patient?identifier={NHS}|9000000009"));
    seen["serviceProvider"] = json!({"reference": format!("Organization?identifier={ODS}|A2")});
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "transaction",
                vec![
                    conditional_post(1, org("A1"), format!("identifier={ODS}|A1")),
                    conditional_post(2, org("A3"), format!("identifier={ODS}|A3")),
                    conditional_post(3, org("A4"), "identifier=http://other|A1".to_owned()),
                    post(
                        "urn:uuid:0b1f6c2e-0004-4a6e-9d1d-0d3b7f3f1a00",
                        encounter(&format!("Patient?identifier={NHS}|9434765919")),
                    ),
                    post("urn:uuid:0b1f6c2e-0005-4a6e-9d1d-0d3b7f3f1a00", seen),
                ],
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    let statuses = statuses(&body);
    assert_eq!(
        statuses,
        [
            "200 OK",
            "201 Created",
            "201 Created",
            "201 Created",
            "201 Created"
        ]
    );
    assert!(body["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .starts_with(&format!("Organization/{existing_org}/")));
    assert_eq!(ids(&app, "Organization").await.len(), 4);
    let stored = |i: usize| {
        let location = body["entry"][i]["response"]["location"]
            .as_str()
            .unwrap()
            .to_owned();
        let app = &app;
        async move { app.get(&format!("/fhir/default/{location}")).await.json() }
    };
    assert_eq!(
        stored(3).await["subject"]["reference"],
        format!("Patient/{first}")
    );
    let fourth = stored(4).await;
    assert_eq!(fourth["subject"]["reference"], format!("Patient/{second}"));
    assert_eq!(
        fourth["serviceProvider"]["reference"],
        format!("Organization/{provider}")
    );
    // A condition two resources meet refuses the whole transaction, whatever else it holds.
    app.create("default", &org("A1")).await;
    let before = history_size(&app).await;
    app.post(
        "/fhir/default",
        &bundle(
            "transaction",
            vec![
                conditional_post(6, org("A5"), format!("identifier={ODS}|A5")),
                conditional_post(7, org("A1"), format!("identifier={ODS}|A1")),
            ],
        ),
    )
    .await
    .assert_outcome(412, "conflict");
    assert_eq!(history_size(&app).await, before);
}

async fn entries_run_in_fhir_order(app: TestApp) {
    // A DELETE listed last still runs first: the POST of the same NHS number then succeeds.
    let old = app.create("default", &patient("9434765919")).await;
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "transaction",
                vec![
                    json!({"request": {"method": "GET", "url": format!("Patient/{old}")}}),
                    post(
                        "urn:uuid:0b1f6c2e-8888-4a6e-9d1d-0d3b7f3f1a08",
                        patient("9434765919"),
                    ),
                    json!({"request": {"method": "DELETE", "url": format!("Patient/{old}")}}),
                ],
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let entries = reply.json()["entry"].as_array().unwrap().clone();
    // Responses come back in request order; the GET ran after the DELETE.
    assert_eq!(entries[1]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["status"], "204 No Content");
    assert_eq!(entries[0]["response"]["status"], "410 Gone", "{entries:?}");
}

async fn a_failing_entry_rolls_back_the_whole_transaction(app: TestApp) {
    let before_history = history_size(&app).await;
    let mut entries: Vec<Value> = (0..10)
        .map(|i| {
            post(
                &format!("urn:uuid:0b1f6c2e-9999-4a6e-9d1d-0d3b7f3f1a{i:02}"),
                json!({"resourceType": "Organization", "name": format!("Org {i}")}),
            )
        })
        .collect();
    // The 9th entry is invalid.
    entries[8]["resource"]["name"] = json!("");
    let reply = app
        .post("/fhir/default", &bundle("transaction", entries))
        .await;
    let issue = reply.assert_outcome(400, "structure");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[8]"),
        "{issue}"
    );
    assert_eq!(issue["expression"][0], "Bundle.entry[8].resource.name");
    assert_eq!(
        history_size(&app).await,
        before_history,
        "nothing may be stored"
    );
    assert!(ids(&app, "Organization").await.is_empty());
    // A failing write (If-Match mismatch) in the middle also rolls back the writes before it.
    let id = app
        .create(
            "default",
            &json!({"resourceType": "Organization", "name": "Versioned"}),
        )
        .await;
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "transaction",
                vec![
                    post("urn:uuid:0b1f6c2e-aaaa-4a6e-9d1d-0d3b7f3f1a0a", json!({"resourceType": "Organization", "name": "New"})),
                    json!({"resource": {"resourceType": "Organization", "id": id, "name": "Changed"}, "request": {"method": "PUT", "url": format!("Organization/{id}"), "ifMatch": "W/\"7\""}}),
                ],
            ),
        )
        .await;
    reply.assert_outcome(412, "conflict");
    assert_eq!(ids(&app, "Organization").await, vec![id.clone()]);
}

async fn batch_entries_succeed_or_fail_on_their_own(app: TestApp) {
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "batch",
                vec![
                    post(
                        "urn:uuid:0b1f6c2e-bbbb-4a6e-9d1d-0d3b7f3f1a0b",
                        json!({"resourceType": "Organization", "name": "Good"}),
                    ),
                    post(
                        "urn:uuid:0b1f6c2e-cccc-4a6e-9d1d-0d3b7f3f1a0c",
                        patient("9434765918"),
                    ),
                    json!({"request": {"method": "GET", "url": "Patient/missing"}}),
                    post(
                        "urn:uuid:0b1f6c2e-dddd-4a6e-9d1d-0d3b7f3f1a0d",
                        patient("9434765919"),
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(reply.status, 200);
    let response = reply.json();
    assert_eq!(response["type"], "batch-response");
    let statuses = statuses(&response);
    assert_eq!(
        statuses,
        [
            "201 Created",
            "422 Unprocessable Entity",
            "404 Not Found",
            "201 Created"
        ]
    );
    let outcome = &response["entry"][1]["response"]["outcome"];
    assert_eq!(
        outcome["issue"][0]["details"]["coding"][0]["code"], "INVALID_NHS_NUMBER",
        "{outcome}"
    );
    assert_eq!(ids(&app, "Organization").await.len(), 1);
    assert_eq!(ids(&app, "Patient").await.len(), 1);
}

async fn conditional_create_update_and_delete(app: TestApp) {
    let condition = format!("identifier={NHS}|9434765919");
    // Create: no match → 201; one match → 200 with it.
    let first = app
        .send_json(
            "POST",
            "/fhir/default/Patient",
            &[("if-none-exist", &condition)],
            &patient("9434765919"),
        )
        .await;
    assert_eq!(first.status, 201);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let second = app
        .send_json(
            "POST",
            "/fhir/default/Patient",
            &[("if-none-exist", &condition)],
            &patient("9434765919"),
        )
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["id"], id.as_str());
    // Several matches → 412.
    for name in ["Dup", "Dup"] {
        app.create(
            "default",
            &json!({"resourceType": "Organization", "name": name}),
        )
        .await;
    }
    app.send_json(
        "POST",
        "/fhir/default/Organization",
        &[("if-none-exist", "name=Dup")],
        &json!({"resourceType": "Organization", "name": "Dup"}),
    )
    .await
    .assert_outcome(412, "conflict");
    // Update: one match → updates it.
    let mut body = patient("9434765919");
    body["active"] = json!(true);
    let updated = app
        .put(&format!("/fhir/default/Patient?{condition}"), &body)
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.json()["id"], id.as_str());
    assert_eq!(updated.header("etag").as_deref(), Some("W/\"2\""));
    // No match → creates.
    let created = app
        .put(
            &format!("/fhir/default/Patient?identifier={NHS}|9000000009"),
            &patient("9000000009"),
        )
        .await;
    assert_eq!(created.status, 201);
    app.put(
        "/fhir/default/Organization?name=Dup",
        &json!({"resourceType": "Organization", "name": "Dup"}),
    )
    .await
    .assert_outcome(412, "conflict");
    // Delete: every match goes; no match is fine.
    let gone = app
        .send("DELETE", "/fhir/default/Organization?name=Dup", &[], None)
        .await;
    assert_eq!(gone.status, 204);
    assert!(ids(&app, "Organization").await.is_empty());
    assert_eq!(
        app.send(
            "DELETE",
            "/fhir/default/Organization?name=Nobody",
            &[],
            None
        )
        .await
        .status,
        204
    );
    app.send("DELETE", "/fhir/default/Organization?colour=red", &[], None)
        .await
        .assert_outcome(400, "invalid");
}

async fn concurrent_conditional_creates_make_one_resource(app: TestApp) {
    // An Organization by ODS code: no unique key in the database guards it, only the condition.
    let replies = futures_util::future::join_all((0..20).map(|_| {
        let app = &app;
        async move {
            app.send_json(
                "POST",
                "/fhir/default/Organization",
                &[("if-none-exist", "identifier=https://fhir.nhs.uk/Id/ods-organization-code|B82005")],
                &json!({"resourceType": "Organization", "name": "Practice", "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "B82005"}]}),
            )
            .await
        }
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let found = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        (created, found),
        (1, 19),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(ids(&app, "Organization").await.len(), 1);
    // And as transactions, keyed by NHS number.
    let replies = futures_util::future::join_all((0..20).map(|_| {
        let app = &app;
        async move {
            app.post(
                "/fhir/default",
                &fixture("examples/gp-referral-transaction.json"),
            )
            .await
        }
    }))
    .await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(ids(&app, "Patient").await.len(), 1);
    assert_eq!(ids(&app, "ServiceRequest").await.len(), 1);
}

async fn replaying_a_transaction_changes_nothing(app: TestApp) {
    let gp = fixture("examples/gp-referral-transaction.json");
    let mut locations = Vec::new();
    for round in 0..3 {
        let reply = app.post("/fhir/default", &gp).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let response = reply.json();
        let expected = if round == 0 { "201 Created" } else { "200 OK" };
        let these: Vec<String> = response["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["response"]["status"], expected);
                e["response"]["location"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(
            these.iter().all(|l| l.ends_with("/_history/1")),
            "{these:?}"
        );
        locations.push(these);
    }
    assert_eq!(locations[0], locations[2]);
    // The hospital feed joins the same patient; replaying it (a conditional update) changes nothing.
    for _ in 0..2 {
        let reply = app
            .post(
                "/fhir/default",
                &fixture("examples/hospital-discharge-transaction.json"),
            )
            .await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(reply.json()["entry"][2]["response"]["location"]
            .as_str()
            .unwrap()
            .ends_with("/_history/1"));
    }
    let patients = ids(&app, "Patient").await;
    assert_eq!(patients.len(), 1);
    let everything = app
        .get(&format!(
            "/fhir/default/Patient/{}/$everything",
            patients[0]
        ))
        .await
        .json();
    let types: Vec<&str> = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "Encounter").count(),
        2,
        "{types:?}"
    );
    assert!(
        types.contains(&"ServiceRequest") && types.contains(&"Location"),
        "{types:?}"
    );
}

async fn patch_applies_json_patch_and_validates_the_result(app: TestApp) {
    let id = app.create("default", &patient("9434765919")).await;
    let path = format!("/fhir/default/Patient/{id}");
    let send_patch = |ops: Value, headers: Vec<(&'static str, &'static str)>| {
        let app = &app;
        let path = path.clone();
        async move {
            let mut all = vec![("content-type", "application/json-patch+json")];
            all.extend(headers);
            app.send("PATCH", &path, &all, Some(ops.to_string().as_bytes()))
                .await
        }
    };
    let ok = send_patch(json!([{"op": "add", "path": "/gender", "value": "female"}, {"op": "add", "path": "/name", "value": [{"family": "Smith"}]}]), vec![]).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["gender"], "female");
    assert_eq!(ok.header("etag").as_deref(), Some("W/\"2\""));
    let history = app.get(&format!("{path}/_history")).await.json();
    assert_eq!(history["entry"][0]["request"]["method"], "PATCH");
    // A failing test operation → 422, nothing changes.
    send_patch(json!([{"op": "test", "path": "/gender", "value": "male"}, {"op": "replace", "path": "/gender", "value": "other"}]), vec![])
        .await
        .assert_outcome(422, "processing");
    // A result that is not valid → 422.
    send_patch(
        json!([{"op": "replace", "path": "/gender", "value": "F"}]),
        vec![],
    )
    .await
    .assert_outcome(422, "code-invalid");
    send_patch(
        json!([{"op": "replace", "path": "/identifier/0/value", "value": "9434765918"}]),
        vec![],
    )
    .await
    .assert_outcome(422, "value");
    // If-Match guards it.
    send_patch(
        json!([{"op": "remove", "path": "/gender"}]),
        vec![("if-match", "W/\"1\"")],
    )
    .await
    .assert_outcome(412, "conflict");
    assert_eq!(app.get(&path).await.json()["meta"]["versionId"], "2");
    // Not a patch document / wrong media type.
    send_patch(json!({"op": "add"}), vec![])
        .await
        .assert_outcome(422, "processing");
    app.send(
        "PATCH",
        &path,
        &[("content-type", "application/fhir+json")],
        Some(b"[]"),
    )
    .await
    .assert_outcome(415, "not-supported");
    app.send(
        "PATCH",
        "/fhir/default/Patient/nobody",
        &[("content-type", "application/json-patch+json")],
        Some(b"[]"),
    )
    .await
    .assert_outcome(404, "not-found");
    // Conditional PATCH, and PATCH inside a transaction as a Binary.
    let conditional = app
        .send(
            "PATCH",
            &format!("/fhir/default/Patient?identifier={NHS}|9434765919"),
            &[("content-type", "application/json-patch+json")],
            Some(
                json!([{"op": "replace", "path": "/gender", "value": "male"}])
                    .to_string()
                    .as_bytes(),
            ),
        )
        .await;
    assert_eq!(
        conditional.status,
        200,
        "{}",
        String::from_utf8_lossy(&conditional.body)
    );
    let data = base64_encode(&json!([{"op": "add", "path": "/active", "value": true}]).to_string());
    let reply = app
        .post(
            "/fhir/default",
            &bundle(
                "transaction",
                vec![json!({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}, "request": {"method": "PATCH", "url": format!("Patient/{id}")}})],
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(app.get(&path).await.json()["active"], true);
}

fn base64_encode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn malformed_bundles_are_refused(app: TestApp) {
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"resourceType": "Patient"}), 400, "invalid"),
        (
            json!({"resourceType": "Bundle", "type": "collection"}),
            400,
            "invalid",
        ),
        (
            bundle(
                "transaction",
                vec![
                    post("urn:uuid:1", minimal("Organization", None)),
                    post("urn:uuid:1", minimal("Organization", None)),
                ],
            ),
            400,
            "invalid",
        ),
        (
            bundle(
                "transaction",
                vec![
                    json!({"resource": {"resourceType": "Organization", "id": "o1", "name": "A"}, "request": {"method": "PUT", "url": "Organization/o1"}}),
                    json!({"request": {"method": "DELETE", "url": "Organization/o1"}}),
                ],
            ),
            400,
            "invalid",
        ),
        (
            bundle(
                "transaction",
                vec![json!({"request": {"method": "POST", "url": "Organization"}})],
            ),
            400,
            "invalid",
        ),
        (
            bundle(
                "transaction",
                vec![
                    json!({"resource": minimal("Organization", None), "request": {"method": "POST", "url": "Observation"}}),
                ],
            ),
            400,
            "invalid",
        ),
        (
            bundle(
                "transaction",
                vec![
                    json!({"resource": minimal("Organization", None), "request": {"method": "FETCH", "url": "Organization"}}),
                ],
            ),
            400,
            "invalid",
        ),
        (
            bundle(
                "transaction",
                vec![
                    json!({"resource": {"resourceType": "Organization", "id": "a", "name": "A"}, "request": {"method": "PUT", "url": "Organization/b"}}),
                ],
            ),
            400,
            "invalid",
        ),
    ];
    for (i, (body, status, code)) in cases.iter().enumerate() {
        let reply = app.post("/fhir/default", body).await;
        assert_eq!(
            reply.status.as_u16(),
            *status,
            "case {i}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["issue"][0]["code"], *code, "case {i}");
    }
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"request": {"method": "GET", "url": "Patient/x"}}))
        .collect();
    app.post("/fhir/default", &bundle("batch", too_many))
        .await
        .assert_outcome(413, "too-long");
    assert_eq!(history_size(&app).await, 0);
}

async fn ten_thousand_entries_in_one_transaction(app: TestApp) {
    let entries: Vec<Value> = (0..10_000)
        .map(|i| post(&format!("urn:uuid:00000000-0000-4000-8000-{i:012}"), json!({"resourceType": "Organization", "name": format!("Org {i}"), "identifier": [{"system": "http://ods", "value": format!("O{i}")}]})))
        .collect();
    let reply = app
        .post("/fhir/default", &bundle("transaction", entries))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body[..reply.body.len().min(500)])
    );
    assert_eq!(reply.json()["entry"].as_array().unwrap().len(), 10_000);
    let found = app
        .get("/fhir/default/Organization?identifier=http://ods|O9999")
        .await
        .json();
    assert_eq!(found["total"], 1);
    let count = app
        .get("/fhir/default/Organization?_summary=count")
        .await
        .json();
    assert_eq!(count["total"], 10_000);
}

on_both_backends!(
    urn_uuid_references_are_rewritten_everywhere,
    conditional_references_resolve_to_exactly_one,
    many_conditions_in_one_transaction_resolve_each_on_its_own,
    entries_run_in_fhir_order,
    a_failing_entry_rolls_back_the_whole_transaction,
    batch_entries_succeed_or_fail_on_their_own,
    conditional_create_update_and_delete,
    concurrent_conditional_creates_make_one_resource,
    replaying_a_transaction_changes_nothing,
    patch_applies_json_patch_and_validates_the_result,
    malformed_bundles_are_refused,
    ten_thousand_entries_in_one_transaction,
);
