//! Every bad input answers with the right status and an OperationOutcome naming the problem; none
//! crashes the server or changes the database. Table-driven, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::TestApp;

/// (method, path, content type, body, expected status, expected issue code, expected expression)
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    u16,
    &'static str,
    Option<&'static str>,
);

const FHIR: Option<&str> = Some("application/fhir+json");

const CASES: &[Case] = &[
    // Malformed JSON, reported with its position.
    ("POST", "/fhir/default/Patient", FHIR, "{\"resourceType\": \"Patient\",", 400, "structure", None),
    ("POST", "/fhir/default/Patient", FHIR, "", 400, "structure", None),
    ("POST", "/fhir/default/Patient", FHIR, "not json", 400, "structure", None),
    // Body not an object.
    ("POST", "/fhir/default/Patient", FHIR, "[{\"resourceType\": \"Patient\"}]", 400, "structure", None),
    ("POST", "/fhir/default/Patient", FHIR, "\"Patient\"", 400, "structure", None),
    // resourceType missing or not matching the URL.
    ("POST", "/fhir/default/Patient", FHIR, "{\"active\": true}", 400, "invalid", Some("resourceType")),
    ("POST", "/fhir/default/Patient", FHIR, "{\"resourceType\": \"Encounter\"}", 400, "invalid", Some("resourceType")),
    ("PUT", "/fhir/default/Patient/p1", FHIR, "{\"resourceType\": \"Encounter\", \"id\": \"p1\"}", 400, "invalid", Some("resourceType")),
    // PUT body id missing or different from the URL.
    ("PUT", "/fhir/default/Patient/p1", FHIR, "{\"resourceType\": \"Patient\"}", 400, "invalid", Some("id")),
    ("PUT", "/fhir/default/Patient/p1", FHIR, "{\"resourceType\": \"Patient\", \"id\": \"p2\"}", 400, "invalid", Some("id")),
    ("PUT", "/fhir/default/Patient/p1", FHIR, "{\"resourceType\": \"Patient\", \"id\": 1}", 400, "invalid", Some("id")),
    // Invalid ids in the URL.
    ("GET", "/fhir/default/Patient/a_b", None, "", 400, "value", Some("id")),
    ("GET", "/fhir/default/Patient/0123456789012345678901234567890123456789012345678901234567890123456789", None, "", 400, "value", Some("id")),
    ("PUT", "/fhir/default/Patient/a%20b", FHIR, "{\"resourceType\": \"Patient\", \"id\": \"a b\"}", 400, "value", Some("id")),
    ("DELETE", "/fhir/default/Patient/a$b", None, "", 400, "value", Some("id")),
    // Invalid meta shapes.
    ("POST", "/fhir/default/Patient", FHIR, "{\"resourceType\": \"Patient\", \"meta\": []}", 400, "structure", Some("Patient.meta")),
    ("POST", "/fhir/default/Patient", FHIR, "{\"resourceType\": \"Patient\", \"meta\": {\"profile\": \"x\"}}", 400, "structure", Some("Patient.meta.profile")),
    // Unsupported resource types, unknown systems and routes.
    ("GET", "/fhir/default/Observation/1", None, "", 404, "not-supported", None),
    ("POST", "/fhir/default/Observation", FHIR, "{\"resourceType\": \"Observation\"}", 404, "not-supported", None),
    ("GET", "/fhir/default/Observation", None, "", 404, "not-supported", None),
    ("GET", "/fhir/no-such-system/Patient/1", None, "", 404, "not-found", None),
    ("GET", "/fhir/Not_A_Slug/Patient/1", None, "", 404, "not-found", None),
    ("GET", "/fhir/default/Patient/1/_history/1/extra", None, "", 404, "not-found", None),
    ("GET", "/nowhere", None, "", 404, "not-found", None),
    // Not found.
    ("GET", "/fhir/default/Patient/does-not-exist", None, "", 404, "not-found", None),
    ("GET", "/fhir/default/Patient/does-not-exist/_history/1", None, "", 404, "not-found", None),
    // Unsupported media types.
    ("POST", "/fhir/default/Patient", Some("application/fhir+xml"), "<Patient/>", 415, "not-supported", None),
    ("POST", "/fhir/default/Patient", Some("text/plain"), "{\"resourceType\": \"Patient\"}", 415, "not-supported", None),
    // Methods not allowed.
    ("PATCH", "/fhir/default/metadata", FHIR, "[]", 405, "not-supported", None),
    ("POST", "/fhir/default/Patient/1", FHIR, "{}", 405, "not-supported", None),
    // A conditional delete needs a condition.
    ("DELETE", "/fhir/default/Patient", None, "", 400, "invalid", Some("condition")),
    ("DELETE", "/fhir/default/metadata", None, "", 405, "not-supported", None),
    ("PUT", "/fhir/default/metadata", FHIR, "{}", 405, "not-supported", None),
    ("DELETE", "/fhir/default/Patient/1/_history/1", None, "", 405, "not-supported", None),
    ("POST", "/health", None, "", 405, "not-supported", None),
    // Unacceptable response formats.
    ("GET", "/fhir/default/metadata?_format=xml", None, "", 406, "not-supported", None),
    // Bad header values.
    ("DELETE", "/fhir/default/Patient/1", None, "", 400, "invalid", None),
];

