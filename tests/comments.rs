//! The patient's voice, on SQLite and PostgreSQL: comments and preferences with provenance, who
//! may add and retract them, the merge rule for feeders, text limits, the custom search
//! parameter, and atomicity under an injected fault.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{minimal, TestApp};
use diesel::{Connection, RunQueryDsl};
use serde_json::{json, Value};

const EXT: &str =
    "https://fhir.carerecord.dev/StructureDefinition/Extension-CareRecord-PatientComment";

struct Setup {
    patient: String,
    other: String,
    referral: String,
    other_referral: String,
    patient_token: String,
    clinician_token: String,
}

async fn setup(app: &TestApp) -> Setup {
    let patient = app.create("default", &json!({"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}]})).await;
    let other = app
        .create("default", &json!({"resourceType": "Patient"}))
        .await;
    let referral = app
        .create("default", &minimal("ServiceRequest", Some(&patient)))
        .await;
    let other_referral = app
        .create("default", &minimal("ServiceRequest", Some(&other)))
        .await;
    Setup {
        patient_token: app.token(
            "patient",
            "default",
            "nhs-login-1",
            Some(&format!("Patient/{patient}")),
            None,
        ),
        clinician_token: app.token(
            "clinician",
            "default",
            "dr-khan",
            Some("Practitioner/dr-khan"),
            None,
        ),
        patient,
        other,
        referral,
        other_referral,
    }
}

fn params(pairs: &[(&str, Value)]) -> Value {
    json!({"resourceType": "Parameters", "parameter": pairs.iter().map(|(n, v)| {
        let key = match v { Value::Bool(_) => "valueBoolean", _ => "valueString" };
        json!({"name": n, key: v})
    }).collect::<Vec<_>>()})
}

async fn op(app: &TestApp, token: &str, path: &str, body: &Value) -> common::Reply {
    let auth = format!("Bearer {token}");
    app.send_json("POST", path, &[("authorization", &auth)], body)
        .await
}

fn comment<'a>(resource: &'a Value, id: &str) -> &'a Value {
    resource["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap()
}

fn part<'a>(comment: &'a Value, name: &str) -> &'a Value {
    let p = comment["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == name)
        .unwrap();
    p.as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("value"))
        .unwrap()
        .1
}

