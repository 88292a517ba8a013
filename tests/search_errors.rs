//! Search errors, on SQLite and PostgreSQL: an unknown parameter, a malformed value, a bad prefix
//! or modifier, a bad `_count`, `_sort`, `_include` or a forged `_cursor` is refused with 400 and an
//! OperationOutcome whose issue carries `INVALID_PARAMETER` and names the parameter as the client
//! wrote it. Under `Prefer: handling=lenient` unknown parameters are ignored instead: the Bundle
//! carries an OperationOutcome entry (`search.mode` outcome) warning about each, and its links
//! leave them out (R4: the self link shows the parameters actually used).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::searching::{entries, link, match_ids, searchset};
use common::TestApp;
use serde_json::json;

const LENIENT: (&str, &str) = ("prefer", "handling=lenient");

/// A cursor as the server encodes them (hex of JSON), with any content.
fn forged(content: &serde_json::Value) -> String {
    content
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn small_data(app: &TestApp) {
    for (id, family, birth) in [
        ("p-smith", "Smith", "1980-02-29"),
        ("p-smithson", "Smithson", "1980-03"),
        ("p-jones", "Jones", "1975"),
    ] {
        let patient = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}],
                             "birthDate": birth});
        assert_eq!(
            app.put(&format!("/fhir/default/Patient/{id}"), &patient)
                .await
                .status,
            201
        );
    }
}

