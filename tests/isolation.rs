//! One local system never sees another's data: read, vread, history, update and delete through
//! system `b` of a resource created in system `a` answer 404 (or, for an update without
//! `If-Match`, create `b`'s own resource and leave `a`'s untouched).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{minimal, TestApp};
use serde_json::json;

async fn resources_are_invisible_across_local_systems(app: TestApp) {
    app.add_system("a").await;
    app.add_system("b").await;
    let body =
        json!({"resourceType": "Patient", "id": "shared-id", "name": [{"family": "A-only"}]});
    assert_eq!(
        app.put("/fhir/a/Patient/shared-id", &body).await.status,
        201
    );
    let created = app.create("a", &minimal("Encounter", None)).await;

    for path in [
        format!("/fhir/b/Encounter/{created}"),
        format!("/fhir/b/Encounter/{created}/_history/1"),
        format!("/fhir/b/Encounter/{created}/_history"),
        "/fhir/b/Patient/shared-id".to_owned(),
        "/fhir/b/Patient/shared-id/_history/1".to_owned(),
        "/fhir/b/Patient/shared-id/_history".to_owned(),
    ] {
        app.get(&path).await.assert_outcome(404, "not-found");
    }
    app.delete(&format!("/fhir/b/Encounter/{created}"))
        .await
        .assert_outcome(404, "not-found");
    app.send_json(
        "PUT",
        "/fhir/b/Patient/shared-id",
        &[("if-match", "W/\"1\"")],
        &body,
    )
    .await
    .assert_outcome(404, "not-found");
    for history in [
        "/fhir/b/_history",
        "/fhir/b/Patient/_history",
        "/fhir/b/Encounter/_history",
    ] {
        let bundle = app.get(history).await.json();
        assert!(bundle.get("entry").is_none(), "{history}: {bundle}");
    }

    // An update-as-create in b makes b's own resource with the same id; a's is unchanged.
    let mut b_body = body.clone();
    b_body["name"][0]["family"] = json!("B-only");
    let b_created = app.put("/fhir/b/Patient/shared-id", &b_body).await;
    assert_eq!(b_created.status, 201);
    assert_eq!(b_created.header("etag").as_deref(), Some("W/\"1\""));
    let a_read = app.get("/fhir/a/Patient/shared-id").await.json();
    assert_eq!(a_read["name"][0]["family"], "A-only");
    assert_eq!(a_read["meta"]["versionId"], "1");
    app.delete("/fhir/b/Patient/shared-id").await;
    assert_eq!(app.get("/fhir/a/Patient/shared-id").await.status, 200);
    assert_eq!(
        app.get(&format!("/fhir/a/Encounter/{created}"))
            .await
            .status,
        200
    );

    // Every link a system hands out points at its own base.
    let a_history = app.get("/fhir/a/_history").await.json();
    for entry in a_history["entry"].as_array().unwrap() {
        assert!(entry["fullUrl"]
            .as_str()
            .unwrap()
            .starts_with(&app.base("a")));
    }
}

on_both_backends!(resources_are_invisible_across_local_systems);