async fn a_patient_comments_on_their_referral_with_provenance(app: TestApp) {
    let s = setup(&app).await;
    let path = format!("/fhir/default/ServiceRequest/{}/$add-comment", s.referral);
    let reply = op(
        &app,
        &s.patient_token,
        &path,
        &params(&[
            ("text", json!("I can only attend on **Tuesdays**")),
            ("category", json!("preference")),
            ("focus", json!("ServiceRequest.occurrence")),
        ]),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let out = reply.json();
    let id = out["parameter"][0]["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    let resource = &out["parameter"][2]["resource"];
    assert_eq!(resource["meta"]["versionId"], "2");
    let c = comment(resource, &id);
    assert_eq!(c["url"], EXT);
    assert_eq!(part(c, "text"), "I can only attend on **Tuesdays**");
    assert_eq!(part(c, "category"), "preference");
    assert_eq!(part(c, "status"), "active");
    assert_eq!(
        part(c, "author")["reference"],
        format!("Patient/{}", s.patient)
    );
    assert_eq!(part(c, "focus"), "ServiceRequest.occurrence");
    // Nothing else changed.
    let v1 = app
        .get(&format!(
            "/fhir/default/ServiceRequest/{}/_history/1",
            s.referral
        ))
        .await
        .json();
    let mut without = resource.clone();
    without.as_object_mut().unwrap().shift_remove("extension");
    without["meta"] = v1["meta"].clone();
    assert_eq!(without, v1);
    // The Provenance: target the new version, agent the patient.
    let provenance_ref = out["parameter"][1]["valueReference"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let provenance = app
        .get(&format!("/fhir/default/{provenance_ref}"))
        .await
        .json();
    assert_eq!(
        provenance["target"][0]["reference"],
        format!("ServiceRequest/{}/_history/2", s.referral)
    );
    assert_eq!(
        provenance["agent"][0]["who"]["reference"],
        format!("Patient/{}", s.patient)
    );
    assert_eq!(provenance["activity"]["coding"][0]["code"], "CREATE");
    // And an AuditEvent, in the same transaction.
    let audit = app
        .get("/fhir/default/AuditEvent?agent=nhs-login-1&action=U")
        .await
        .json();
    assert_eq!(audit["entry"].as_array().unwrap().len(), 1, "{audit}");

    // A correction request too; the clinician's $everything shows both, with provenance.
    let reply = op(
        &app,
        &s.patient_token,
        &path,
        &params(&[
            ("text", json!("My address is wrong: it is 22 Park Row")),
            ("category", json!("correction-request")),
        ]),
    )
    .await;
    assert_eq!(reply.status, 200);
    let everything = op_get(
        &app,
        &s.clinician_token,
        &format!("/fhir/default/Patient/{}/$everything", s.patient),
    )
    .await
    .json();
    let entries = everything["entry"].as_array().unwrap();
    let referral = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "ServiceRequest")
        .unwrap();
    assert_eq!(
        referral["resource"]["extension"].as_array().unwrap().len(),
        2
    );
    let provenances = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Provenance")
        .count();
    assert_eq!(provenances, 2, "{everything}");
    // Clinicians find resources with active patient comments.
    let found = op_get(
        &app,
        &s.clinician_token,
        "/fhir/default/ServiceRequest?patient-comment-status=active",
    )
    .await
    .json();
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["id"], s.referral.as_str());
    let patients = op_get(&app, &s.clinician_token, "/fhir/default/Patient?_has:ServiceRequest:subject:patient-comment-category=correction-request").await.json();
    assert_eq!(patients["total"], 1);
    assert_eq!(patients["entry"][0]["resource"]["id"], s.patient.as_str());
}

async fn op_get(app: &TestApp, token: &str, path: &str) -> common::Reply {
    let auth = format!("Bearer {token}");
    app.send("GET", path, &[("authorization", &auth)], None)
        .await
}

async fn who_may_comment_and_retract(app: TestApp) {
    let s = setup(&app).await;
    let add = |id: &str| format!("/fhir/default/ServiceRequest/{id}/$add-comment");
    let body = params(&[
        ("text", json!("Please phone rather than write")),
        ("category", json!("comment")),
    ]);
    // Not on another patient's record (404, never 403), and not by a feeder.
    op(&app, &s.patient_token, &add(&s.other_referral), &body)
        .await
        .assert_outcome(404, "not-found");
    let feeder = app.token("feeder", "default", "gp", None, None);
    op(&app, &feeder, &add(&s.referral), &body)
        .await
        .assert_outcome(403, "forbidden");
    // A clinician adds one for the patient: the patient is the author, the clinician the enterer.
    let reply = op(&app, &s.clinician_token, &add(&s.referral), &body).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let out = reply.json();
    let on_behalf = out["parameter"][0]["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        part(
            comment(&out["parameter"][2]["resource"], &on_behalf),
            "author"
        )["reference"],
        format!("Patient/{}", s.patient)
    );
    let provenance = app
        .get(&format!(
            "/fhir/default/{}",
            out["parameter"][1]["valueReference"]["reference"]
                .as_str()
                .unwrap()
        ))
        .await
        .json();
    assert_eq!(
        provenance["agent"][1]["type"]["coding"][0]["code"],
        "enterer"
    );
    assert_eq!(
        provenance["agent"][1]["who"]["reference"],
        "Practitioner/dr-khan"
    );
    // The patient's own comment, retracted by them: the text stays in history.
    let mine = op(&app, &s.patient_token, &add(&s.referral), &body)
        .await
        .json()["parameter"][0]["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    let retract = format!(
        "/fhir/default/ServiceRequest/{}/$retract-comment",
        s.referral
    );
    let reply = op(
        &app,
        &s.patient_token,
        &retract,
        &params(&[("comment", json!(mine))]),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let resource = &reply.json()["parameter"][2]["resource"];
    assert_eq!(part(comment(resource, &mine), "status"), "retracted");
    assert_eq!(
        part(comment(resource, &mine), "text"),
        "Please phone rather than write"
    );
    let before = app
        .get(&format!(
            "/fhir/default/ServiceRequest/{}/_history/3",
            s.referral
        ))
        .await
        .json();
    assert_eq!(part(comment(&before, &mine), "status"), "active");
    // A clinician marks a comment entered-in-error, with a reason (required).
    op(
        &app,
        &s.clinician_token,
        &retract,
        &params(&[("comment", json!(on_behalf))]),
    )
    .await
    .assert_outcome(400, "invalid");
    let reply = op(
        &app,
        &s.clinician_token,
        &retract,
        &params(&[
            ("comment", json!(on_behalf)),
            ("reason", json!("Recorded on the wrong referral")),
        ]),
    )
    .await;
    assert_eq!(reply.status, 200);
    let c = comment(&reply.json()["parameter"][2]["resource"], &on_behalf).clone();
    assert_eq!(part(&c, "status"), "entered-in-error");
    assert_eq!(part(&c, "statusReason"), "Recorded on the wrong referral");
    op(
        &app,
        &s.patient_token,
        &retract,
        &params(&[("comment", json!("no-such-comment"))]),
    )
    .await
    .assert_outcome(404, "not-found");
    // The only comment search match left is none active.
    let active = op_get(
        &app,
        &s.clinician_token,
        "/fhir/default/ServiceRequest?patient-comment-status=active",
    )
    .await
    .json();
    assert_eq!(active["total"], 0);
    // A patient changes nothing else: no PUT or PATCH.
    let mut changed = app
        .get(&format!("/fhir/default/ServiceRequest/{}", s.referral))
        .await
        .json();
    changed["status"] = json!("revoked");
    let auth = format!("Bearer {}", s.patient_token);
    app.send_json(
        "PUT",
        &format!("/fhir/default/ServiceRequest/{}", s.referral),
        &[("authorization", &auth)],
        &changed,
    )
    .await
    .assert_outcome(403, "forbidden");
    app.send(
        "PATCH",
        &format!("/fhir/default/ServiceRequest/{}", s.referral),
        &[
            ("authorization", &auth),
            ("content-type", "application/json-patch+json"),
        ],
        Some(br#"[{"op":"replace","path":"/status","value":"revoked"}]"#),
    )
    .await
    .assert_outcome(403, "forbidden");
}

async fn feeders_keep_patient_comments(app: TestApp) {
    let s = setup(&app).await;
    let add = format!("/fhir/default/ServiceRequest/{}/$add-comment", s.referral);
    let out = op(
        &app,
        &s.patient_token,
        &add,
        &params(&[
            ("text", json!("What matters to me: staying at home")),
            ("category", json!("what-matters-to-me")),
        ]),
    )
    .await
    .json();
    let id = out["parameter"][0]["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    // The feeder re-sends its own version of the referral, without the comment.
    let mut feed = minimal("ServiceRequest", Some(&s.patient));
    feed["id"] = json!(s.referral);
    feed["priority"] = json!("urgent");
    let reply = app
        .put(
            &format!("/fhir/default/ServiceRequest/{}", s.referral),
            &feed,
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let stored = reply.json();
    assert_eq!(stored["priority"], "urgent");
    assert_eq!(
        part(comment(&stored, &id), "text"),
        "What matters to me: staying at home"
    );
    // A payload that tampers with the comment changes nothing of it.
    let mut tampered = stored.clone();
    tampered["extension"][0]["extension"][0]["valueMarkdown"] = json!("Changed by the feeder");
    let again = app
        .put(
            &format!("/fhir/default/ServiceRequest/{}", s.referral),
            &tampered,
        )
        .await
        .json();
    assert_eq!(
        part(comment(&again, &id), "text"),
        "What matters to me: staying at home"
    );
    // PATCH keeps them too.
    let patched = app
        .send(
            "PATCH",
            &format!("/fhir/default/ServiceRequest/{}", s.referral),
            &[("content-type", "application/json-patch+json")],
            Some(br#"[{"op":"remove","path":"/extension"},{"op":"replace","path":"/priority","value":"routine"}]"#),
        )
        .await;
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    assert_eq!(part(comment(&patched.json(), &id), "status"), "active");
    // A create may not carry comments.
    let mut with_comment = minimal("ServiceRequest", Some(&s.patient));
    with_comment["extension"] = json!([stored["extension"][0].clone()]);
    app.post("/fhir/default/ServiceRequest", &with_comment)
        .await
        .assert_outcome(422, "business-rule");
}

async fn comment_text_limits(app: TestApp) {
    let s = setup(&app).await;
    let add = format!("/fhir/default/Patient/{}/$add-comment", s.patient);
    for text in [
        "x".repeat(2001),
        "<b>bold</b>".into(),
        "click <a href='x'>here</a>".into(),
        "<script>alert(1)</script>".into(),
        "   ".into(),
        "[x](javascript:alert(1))".into(),
    ] {
        let reply = op(
            &app,
            &s.patient_token,
            &add,
            &params(&[("text", json!(text)), ("category", json!("comment"))]),
        )
        .await;
        let issue = reply.assert_outcome(422, "invalid");
        assert_eq!(issue["expression"][0], "text");
    }
    op(
        &app,
        &s.patient_token,
        &add,
        &params(&[("text", json!("fine")), ("category", json!("complaint"))]),
    )
    .await
    .assert_outcome(400, "invalid");
    op(
        &app,
        &s.patient_token,
        &add,
        &params(&[("category", json!("comment"))]),
    )
    .await
    .assert_outcome(400, "invalid");
    let ok = op(
        &app,
        &s.patient_token,
        &add,
        &params(&[
            ("text", json!("x".repeat(2000))),
            ("category", json!("comment")),
        ]),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        app.get(&format!("/fhir/default/Patient/{}", s.other))
            .await
            .json()["meta"]["versionId"],
        "1"
    );
}

async fn preferences_are_validated_against_uk_core(app: TestApp) {
    let s = setup(&app).await;
    let path = format!("/fhir/default/Patient/{}/$set-preferences", s.patient);
    let reply = op(
        &app,
        &s.patient_token,
        &path,
        &params(&[
            ("contactMethod", json!("3")),
            ("contactTimes", json!("Weekday mornings")),
            ("writtenFormat", json!("12")),
            ("language", json!("cy")),
            ("preferred", json!(true)),
            ("interpreterRequired", json!(false)),
        ]),
    )
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let patient = app
        .get(&format!("/fhir/default/Patient/{}", s.patient))
        .await
        .json();
    let preference = patient["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["url"]
                == "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference"
        })
        .unwrap();
    assert_eq!(
        preference["extension"][1]["valueString"],
        "Weekday mornings"
    );
    assert_eq!(
        patient["communication"][0]["language"]["coding"][0]["code"],
        "cy"
    );
    assert_eq!(patient["communication"][0]["preferred"], true);
    // Clinicians see them; the change is provenanced.
    let seen = op_get(
        &app,
        &s.clinician_token,
        &format!("/fhir/default/Patient/{}", s.patient),
    )
    .await
    .json();
    assert_eq!(seen["communication"], patient["communication"]);
    let provenance = app
        .get(&format!(
            "/fhir/default/Provenance?target=Patient/{}",
            s.patient
        ))
        .await
        .json();
    assert!(provenance["total"].as_u64().unwrap() >= 1, "{provenance}");
    // A bad code is refused (422), and nothing changes.
    let reply = op(
        &app,
        &s.patient_token,
        &path,
        &params(&[("language", json!("english please"))]),
    )
    .await;
    reply.assert_outcome(422, "code-invalid");
    assert_eq!(
        app.get(&format!("/fhir/default/Patient/{}", s.patient))
            .await
            .json()["meta"]["versionId"],
        "2"
    );
    // Only for one's own record.
    op(
        &app,
        &s.patient_token,
        &format!("/fhir/default/Patient/{}/$set-preferences", s.other),
        &params(&[("language", json!("en"))]),
    )
    .await
    .assert_outcome(404, "not-found");
}

async fn a_failed_provenance_stores_no_comment(app: TestApp) {
    let s = setup(&app).await;
    // Fault injection: the database refuses Provenance rows.
    let fault = if app.database_url.starts_with("sqlite://") {
        let mut conn =
            diesel::SqliteConnection::establish(app.database_url.trim_start_matches("sqlite://"))
                .unwrap();
        diesel::sql_query("CREATE TRIGGER fail_provenance BEFORE INSERT ON resources WHEN NEW.resource_type = 'Provenance' BEGIN SELECT RAISE(ABORT, 'injected fault'); END").execute(&mut conn)
    } else {
        let mut conn = diesel::PgConnection::establish(&app.database_url).unwrap();
        diesel::sql_query("CREATE FUNCTION fail_provenance() RETURNS trigger AS $$ BEGIN IF NEW.resource_type = 'Provenance' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql").execute(&mut conn).unwrap();
        diesel::sql_query("CREATE TRIGGER fail_provenance BEFORE INSERT ON resources FOR EACH ROW EXECUTE FUNCTION fail_provenance()").execute(&mut conn)
    };
    fault.unwrap();
    let reply = op(
        &app,
        &s.patient_token,
        &format!("/fhir/default/ServiceRequest/{}/$add-comment", s.referral),
        &params(&[("text", json!("Lost?")), ("category", json!("comment"))]),
    )
    .await;
    assert_eq!(
        reply.status,
        500,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let stored = app
        .get(&format!("/fhir/default/ServiceRequest/{}", s.referral))
        .await
        .json();
    assert_eq!(stored["meta"]["versionId"], "1");
    assert!(stored.get("extension").is_none(), "{stored}");
    let audit = app
        .get("/fhir/default/AuditEvent?agent=nhs-login-1&action=U")
        .await
        .json();
    assert!(
        audit
            .get("entry")
            .is_none_or(|e| e.as_array().unwrap().is_empty()),
        "{audit}"
    );
}

on_both_backends!(
    a_patient_comments_on_their_referral_with_provenance,
    who_may_comment_and_retract,
    feeders_keep_patient_comments,
    comment_text_limits,
    preferences_are_validated_against_uk_core,
    a_failed_provenance_stores_no_comment,
);
