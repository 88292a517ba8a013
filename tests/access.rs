//! Access control and audit, on SQLite and PostgreSQL: the access matrix (role × interaction ×
//! own/other system × own/other patient × restricted or not), token attacks, break-glass, the
//! audit trail, and per-token rate limits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{minimal, TestApp, TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const CONFIDENTIAL: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// The record used by every test: patients P1 and P2, restricted P3, their encounters, a practice.
struct Record {
    p1: String,
    p2: String,
    p3: String,
    e1: String,
    e2: String,
    e3: String,
    org: String,
}

async fn record(app: &TestApp) -> Record {
    let patient = |nhs: &str, family: &str, restricted: bool| {
        let mut p = json!({"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}], "name": [{"family": family}]});
        if restricted {
            p["meta"] = json!({"security": [{"system": CONFIDENTIAL, "code": "R"}]});
        }
        p
    };
    let p1 = app
        .create("default", &patient("9434765919", "Ownpatient", false))
        .await;
    let p2 = app
        .create("default", &patient("9000000009", "Otherpatient", false))
        .await;
    let p3 = app
        .create("default", &patient("9990000018", "Restrictedpatient", true))
        .await;
    let encounter = |p: &str| {
        let mut e = minimal("Encounter", None);
        e["subject"] = json!({"reference": format!("Patient/{p}")});
        e
    };
    let e1 = app.create("default", &encounter(&p1)).await;
    let e2 = app.create("default", &encounter(&p2)).await;
    let e3 = app.create("default", &encounter(&p3)).await;
    let org = app.create("default", &minimal("Organization", None)).await;
    Record {
        p1,
        p2,
        p3,
        e1,
        e2,
        e3,
        org,
    }
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

async fn as_token(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> common::Reply {
    let (name, value) = bearer(token);
    let mut headers: Vec<(&str, &str)> = vec![(name, value.as_str())];
    headers.extend_from_slice(extra);
    match body {
        Some(b) => app.send_json(method, path, &headers, b).await,
        None => app.send(method, path, &headers, None).await,
    }
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["search"]["mode"] == "match")
                .map(|x| x["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<&String>) -> Vec<String> {
    v.sort();
    v.into_iter().cloned().collect()
}

async fn access_matrix(app: TestApp) {
    app.add_system("other").await;
    let r = record(&app).await;
    let feeder = app.token("feeder", "default", "gp-system", None, None);
    let clinician = app.token(
        "clinician",
        "default",
        "dr-jones",
        Some("Practitioner/dr-jones"),
        None,
    );
    let writer = app.token(
        "clinician",
        "default",
        "dr-writer",
        None,
        Some("user/*.rs user/Encounter.cu"),
    );
    let own = app.token(
        "patient",
        "default",
        "patient-1",
        Some(&format!("Patient/{}", r.p1)),
        None,
    );
    let admin = app.token("admin", "default", "ops", None, None);
    let elsewhere = app.token("feeder", "other", "gp-system", None, None);
    let btg = [("x-break-glass-reason", "Unconscious in ED; no other record")];
    let new_encounter = {
        let mut e = minimal("Encounter", None);
        e["subject"] = json!({"reference": format!("Patient/{}", r.p1)});
        e
    };
    let mut updated = minimal("Encounter", None);
    updated["id"] = json!(r.e1);
    updated["subject"] = json!({"reference": format!("Patient/{}", r.p1)});

    struct Case<'a> {
        who: &'a str,
        token: &'a str,
        method: &'a str,
        path: String,
        extra: Vec<(&'a str, &'a str)>,
        body: Option<&'a Value>,
        status: u16,
    }
    let case = |who,
                token,
                method,
                path: String,
                extra: Vec<(&'static str, &'static str)>,
                body,
                status| Case {
        who,
        token,
        method,
        path,
        extra,
        body,
        status,
    };
    let cases: Vec<Case> = vec![
        case(
            "feeder",
            &feeder,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            None,
            200,
        ),
        case(
            "feeder",
            &feeder,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e3),
            vec![],
            None,
            200,
        ),
        case(
            "feeder",
            &feeder,
            "POST",
            "/fhir/default/Encounter".into(),
            vec![],
            Some(&new_encounter),
            201,
        ),
        case(
            "feeder",
            &feeder,
            "PUT",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            Some(&updated),
            200,
        ),
        case(
            "feeder",
            &feeder,
            "GET",
            format!("/fhir/default/Patient/{}/$everything", r.p3),
            vec![],
            None,
            200,
        ),
        case(
            "feeder",
            &feeder,
            "GET",
            "/fhir/default/_history".into(),
            vec![],
            None,
            200,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            None,
            200,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Patient/{}", r.p2),
            vec![],
            None,
            200,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e3),
            vec![],
            None,
            403,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Patient/{}", r.p3),
            vec![],
            None,
            403,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e3),
            btg.to_vec(),
            None,
            200,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Patient/{}/$everything", r.p3),
            vec![],
            None,
            403,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Patient/{}/$everything", r.p3),
            btg.to_vec(),
            None,
            200,
        ),
        case(
            "clinician",
            &clinician,
            "POST",
            "/fhir/default/Encounter".into(),
            vec![],
            Some(&new_encounter),
            403,
        ),
        case(
            "clinician",
            &clinician,
            "PUT",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            Some(&updated),
            403,
        ),
        case(
            "clinician",
            &clinician,
            "DELETE",
            format!("/fhir/default/Encounter/{}", r.e2),
            vec![],
            None,
            403,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            format!("/fhir/default/Encounter/{}/_history", r.e1),
            vec![],
            None,
            200,
        ),
        case(
            "clinician",
            &clinician,
            "GET",
            "/fhir/default/Encounter/_history".into(),
            vec![],
            None,
            200,
        ),
        case(
            "clinician with write scope",
            &writer,
            "POST",
            "/fhir/default/Encounter".into(),
            vec![],
            Some(&new_encounter),
            201,
        ),
        case(
            "clinician with write scope",
            &writer,
            "DELETE",
            format!("/fhir/default/Encounter/{}", r.e2),
            vec![],
            None,
            403,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Patient/{}", r.p1),
            vec![],
            None,
            200,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            None,
            200,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Encounter/{}/_history", r.e1),
            vec![],
            None,
            200,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Patient/{}/$everything", r.p1),
            vec![],
            None,
            200,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Patient/{}", r.p2),
            vec![],
            None,
            404,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e2),
            vec![],
            None,
            404,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e3),
            vec![],
            None,
            404,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Encounter/{}/_history", r.e2),
            vec![],
            None,
            404,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Encounter/{}/_history/1", r.e2),
            vec![],
            None,
            404,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Patient/{}/$everything", r.p2),
            vec![],
            None,
            404,
        ),
        case(
            "patient",
            &own,
            "GET",
            format!("/fhir/default/Organization/{}", r.org),
            vec![],
            None,
            404,
        ),
        case(
            "patient",
            &own,
            "GET",
            "/fhir/default/Organization".into(),
            vec![],
            None,
            403,
        ),
        case(
            "patient",
            &own,
            "GET",
            "/fhir/default/Encounter/_history".into(),
            vec![],
            None,
            403,
        ),
        case(
            "patient",
            &own,
            "POST",
            "/fhir/default/Encounter".into(),
            vec![],
            Some(&new_encounter),
            403,
        ),
        case(
            "patient",
            &own,
            "PUT",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            Some(&updated),
            403,
        ),
        case(
            "patient",
            &own,
            "DELETE",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            None,
            403,
        ),
        case(
            "admin",
            &admin,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            None,
            403,
        ),
        case(
            "admin",
            &admin,
            "GET",
            "/admin/systems".into(),
            vec![],
            None,
            200,
        ),
        case(
            "feeder",
            &feeder,
            "GET",
            "/admin/systems".into(),
            vec![],
            None,
            403,
        ),
        case(
            "token for another system",
            &elsewhere,
            "GET",
            format!("/fhir/default/Encounter/{}", r.e1),
            vec![],
            None,
            403,
        ),
        case(
            "token for another system",
            &elsewhere,
            "GET",
            format!("/fhir/other/Encounter/{}", r.e1),
            vec![],
            None,
            404,
        ),
    ];
    for Case {
        who,
        token,
        method,
        path,
        extra,
        body,
        status,
    } in &cases
    {
        let reply = as_token(&app, token, method, path, extra, *body).await;
        let text = String::from_utf8_lossy(&reply.body).to_string();
        assert_eq!(
            reply.status.as_u16(),
            *status,
            "{who} {method} {path}: {text}"
        );
        if *status >= 400 {
            // A refusal carries no patient data.
            assert!(
                !text.contains("Otherpatient")
                    && !text.contains("Restrictedpatient")
                    && !text.contains("Ownpatient"),
                "{who} {method} {path}: {text}"
            );
            let outcome: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(outcome["resourceType"], "OperationOutcome");
            if *status == 403 {
                assert_eq!(
                    outcome["issue"][0]["details"]["coding"][0]["code"], "ACCESS_DENIED",
                    "{who} {method} {path}"
                );
            }
        }
    }

    // Searches are narrowed in the query, so paging and totals never show what the caller cannot see.
    let all = as_token(
        &app,
        &feeder,
        "GET",
        "/fhir/default/Encounter?_total=accurate",
        &[],
        None,
    )
    .await
    .json();
    let clinician_view = as_token(
        &app,
        &clinician,
        "GET",
        "/fhir/default/Encounter?_total=accurate&_count=2",
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(
        clinician_view["total"].as_u64().unwrap(),
        all["total"].as_u64().unwrap() - 1,
        "the restricted encounter is not counted"
    );
    let with_btg = as_token(
        &app,
        &clinician,
        "GET",
        "/fhir/default/Encounter?_total=accurate",
        &btg,
        None,
    )
    .await
    .json();
    assert_eq!(with_btg["total"], all["total"]);
    let patient_view = as_token(&app, &own, "GET", "/fhir/default/Encounter", &[], None)
        .await
        .json();
    let mine: Vec<String> = ids(&patient_view);
    assert!(
        mine.contains(&r.e1) && !mine.contains(&r.e2) && !mine.contains(&r.e3),
        "{mine:?}"
    );
    let patient_patients = as_token(&app, &own, "GET", "/fhir/default/Patient", &[], None)
        .await
        .json();
    assert_eq!(ids(&patient_patients), vec![r.p1.clone()]);
    // Includes cannot leak: a patient's Encounters with their subjects include only themselves.
    let included = as_token(
        &app,
        &own,
        "GET",
        "/fhir/default/Encounter?_include=Encounter:subject&_revinclude=Encounter:part-of",
        &[],
        None,
    )
    .await
    .json();
    for entry in included["entry"].as_array().unwrap() {
        let id = entry["resource"]["id"].as_str().unwrap();
        assert!(
            id != r.p2 && id != r.p3 && id != r.e2 && id != r.e3,
            "{entry}"
        );
    }
    let clinician_patients = as_token(&app, &clinician, "GET", "/fhir/default/Patient", &[], None)
        .await
        .json();
    assert_eq!(ids(&clinician_patients), sorted(vec![&r.p1, &r.p2]));
}