async fn bad_parameters_are_refused_naming_them(app: TestApp) {
    small_data(&app).await;
    let too_many = (0..101)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(String, &str)> = vec![
        // Unknown parameters, also behind a modifier, in a chain or in _has.
        ("Patient?colour=blue".into(), "colour"),
        ("Patient?colour:exact=blue".into(), "colour:exact"),
        ("Patient?_text=smith".into(), "_text"),
        ("Patient?_content=smith".into(), "_content"),
        (
            "Encounter?subject:Patient.colour=blue".into(),
            "subject:Patient.colour",
        ),
        (
            "Patient?_has:Encounter:subject:colour=blue".into(),
            "_has:Encounter:subject:colour",
        ),
        ("Encounter?status.family=x".into(), "status.family"),
        // Malformed values and prefixes.
        ("Patient?birthdate=1980-13".into(), "birthdate"),
        ("Patient?birthdate=1980-02-30".into(), "birthdate"),
        ("Patient?birthdate=80".into(), "birthdate"),
        ("Patient?birthdate=xx1980".into(), "birthdate"),
        ("Patient?birthdate=ge".into(), "birthdate"),
        ("Encounter?date=2024-03-10T25:00:00Z".into(), "date"),
        ("Patient?_lastUpdated=yesterday".into(), "_lastUpdated"),
        ("Encounter?length=zz60".into(), "length"),
        ("Encounter?length=sixty".into(), "length"),
        ("Encounter?subject=Patient/not%20an%20id".into(), "subject"),
        ("Encounter?subject=a/b/c/d".into(), "subject"),
        (
            "Patient?identifier:of-type=only-a-value".into(),
            "identifier:of-type",
        ),
        ("Patient?family:missing=maybe".into(), "family:missing"),
        ("Patient?family=".into(), "family"),
        (format!("Patient?_id={too_many}"), "query"),
        // Modifiers the parameter's type does not have.
        ("Patient?family:fuzzy=smith".into(), "family:fuzzy"),
        ("Patient?gender:exact=male".into(), "gender:exact"),
        ("Patient?birthdate:exact=1980".into(), "birthdate:exact"),
        ("Encounter?length:below=60".into(), "length:below"),
        ("Patient?_profile:contains=x".into(), "_profile:contains"),
        ("Patient?_id:exact=p-smith".into(), "_id:exact"),
        (
            "Encounter?subject:Observation=x".into(),
            "subject:Observation",
        ),
        (
            "Encounter?subject:Patient=Practitioner/x".into(),
            "subject:Patient",
        ),
        // Result parameters.
        ("Patient?_count=abc".into(), "_count"),
        ("Patient?_count=-1".into(), "_count"),
        ("Patient?_count=1001".into(), "_count"),
        ("Patient?_sort=colour".into(), "_sort"),
        (
            "Patient?_sort=family,given,birthdate,gender".into(),
            "_sort",
        ),
        ("Patient?_summary=maybe".into(), "_summary"),
        ("Patient?_total=exact".into(), "_total"),
        ("Patient?_elements=na-me".into(), "_elements"),
        ("Patient?_include=Foo:bar".into(), "_include"),
        ("Encounter?_include=Encounter:status".into(), "_include"),
        (
            "Encounter?_include:deep=Encounter:subject".into(),
            "_include:deep",
        ),
        (
            "Patient?_revinclude=Encounter:subject:Nope".into(),
            "_revinclude",
        ),
        // Chains and reverse chains.
        // requester can point at several stored types: the chain must name one.
        (
            "ServiceRequest?requester.name=okafor".into(),
            "requester.name",
        ),
        (
            "Patient?_has:Encounter:status:status=finished".into(),
            "_has:Encounter:status:status",
        ),
        ("Patient?_has:Encounter=x".into(), "_has:Encounter"),
        (
            "Patient?_has:Observation:subject:code=x".into(),
            "_has:Observation:subject:code",
        ),
        (
            "Encounter?subject:Patient.general-practitioner:Organization.partof.partof.name=x"
                .into(),
            "subject:Patient.general-practitioner:Organization.partof.partof.name",
        ),
        // Cursors this server did not issue.
        ("Patient?_cursor=zz".into(), "_cursor"),
        ("Patient?_cursor=abc".into(), "_cursor"),
        ("Patient?_cursor=".into(), "_cursor"),
        (
            format!("Patient?_cursor={}", forged(&json!({"pk": "one"}))),
            "_cursor",
        ),
        (
            format!("Patient?_cursor={}", forged(&json!({"pk": 1, "k": ["x"]}))),
            "_cursor",
        ),
        (
            format!(
                "Patient?_sort=birthdate&_cursor={}",
                forged(&json!({"pk": 1, "k": ["not a number"]}))
            ),
            "_cursor",
        ),
        (
            format!(
                "Patient?_sort=-_lastUpdated&_cursor={}",
                forged(&json!({"pk": 1, "k": ["1.5e400"]}))
            ),
            "_cursor",
        ),
        (
            format!(
                "Patient?_sort=family,birthdate&_cursor={}",
                forged(&json!({"pk": 1, "k": ["smith"]}))
            ),
            "_cursor",
        ),
        // System search: only the parameters every type has, over stored types.
        ("?_type=Patient,Organization&family=smith".into(), "family"),
        ("?_type=Observation".into(), "_type"),
    ];
    let mut failures = Vec::new();
    for (query, param) in &cases {
        let path = if query.starts_with('?') {
            format!("/fhir/default{query}")
        } else {
            format!("/fhir/default/{query}")
        };
        let reply = app.get(&path).await;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        if reply.status != 400 {
            failures.push(format!("{query}: status {} {body}", reply.status));
            continue;
        }
        let outcome = reply.json();
        let issue = &outcome["issue"][0];
        let ok = outcome["resourceType"] == "OperationOutcome"
            && issue["severity"] == "error"
            && issue["code"] == "invalid"
            && issue["details"]["coding"][0]["code"] == "INVALID_PARAMETER"
            && issue["expression"] == json!([param]);
        if !ok {
            failures.push(format!("{query}: {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The same through POST _search.
    let reply = app
        .send(
            "POST",
            "/fhir/default/Patient/_search",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"family=smith&colour=blue"),
        )
        .await;
    let issue = reply.assert_outcome(400, "invalid");
    assert_eq!(issue["expression"], json!(["colour"]));
}

async fn lenient_handling_ignores_unknown_parameters_with_a_warning(app: TestApp) {
    small_data(&app).await;
    let reply = app
        .send(
            "GET",
            "/fhir/default/Patient?colour=blue&family=smi&_count=1&shoe:size=9",
            &[LENIENT],
            None,
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let first = reply.json();
    let outcomes: Vec<&serde_json::Value> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "outcome")
        .collect();
    assert_eq!(outcomes.len(), 1, "{first}");
    let outcome = &outcomes[0]["resource"];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let warned: Vec<&serde_json::Value> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|i| assert_eq!(i["severity"], "warning", "{i}"))
        .map(|i| &i["expression"][0])
        .collect();
    assert_eq!(warned, [&json!("colour"), &json!("shoe:size")]);
    assert_eq!(entries(&first, "match").len(), 1);

    // The links carry only the parameters used, so they work without the Prefer header.
    for relation in ["self", "next", "first", "last"] {
        let url = link(&first, relation).unwrap();
        assert!(!url.contains("colour") && !url.contains("shoe"), "{url}");
    }
    let second = searchset(&app, &link(&first, "next").unwrap()).await;
    let mut both = match_ids(&first);
    both.extend(match_ids(&second));
    both.sort();
    assert_eq!(both, ["p-smith", "p-smithson"]);

    // Unknown parameters in chains and _has are ignored the same way.
    let reply = app
        .send(
            "GET",
            "/fhir/default/Patient?_has:Encounter:subject:colour=x&family=jones",
            &[LENIENT],
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(match_ids(&reply.json()), ["p-jones"]);

    // A malformed value is an error however lenient the client.
    for query in ["birthdate=1980-13", "family:fuzzy=x", "_count=many"] {
        app.send(
            "GET",
            &format!("/fhir/default/Patient?{query}"),
            &[LENIENT],
            None,
        )
        .await
        .assert_outcome(400, "invalid");
    }
}

on_both_backends!(
    bad_parameters_are_refused_naming_them,
    lenient_handling_ignores_unknown_parameters_with_a_warning,
);