async fn bad_inputs_answer_with_operation_outcomes(app: TestApp) {
    for (index, (method, path, content_type, body, status, code, expression)) in
        CASES.iter().enumerate()
    {
        let mut headers = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("content-type", *ct));
        }
        if index == CASES.len() - 1 {
            headers.push(("if-match", "version one"));
        }
        let body = (!body.is_empty() || content_type.is_some()).then_some(body.as_bytes());
        let reply = app.send(method, path, &headers, body).await;
        let context = format!("case {index}: {method} {path}");
        assert_eq!(
            reply.status.as_u16(),
            *status,
            "{context}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(
            reply
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("application/fhir+json")),
            "{context}"
        );
        let outcome = reply.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{context}");
        assert_eq!(outcome["issue"][0]["code"], *code, "{context}: {outcome}");
        assert_eq!(outcome["issue"][0]["severity"], "error", "{context}");
        if let Some(expression) = expression {
            assert_eq!(
                outcome["issue"][0]["expression"][0], *expression,
                "{context}: {outcome}"
            );
        }
    }
    // None of those requests stored anything.
    let history = app.get("/fhir/default/_history").await.json();
    assert!(history.get("entry").is_none(), "{history}");
}

async fn malformed_json_reports_line_and_column(app: TestApp) {
    let reply = app
        .send(
            "POST",
            "/fhir/default/Patient",
            &[("content-type", "application/fhir+json")],
            Some(b"{\n  \"resourceType\": \"Patient\",\n  \"active\": true,,\n  \"gender\": \"male\"\n}"),
        )
        .await;
    let issue = reply.assert_outcome(400, "structure");
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("line 3"), "{diagnostics}");
    assert!(diagnostics.contains("column"), "{diagnostics}");
    assert_eq!(issue["details"]["coding"][0]["code"], "INVALID_RESOURCE");
}

async fn body_over_the_limit_is_413(app: TestApp) {
    // The test server's limit is 4 MiB.
    let big = format!(
        "{{\"resourceType\": \"Patient\", \"text\": {{\"status\": \"generated\", \"div\": \"<div>{}</div>\"}}}}",
        "x".repeat(4 * 1024 * 1024 + 10)
    );
    let reply = app
        .send(
            "POST",
            "/fhir/default/Patient",
            &[("content-type", "application/fhir+json")],
            Some(big.as_bytes()),
        )
        .await;
    reply.assert_outcome(413, "too-long");
    // The server is still serving.
    assert_eq!(app.get("/health").await.status, 200);
}

async fn accepted_media_types_and_format_parameters(app: TestApp) {
    for content_type in [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; fhirVersion=4.0",
        "application/fhir+json; charset=utf-8",
    ] {
        let reply = app
            .send(
                "POST",
                "/fhir/default/Patient",
                &[("content-type", content_type)],
                Some(b"{\"resourceType\": \"Patient\"}"),
            )
            .await;
        assert_eq!(reply.status, 201, "{content_type}");
    }
    for query in [
        "_format=json",
        "_format=application/fhir%2Bjson",
        "_format=application/json",
    ] {
        let reply = app.get(&format!("/fhir/default/metadata?{query}")).await;
        assert_eq!(reply.status, 200, "{query}");
    }
    for accept in [
        "application/fhir+json",
        "application/json",
        "*/*",
        "text/html, application/fhir+json;q=0.9",
    ] {
        let reply = app
            .send("GET", "/fhir/default/metadata", &[("accept", accept)], None)
            .await;
        assert_eq!(reply.status, 200, "{accept}");
    }
    app.send(
        "GET",
        "/fhir/default/metadata",
        &[("accept", "application/fhir+xml")],
        None,
    )
    .await
    .assert_outcome(406, "not-supported");
}

on_both_backends!(
    bad_inputs_answer_with_operation_outcomes,
    malformed_json_reports_line_and_column,
    body_over_the_limit_is_413,
    accepted_media_types_and_format_parameters,
);