fn claims(now: i64) -> Value {
    json!({"sub": "attacker", "role": "feeder", "system": "default", "scope": "system/*.cruds", "exp": now + 600, "nbf": now - 10, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE})
}

async fn token_attacks_are_refused(app: TestApp) {
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: &Value| {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let rs_private = std::fs::read(keys.join("rs256-private.pem")).unwrap();
    let rs_public = std::fs::read(keys.join("rs256-public.pem")).unwrap();
    let es_private = std::fs::read(keys.join("es256-private.pem")).unwrap();
    // Valid: HS256 with the server's secret, RS256 and ES256 with the configured public keys.
    let good_rs = encode(
        &Header::new(Algorithm::RS256),
        &claims(now),
        &EncodingKey::from_rsa_pem(&rs_private).unwrap(),
    )
    .unwrap();
    let good_es = encode(
        &Header::new(Algorithm::ES256),
        &claims(now),
        &EncodingKey::from_ec_pem(&es_private).unwrap(),
    )
    .unwrap();
    for token in [sign(&claims(now)), good_rs, good_es] {
        let reply = as_token(&app, &token, "GET", "/fhir/default/Patient", &[], None).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let mut expired = claims(now);
    expired["exp"] = json!(now - 3600);
    let mut early = claims(now);
    early["nbf"] = json!(now + 3600);
    let mut audience = claims(now);
    audience["aud"] = json!("someone-else");
    let mut issuer = claims(now);
    issuer["iss"] = json!("https://evil.example");
    let mut no_role = claims(now);
    no_role.as_object_mut().unwrap().remove("role");
    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims(now),
        &EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap();
    // HS256 "signed" with the RSA public key: the classic algorithm-confusion attack.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(now),
        &EncodingKey::from_secret(&rs_public),
    )
    .unwrap();
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(now))
    );
    let good = sign(&claims(now));
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let mut admin = claims(now);
        admin["role"] = json!("admin");
        format!("{}.{}.{}", parts[0], b64(&admin), parts[2])
    };
    let attacks: Vec<(&str, String)> = vec![
        ("expired", sign(&expired)),
        ("not yet valid", sign(&early)),
        ("wrong audience", sign(&audience)),
        ("wrong issuer", sign(&issuer)),
        ("missing role", sign(&no_role)),
        ("wrong signature", wrong_secret),
        ("HS256 signed with the RS public key", confused),
        ("alg none", none),
        ("tampered payload", tampered),
        ("garbage", "not.a.token".into()),
    ];
    for (name, token) in attacks {
        let reply = as_token(&app, &token, "GET", "/fhir/default/Patient", &[], None).await;
        assert_eq!(
            reply.status,
            401,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer"),
            "{name}"
        );
        reply.assert_outcome(401, "login");
    }
    for header in ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"] {
        let reply = app
            .send(
                "GET",
                "/fhir/default/Patient",
                &[("authorization", header)],
                None,
            )
            .await;
        assert_eq!(reply.status, 401, "header {header:?}");
    }
    // No token at all; the CapabilityStatement stays public.
    let reply = app
        .send(
            "GET",
            "/fhir/default/Patient",
            &[("authorization", "")],
            None,
        )
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        app.send(
            "GET",
            "/fhir/default/metadata",
            &[("authorization", "")],
            None
        )
        .await
        .status,
        200
    );
    app.send("GET", "/admin/systems", &[("authorization", "")], None)
        .await
        .assert_outcome(401, "login");
}

async fn the_audit_trail_records_every_access(app: TestApp) {
    let r = record(&app).await;
    let clinician = app.token(
        "clinician",
        "default",
        "dr-jones",
        Some("Practitioner/dr-jones"),
        None,
    );
    let patient = app.token(
        "patient",
        "default",
        "patient-1",
        Some(&format!("Patient/{}", r.p1)),
        None,
    );
    let feeder = app.token("feeder", "default", "audit-reader", None, None);
    // dr-jones: a read, a search, a restricted read refused, the same read with break-glass.
    assert_eq!(
        as_token(
            &app,
            &clinician,
            "GET",
            &format!("/fhir/default/Encounter/{}", r.e1),
            &[],
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        as_token(
            &app,
            &clinician,
            "GET",
            &format!("/fhir/default/Encounter?patient={}", r.p1),
            &[],
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        as_token(
            &app,
            &clinician,
            "GET",
            &format!("/fhir/default/Patient/{}", r.p3),
            &[],
            None
        )
        .await
        .status,
        403
    );
    let btg = [("x-break-glass-reason", "Emergency: unconscious")];
    assert_eq!(
        as_token(
            &app,
            &clinician,
            "GET",
            &format!("/fhir/default/Patient/{}", r.p3),
            &btg,
            None
        )
        .await
        .status,
        200
    );
    // The patient tries another patient's encounter (404, audited as a failed attempt).
    assert_eq!(
        as_token(
            &app,
            &patient,
            "GET",
            &format!("/fhir/default/Encounter/{}", r.e2),
            &[],
            None
        )
        .await
        .status,
        404
    );

    let by_doctor = as_token(
        &app,
        &feeder,
        "GET",
        "/fhir/default/AuditEvent?agent=dr-jones",
        &[],
        None,
    )
    .await
    .json();
    let events = by_doctor["entry"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{by_doctor}");
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["resource"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["R", "R", "E", "R"],
        "newest first: break-glass read, refused read, search, read"
    );
    let newest = &events[0]["resource"];
    assert_eq!(newest["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
    assert_eq!(
        newest["purposeOfEvent"][0]["text"],
        "Emergency: unconscious"
    );
    assert_eq!(
        newest["agent"][0]["who"]["reference"],
        "Practitioner/dr-jones"
    );
    assert_eq!(newest["agent"][0]["altId"], "dr-jones");
    assert_eq!(newest["agent"][1]["who"]["identifier"]["value"], "B82005");
    assert!(newest["entity"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["what"]["reference"] == format!("Patient/{}", r.p3)));
    assert_eq!(
        events[1]["resource"]["outcome"], "4",
        "the refusal is audited as a failure"
    );
    assert_eq!(
        events[3]["resource"]["entity"][0]["what"]["reference"],
        format!("Encounter/{}/_history/1", r.e1)
    );

    // "Who viewed my record": the patient lists their own AuditEvents, and only theirs.
    let mine = as_token(
        &app,
        &patient,
        "GET",
        &format!("/fhir/default/AuditEvent?patient=Patient/{}", r.p2),
        &[],
        None,
    )
    .await
    .json();
    let agents: Vec<&str> = mine["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["agent"][0]["altId"].as_str().unwrap())
        .collect();
    assert!(agents.contains(&"dr-jones"), "{agents:?}");
    assert!(
        agents.contains(&"test-feeder"),
        "the feeder that wrote the record: {agents:?}"
    );
    for entry in mine["entry"].as_array().unwrap() {
        assert!(
            entry["resource"]["entity"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["what"]["reference"] == format!("Patient/{}", r.p1)),
            "{entry}"
        );
    }
    // Writes are audited in their transaction: the creates of the record are there.
    let creates = as_token(
        &app,
        &feeder,
        "GET",
        "/fhir/default/AuditEvent?action=C",
        &[],
        None,
    )
    .await
    .json();
    assert_eq!(creates["entry"].as_array().unwrap().len(), 7);
    // The failed attempt by the patient is there too.
    let attempts = as_token(
        &app,
        &feeder,
        "GET",
        "/fhir/default/AuditEvent?agent=patient-1",
        &[],
        None,
    )
    .await
    .json();
    assert!(
        attempts["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["outcome"] == "4"),
        "{attempts}"
    );
    // The trail is read-only.
    let id = events[0]["resource"]["id"].as_str().unwrap();
    assert_eq!(
        as_token(
            &app,
            &feeder,
            "GET",
            &format!("/fhir/default/AuditEvent/{id}"),
            &[],
            None
        )
        .await
        .status,
        200
    );
    as_token(
        &app,
        &feeder,
        "DELETE",
        &format!("/fhir/default/AuditEvent/{id}"),
        &[],
        None,
    )
    .await
    .assert_outcome(405, "not-supported");
    as_token(
        &app,
        &feeder,
        "PUT",
        &format!("/fhir/default/AuditEvent/{id}"),
        &[],
        Some(&json!({"resourceType": "AuditEvent"})),
    )
    .await
    .assert_outcome(405, "not-supported");
    as_token(
        &app,
        &feeder,
        "POST",
        "/fhir/default/AuditEvent",
        &[],
        Some(&json!({"resourceType": "AuditEvent"})),
    )
    .await
    .assert_outcome(405, "not-supported");
    // A patient cannot read someone else's AuditEvent by id.
    let other = as_token(
        &app,
        &feeder,
        "GET",
        &format!("/fhir/default/AuditEvent?patient=Patient/{}", r.p3),
        &[],
        None,
    )
    .await
    .json();
    let other_id = other["entry"][0]["resource"]["id"].as_str().unwrap();
    assert_eq!(
        as_token(
            &app,
            &patient,
            "GET",
            &format!("/fhir/default/AuditEvent/{other_id}"),
            &[],
            None
        )
        .await
        .status,
        404
    );
}

fn limited(settings: &mut carerecord::settings::Settings) {
    settings.rate_limit = 5;
}

async fn a_busy_token_is_throttled_alone(app: TestApp) {
    let busy = app.token("feeder", "default", "busy-feeder", None, None);
    let calm = app.token("feeder", "default", "calm-feeder", None, None);
    let mut throttled = None;
    for _ in 0..30 {
        let reply = as_token(&app, &busy, "GET", "/fhir/default/Patient", &[], None).await;
        if reply.status == 429 {
            throttled = Some(reply);
            break;
        }
    }
    let reply = throttled.expect("the busy token is throttled");
    assert!(reply.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    reply.assert_outcome(429, "throttled");
    assert_eq!(
        as_token(&app, &calm, "GET", "/fhir/default/Patient", &[], None)
            .await
            .status,
        200
    );
}

mod throttling {
    use super::*;
    on_both_backends!(@configure super::limited; a_busy_token_is_throttled_alone);
}

on_both_backends!(
    access_matrix,
    token_attacks_are_refused,
    the_audit_trail_records_every_access
);
