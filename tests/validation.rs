//! Validation on write, on SQLite and PostgreSQL: every invalid resource in the table is refused
//! with its status, issue code and expression (and nothing is stored); the UK Core examples are
//! accepted except the one with a bad NHS number; one Patient per NHS number, under concurrency too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{fixture, minimal, TestApp};
use serde_json::{json, Value};

/// One invalid resource and how the server must answer it.
struct Case {
    name: &'static str,
    resource: Value,
    status: u16,
    code: &'static str,
    expression: &'static str,
    /// `issue.details.coding[0].code`, when the NHS defines one for the problem.
    details: Option<&'static str>,
}

fn case(
    name: &'static str,
    resource: Value,
    status: u16,
    code: &'static str,
    expression: &'static str,
) -> Case {
    Case {
        name,
        resource,
        status,
        code,
        expression,
        details: None,
    }
}

fn with_details(mut c: Case, details: &'static str) -> Case {
    c.details = Some(details);
    c
}

/// A Patient with these elements added.
fn patient(extra: Value) -> Value {
    let mut p = json!({"resourceType": "Patient"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn encounter(extra: Value) -> Value {
    let mut e = minimal("Encounter", None);
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            e.as_object_mut().unwrap().remove(k);
        } else {
            e[k] = v.clone();
        }
    }
    e
}

fn service_request(patient_id: &str, extra: Value) -> Value {
    let mut s = minimal("ServiceRequest", Some(patient_id));
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            s.as_object_mut().unwrap().remove(k);
        } else {
            s[k] = v.clone();
        }
    }
    s
}

fn nhs(value: &str) -> Value {
    json!({"identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": value}]})
}

const NHS_STATUS_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";
const ETHNIC_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory";
const SOURCE_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-SourceOfServiceRequest";
const DIV: &str = "http://www.w3.org/1999/xhtml";

fn cases(patient_id: &str) -> Vec<Case> {
    let bad_nhs = |name, value: &str| {
        with_details(
            case(
                name,
                patient(nhs(value)),
                422,
                "value",
                "Patient.identifier[0].value",
            ),
            "INVALID_NHS_NUMBER",
        )
    };
    let ethnic = json!({"url": ETHNIC_URL, "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategory", "code": "A"}]}});
    let source = json!({"url": SOURCE_URL, "valueCodeableConcept": {"text": "GP"}});
    let contained_org = json!({"resourceType": "Organization", "id": "org1", "name": "Practice"});
    vec![
        // NHS numbers of every kind.
        bad_nhs("wrong check digit (the UK Core baby example)", "9912003890"),
        bad_nhs("wrong check digit", "9434765918"),
        bad_nhs("check digit would be 10", "9434765960"),
        bad_nhs("nine digits", "943476591"),
        bad_nhs("eleven digits", "94347659190"),
        bad_nhs("spaces in a stored value", "943 476 5919"),
        bad_nhs("dashes", "943-476-5919"),
        bad_nhs("all ones", "1111111111"),
        bad_nhs("all zeros", "0000000000"),
        bad_nhs("letters", "ABCDEFGHIJ"),
        with_details(
            case(
                "legacy system, bad number",
                patient(
                    json!({"identifier": [{"system": "http://fhir.nhs.net/Id/nhs-number", "value": "9434765918"}]}),
                ),
                422,
                "value",
                "Patient.identifier[0].value",
            ),
            "INVALID_NHS_NUMBER",
        ),
        with_details(
            case(
                "NHS number identifier without a value",
                patient(json!({"identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number"}]})),
                422,
                "required",
                "Patient.identifier[0].value",
            ),
            "INVALID_NHS_NUMBER",
        ),
        with_details(
            case(
                "bad NHS number in a reference's identifier",
                encounter(
                    json!({"subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "1234567890"}}}),
                ),
                422,
                "value",
                "Encounter.subject.identifier.value",
            ),
            "INVALID_NHS_NUMBER",
        ),
        case(
            "two NHS numbers (UK Core slice max 1)",
            patient(json!({"identifier": [
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"},
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}
            ]})),
            422,
            "structure",
            "Patient.identifier",
        ),
        // Unknown elements.
        case(
            "unknown element",
            patient(json!({"colour": "blue"})),
            400,
            "structure",
            "Patient.colour",
        ),
        case(
            "unknown nested element",
            patient(json!({"name": [{"surname": "Smith"}]})),
            400,
            "structure",
            "Patient.name[0].surname",
        ),
        case(
            "unknown element in a datatype",
            encounter(json!({"period": {"begin": "2020-01-01"}})),
            400,
            "structure",
            "Encounter.period.begin",
        ),
        case(
            "unknown element in a primitive's extension holder",
            patient(json!({"_birthDate": {"foo": 1}})),
            400,
            "structure",
            "Patient._birthDate.foo",
        ),
        case(
            "extension holder for an unknown element",
            patient(json!({"_colour": {"id": "x"}})),
            400,
            "structure",
            "Patient._colour",
        ),
        case(
            "choice with a type it does not allow",
            patient(json!({"deceasedString": "yes"})),
            400,
            "structure",
            "Patient.deceasedString",
        ),
        // Wrong JSON types.
        case(
            "boolean as a string",
            patient(json!({"active": "true"})),
            400,
            "value",
            "Patient.active",
        ),
        case(
            "date as a number",
            patient(json!({"birthDate": 19800101})),
            400,
            "value",
            "Patient.birthDate",
        ),
        case(
            "array element as an object",
            patient(json!({"name": {"family": "Smith"}})),
            400,
            "structure",
            "Patient.name",
        ),
        case(
            "single element as an array",
            patient(json!({"gender": ["male"]})),
            400,
            "structure",
            "Patient.gender",
        ),
        case(
            "integer as a string",
            patient(json!({"multipleBirthInteger": "2"})),
            400,
            "value",
            "Patient.multipleBirthInteger",
        ),
        case(
            "integer with a fraction",
            patient(json!({"multipleBirthInteger": 2.5})),
            400,
            "value",
            "Patient.multipleBirthInteger",
        ),
        case(
            "decimal as a string",
            json!({"resourceType": "Location", "position": {"longitude": -1.5, "latitude": "51.5"}}),
            400,
            "value",
            "Location.position.latitude",
        ),
        case(
            "boolean as a number",
            json!({"resourceType": "PractitionerRole", "active": 1}),
            400,
            "value",
            "PractitionerRole.active",
        ),
        case(
            "identifier as a string",
            patient(json!({"identifier": "x"})),
            400,
            "structure",
            "Patient.identifier",
        ),
        case(
            "repeating string not in an array",
            patient(json!({"name": [{"given": "Jane"}]})),
            400,
            "structure",
            "Patient.name[0].given",
        ),
        case(
            "complex type as a string",
            patient(json!({"maritalStatus": "married"})),
            400,
            "structure",
            "Patient.maritalStatus",
        ),
        // Bad dates and primitive formats.
        case(
            "month 13",
            patient(json!({"birthDate": "1980-13-01"})),
            400,
            "value",
            "Patient.birthDate",
        ),
        case(
            "date in the wrong format",
            patient(json!({"birthDate": "01/02/1980"})),
            400,
            "value",
            "Patient.birthDate",
        ),
        case(
            "dateTime without seconds or zone",
            patient(json!({"deceasedDateTime": "2020-01-01T10:00"})),
            400,
            "value",
            "Patient.deceasedDateTime",
        ),
        case(
            "dateTime with a one-digit month",
            encounter(json!({"period": {"start": "2020-1-01"}})),
            400,
            "value",
            "Encounter.period.start",
        ),
        case(
            "contained resource with a bad id",
            patient(
                json!({"contained": [{"resourceType": "Organization", "id": "bad id"}], "managingOrganization": {"reference": "#bad id"}}),
            ),
            400,
            "value",
            "Patient.contained[0].id",
        ),
        case(
            "uri with a space",
            patient(json!({"meta": {"profile": ["http://x y"]}})),
            400,
            "value",
            "Patient.meta.profile[0]",
        ),
        case(
            "positiveInt zero",
            json!({"resourceType": "Organization", "telecom": [{"system": "phone", "value": "1", "rank": 0}]}),
            400,
            "value",
            "Organization.telecom[0].rank",
        ),
        case(
            "number as text",
            json!({"resourceType": "Location", "position": {"longitude": "west", "latitude": 51.5}}),
            400,
            "value",
            "Location.position.longitude",
        ),
        // Two values for one choice element.
        case(
            "two deceased[x]",
            patient(json!({"deceasedBoolean": true, "deceasedDateTime": "2020-01-01"})),
            400,
            "structure",
            "Patient.deceasedDateTime",
        ),
        case(
            "two multipleBirth[x]",
            patient(json!({"multipleBirthBoolean": true, "multipleBirthInteger": 2})),
            400,
            "structure",
            "Patient.multipleBirthInteger",
        ),
        case(
            "two value[x] in an extension",
            patient(
                json!({"extension": [{"url": "http://example.org/x", "valueString": "a", "valueCode": "b"}]}),
            ),
            400,
            "structure",
            "Patient.extension[0].valueCode",
        ),
        // Empty values.
        case(
            "empty array",
            patient(json!({"name": []})),
            400,
            "structure",
            "Patient.name",
        ),
        case(
            "empty object",
            patient(json!({"name": [{}]})),
            400,
            "structure",
            "Patient.name[0]",
        ),
        case(
            "empty string",
            patient(json!({"name": [{"family": ""}]})),
            400,
            "structure",
            "Patient.name[0].family",
        ),
        case(
            "empty string in a list",
            patient(json!({"address": [{"line": [""]}]})),
            400,
            "structure",
            "Patient.address[0].line[0]",
        ),
        case(
            "empty meta",
            patient(json!({"meta": {"tag": []}})),
            400,
            "structure",
            "Patient.meta.tag",
        ),
        case(
            "null value",
            patient(json!({"gender": null})),
            400,
            "structure",
            "Patient.gender",
        ),
        // Maximum cardinality exceeded.
        case(
            "ethnic category twice (UK Core max 1)",
            patient(json!({"extension": [ethnic.clone(), ethnic]})),
            422,
            "structure",
            "Patient.extension",
        ),
        case(
            "source of service request twice (UK Core max 1)",
            service_request(patient_id, json!({"extension": [source.clone(), source]})),
            422,
            "structure",
            "ServiceRequest.extension",
        ),
        // Missing required elements.
        case(
            "Encounter without status",
            encounter(json!({"status": null})),
            422,
            "required",
            "Encounter.status",
        ),
        case(
            "Encounter without class",
            encounter(json!({"class": null})),
            422,
            "required",
            "Encounter.class",
        ),
        case(
            "ServiceRequest without intent",
            service_request(patient_id, json!({"intent": null})),
            422,
            "required",
            "ServiceRequest.intent",
        ),
        case(
            "ServiceRequest without subject",
            service_request(patient_id, json!({"subject": null})),
            422,
            "required",
            "ServiceRequest.subject",
        ),
        case(
            "extension without url",
            patient(json!({"extension": [{"valueString": "x"}]})),
            422,
            "required",
            "Patient.extension[0].url",
        ),
        case(
            "link without other",
            patient(json!({"link": [{"type": "seealso"}]})),
            422,
            "required",
            "Patient.link[0].other",
        ),
        case(
            "communication without language",
            patient(json!({"communication": [{"preferred": true}]})),
            422,
            "required",
            "Patient.communication[0].language",
        ),
        case(
            "position without longitude",
            json!({"resourceType": "Location", "position": {"latitude": 51.5}}),
            422,
            "required",
            "Location.position.longitude",
        ),
        // Codes outside a required value set.
        case(
            "gender F",
            patient(json!({"gender": "F"})),
            422,
            "code-invalid",
            "Patient.gender",
        ),
        case(
            "encounter status completed",
            encounter(json!({"status": "completed"})),
            422,
            "code-invalid",
            "Encounter.status",
        ),
        case(
            "intent referral",
            service_request(patient_id, json!({"intent": "referral"})),
            422,
            "code-invalid",
            "ServiceRequest.intent",
        ),
        case(
            "priority urgentish",
            service_request(patient_id, json!({"priority": "urgentish"})),
            422,
            "code-invalid",
            "ServiceRequest.priority",
        ),
        case(
            "name use alias",
            patient(json!({"name": [{"use": "alias", "family": "X"}]})),
            422,
            "code-invalid",
            "Patient.name[0].use",
        ),
        case(
            "telecom use pager",
            patient(json!({"telecom": [{"system": "phone", "value": "1", "use": "pager"}]})),
            422,
            "code-invalid",
            "Patient.telecom[0].use",
        ),
        case(
            "location status open",
            json!({"resourceType": "Location", "status": "open"}),
            422,
            "code-invalid",
            "Location.status",
        ),
        case(
            "NHS number verification status 99 (UK Core required value set)",
            patient(json!({"identifier": [{
                "extension": [{"url": NHS_STATUS_URL, "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland", "code": "99"}]}}],
                "system": "https://fhir.nhs.uk/Id/nhs-number",
                "value": "9434765919"
            }]})),
            422,
            "code-invalid",
            "Patient.identifier[0].extension[0].valueCodeableConcept",
        ),
        case(
            "NHS number verification status as a string (UK Core allows only CodeableConcept)",
            patient(json!({"identifier": [{
                "extension": [{"url": NHS_STATUS_URL, "valueString": "01"}],
                "system": "https://fhir.nhs.uk/Id/nhs-number",
                "value": "9434765919"
            }]})),
            422,
            "structure",
            "Patient.identifier[0].extension[0].valueString",
        ),
        // Narrative and text safety.
        case(
            "script in narrative",
            patient(
                json!({"text": {"status": "generated", "div": format!("<div xmlns=\"{DIV}\"><script>alert(1)</script>Hi</div>")}}),
            ),
            422,
            "invariant",
            "Patient.text.div",
        ),
        case(
            "event handler in narrative",
            patient(
                json!({"text": {"status": "generated", "div": format!("<div xmlns=\"{DIV}\"><p onclick=\"x()\">Hi</p></div>")}}),
            ),
            422,
            "invariant",
            "Patient.text.div",
        ),
        case(
            "narrative outside the XHTML namespace",
            patient(json!({"text": {"status": "generated", "div": "<div>Hi</div>"}})),
            422,
            "invariant",
            "Patient.text.div",
        ),
        case(
            "script URL in narrative",
            patient(
                json!({"text": {"status": "generated", "div": format!("<div xmlns=\"{DIV}\"><a href=\"javascript:x()\">Hi</a></div>")}}),
            ),
            422,
            "invariant",
            "Patient.text.div",
        ),
        case(
            "script in a plain string",
            patient(json!({"name": [{"text": "Jane <script>x()</script>"}]})),
            422,
            "security",
            "Patient.name[0].text",
        ),
        // References.
        with_details(
            case(
                "dangling subject",
                encounter(json!({"subject": {"reference": "Patient/does-not-exist"}})),
                422,
                "not-found",
                "Encounter.subject.reference",
            ),
            "REFERENCE_NOT_FOUND",
        ),
        with_details(
            case(
                "dangling requester",
                service_request(
                    patient_id,
                    json!({"requester": {"reference": "Practitioner/nobody"}}),
                ),
                422,
                "not-found",
                "ServiceRequest.requester.reference",
            ),
            "REFERENCE_NOT_FOUND",
        ),
        with_details(
            case(
                "dangling GP",
                patient(json!({"generalPractitioner": [{"reference": "Organization/none"}]})),
                422,
                "not-found",
                "Patient.generalPractitioner[0].reference",
            ),
            "REFERENCE_NOT_FOUND",
        ),
        with_details(
            case(
                "malformed reference",
                encounter(json!({"subject": {"reference": "Patient/"}})),
                422,
                "invalid",
                "Encounter.subject.reference",
            ),
            "REFERENCE_NOT_FOUND",
        ),
        with_details(
            case(
                "reference to a type not allowed",
                encounter(json!({"subject": {"reference": "Practitioner/x"}})),
                422,
                "invalid",
                "Encounter.subject.reference",
            ),
            "REFERENCE_NOT_FOUND",
        ),
        with_details(
            case(
                "reference to a missing contained resource",
                patient(json!({"managingOrganization": {"reference": "#nope"}})),
                422,
                "invalid",
                "Patient.managingOrganization.reference",
            ),
            "REFERENCE_NOT_FOUND",
        ),
        with_details(
            case(
                "urn:uuid outside a Bundle",
                encounter(
                    json!({"subject": {"reference": "urn:uuid:8f5e1ad2-1b7e-4b68-9b6b-1f8d7c1c9a11"}}),
                ),
                422,
                "invalid",
                "Encounter.subject.reference",
            ),
            "REFERENCE_NOT_FOUND",
        ),
        // Invariants.
        case(
            "ext-1: value and nested extensions",
            patient(
                json!({"extension": [{"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}]}),
            ),
            422,
            "invariant",
            "Patient.extension[0]",
        ),
        case(
            "ext-1: neither value nor extensions",
            patient(json!({"extension": [{"url": "http://example.org/x"}]})),
            422,
            "invariant",
            "Patient.extension[0]",
        ),
        case(
            "per-1: period ends before it starts",
            encounter(json!({"period": {"start": "2020-05-02", "end": "2020-05-01"}})),
            422,
            "invariant",
            "Encounter.period",
        ),
        case(
            "pat-1: contact with nothing to reach them by",
            patient(json!({"contact": [{"gender": "female"}]})),
            422,
            "invariant",
            "Patient.contact[0]",
        ),
        case(
            "prr-1: order detail without a code",
            service_request(patient_id, json!({"orderDetail": [{"text": "fasting"}]})),
            422,
            "invariant",
            "ServiceRequest",
        ),
        case(
            "dom-2: nested contained resources",
            patient(
                json!({"contained": [{"resourceType": "Organization", "id": "o", "contained": [{"resourceType": "Organization", "id": "p"}]}], "managingOrganization": {"reference": "#o"}}),
            ),
            422,
            "invariant",
            "Patient.contained[0]",
        ),
        case(
            "dom-3: contained resource nobody refers to",
            patient(json!({"contained": [contained_org.clone()]})),
            422,
            "invariant",
            "Patient.contained[0]",
        ),
        case(
            "dom-4: contained resource with a version",
            patient(
                json!({"contained": [{"resourceType": "Organization", "id": "org1", "meta": {"versionId": "1"}}], "managingOrganization": {"reference": "#org1"}}),
            ),
            422,
            "invariant",
            "Patient.contained[0]",
        ),
        case(
            "dom-5: contained resource with security labels",
            patient(
                json!({"contained": [{"resourceType": "Organization", "id": "org1", "meta": {"security": [{"code": "R"}]}}], "managingOrganization": {"reference": "#org1"}}),
            ),
            422,
            "invariant",
            "Patient.contained[0]",
        ),
    ]
}

async fn invalid_resources_are_refused_with_the_exact_issue(app: TestApp) {
    let patient_id = app
        .create("default", &json!({"resourceType": "Patient"}))
        .await;
    let all = cases(&patient_id);
    assert!(all.len() >= 60, "{} cases", all.len());
    let before = app.get("/fhir/default/_history").await.json()["entry"]
        .as_array()
        .map_or(0, Vec::len);
    for c in &all {
        let rtype = c.resource["resourceType"].as_str().unwrap();
        let reply = app
            .post(&format!("/fhir/default/{rtype}"), &c.resource)
            .await;
        let body = String::from_utf8_lossy(&reply.body).to_string();
        assert_eq!(reply.status.as_u16(), c.status, "{}: {body}", c.name);
        let outcome = reply.json();
        let issues = outcome["issue"].as_array().unwrap();
        let found = issues.iter().any(|i| {
            i["severity"] == "error"
                && i["code"] == c.code
                && i["expression"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|x| x == c.expression))
                && c.details
                    .is_none_or(|d| i["details"]["coding"][0]["code"] == d)
        });
        assert!(
            found,
            "{}: no error {} ({:?}) at {} in {body}",
            c.name, c.code, c.details, c.expression
        );
    }
    let after = app.get("/fhir/default/_history").await.json()["entry"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(before, after, "a refused write stored something");
}

async fn uk_core_examples_are_accepted_except_the_bad_nhs_number(app: TestApp) {
    let examples = [
        "UKCore-Patient-RichardSmith-Example",
        "UKCore-Encounter-InpatientEncounter-Example",
        "UKCore-ServiceRequest-CTChestScan-Example",
        "UKCore-ServiceRequest-ColonoscopyRequest-Example",
        "UKCore-ServiceRequest-ECG-Example",
        "UKCore-ServiceRequest-HipReplacement-Example",
        "Extension-UKCore-BirthSex-Example",
        "Extension-UKCore-ContactPreference-Example",
        "Extension-UKCore-EthnicCategory-Example",
        "Extension-UKCore-NHSNumberUnavailableReason-Example",
        "Extension-UKCore-NHSNumberVerificationStatus-Example",
        "Extension-UKCore-SourceOfServiceRequest-Example",
    ];
    // First the resources the examples refer to, as minimal stand-ins.
    let mut targets = std::collections::BTreeSet::new();
    for name in examples {
        collect_references(
            &fixture(&format!("tests/fixtures/ukcore/{name}.json")),
            &mut targets,
        );
    }
    let mut patient_stub = None;
    for (rtype, id) in &targets {
        let mut body = minimal(rtype, patient_stub.as_deref());
        body["id"] = json!(id);
        let reply = app
            .send_json(
                "PUT",
                &format!("/fhir/default/{rtype}/{id}"),
                &[("prefer", "handling=lenient")],
                &body,
            )
            .await;
        assert!(
            reply.status.is_success(),
            "{rtype}/{id}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        if rtype == "Patient" {
            patient_stub = Some(id.clone());
        }
    }
    for name in examples {
        let resource = fixture(&format!("tests/fixtures/ukcore/{name}.json"));
        let rtype = resource["resourceType"].as_str().unwrap();
        let reply = app.post(&format!("/fhir/default/{rtype}"), &resource).await;
        assert_eq!(
            reply.status,
            201,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let baby = fixture("tests/fixtures/ukcore/UKCore-Patient-BabyPatient-Example.json");
    let reply = app.post("/fhir/default/Patient", &baby).await;
    let issue = reply.assert_outcome(422, "value");
    assert_eq!(issue["details"]["coding"][0]["code"], "INVALID_NHS_NUMBER");
    assert_eq!(issue["expression"][0], "Patient.identifier[0].value");
}

/// Every `Type/id` reference to a stored type in a resource.
fn collect_references(value: &Value, out: &mut std::collections::BTreeSet<(String, String)>) {
    const STORED: [&str; 7] = [
        "Patient",
        "Encounter",
        "ServiceRequest",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
    ];
    match value {
        Value::Object(map) => {
            if let Some((rtype, id)) = map
                .get("reference")
                .and_then(Value::as_str)
                .and_then(|r| r.split_once('/'))
            {
                if STORED.contains(&rtype) {
                    out.insert((rtype.to_owned(), id.to_owned()));
                }
            }
            map.values().for_each(|v| collect_references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

async fn legacy_nhs_number_system_is_normalised(app: TestApp) {
    let reply = app
        .post(
            "/fhir/default/Patient",
            &json!({"resourceType": "Patient", "identifier": [{"system": "http://fhir.nhs.net/Id/nhs-number", "value": "9434765919"}]}),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.json()["identifier"][0]["system"],
        "https://fhir.nhs.uk/Id/nhs-number"
    );
}

async fn one_patient_per_nhs_number(app: TestApp) {
    let first = app.create("default", &patient(nhs("9434765919"))).await;
    let second = app
        .post("/fhir/default/Patient", &patient(nhs("9434765919")))
        .await;
    let issue = second.assert_outcome(409, "duplicate");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains(&format!("Patient/{first}")),
        "{issue}"
    );
    // Updating the holder keeps its number; another Patient cannot take it by update either.
    let mut same = patient(nhs("9434765919"));
    same["id"] = json!(first);
    same["active"] = json!(true);
    assert_eq!(
        app.put(&format!("/fhir/default/Patient/{first}"), &same)
            .await
            .status,
        200
    );
    let other = app.create("default", &patient(nhs("9000000009"))).await;
    let mut steal = patient(nhs("9434765919"));
    steal["id"] = json!(other);
    app.put(&format!("/fhir/default/Patient/{other}"), &steal)
        .await
        .assert_outcome(409, "duplicate");
    // Another local system is another record: the same number is fine there.
    app.add_system("elsewhere").await;
    assert_eq!(
        app.post("/fhir/elsewhere/Patient", &patient(nhs("9434765919")))
            .await
            .status,
        201
    );
    // Deleting the holder frees the number.
    app.delete(&format!("/fhir/default/Patient/{first}")).await;
    assert_eq!(
        app.post("/fhir/default/Patient", &patient(nhs("9434765919")))
            .await
            .status,
        201
    );
}

async fn concurrent_creates_of_one_nhs_number_make_one_patient(app: TestApp) {
    let replies = futures_util::future::join_all((0..20).map(|_| {
        let app = &app;
        async move {
            app.post("/fhir/default/Patient", &patient(nhs("9000000009")))
                .await
        }
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let refused = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!(created, 1, "exactly one create succeeds");
    assert_eq!(refused, 19, "the others are refused as duplicates");
}

async fn lenient_handling_downgrades_unknown_elements_and_references(app: TestApp) {
    let reply = app
        .send_json(
            "POST",
            "/fhir/default/Encounter",
            &[("prefer", "handling=lenient")],
            &encounter(
                json!({"colour": "blue", "subject": {"reference": "Patient/not-loaded-yet"}}),
            ),
        )
        .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Lenient does not let a bad NHS number through.
    let bad = app
        .send_json(
            "POST",
            "/fhir/default/Patient",
            &[("prefer", "handling=lenient")],
            &patient(nhs("9434765918")),
        )
        .await;
    bad.assert_outcome(422, "value");
}

async fn validate_operation_reports_every_issue_without_storing(app: TestApp) {
    let good = patient(nhs("9434765919"));
    let reply = app.post("/fhir/default/Patient/$validate", &good).await;
    assert_eq!(reply.status, 200);
    let outcome = reply.json();
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["severity"] != "error"),
        "{outcome}"
    );

    let mut bad = patient(nhs("9434765918"));
    bad["gender"] = json!("F");
    bad["colour"] = json!("blue");
    let reply = app.post("/fhir/default/Patient/$validate", &bad).await;
    assert_eq!(reply.status, 200);
    let outcome = reply.json();
    let issues = outcome["issue"].as_array().unwrap();
    let has = |code: &str, at: &str| {
        issues
            .iter()
            .any(|i| i["severity"] == "error" && i["code"] == code && i["expression"][0] == at)
    };
    assert!(has("value", "Patient.identifier[0].value"), "{outcome}");
    assert!(has("code-invalid", "Patient.gender"), "{outcome}");
    assert!(has("structure", "Patient.colour"), "{outcome}");
    assert!(
        issues.iter().any(|i| i["severity"] == "warning"),
        "warnings are reported too: {outcome}"
    );

    // Parameters form, with a profile the server does not know and a dangling reference.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": encounter(json!({"subject": {"reference": "Patient/nope"}}))},
        {"name": "mode", "valueCode": "create"},
        {"name": "profile", "valueUri": "http://example.org/StructureDefinition/unknown"}
    ]});
    let outcome = app
        .post("/fhir/default/Encounter/$validate", &parameters)
        .await
        .json();
    let issues = outcome["issue"].as_array().unwrap();
    assert!(
        issues
            .iter()
            .any(|i| i["details"]["coding"][0]["code"] == "REFERENCE_NOT_FOUND"),
        "{outcome}"
    );
    assert!(
        issues.iter().any(|i| i["severity"] == "warning"
            && i["diagnostics"].as_str().unwrap().contains("example.org")),
        "{outcome}"
    );

    // Instance level: update needs matching ids; delete needs the instance.
    let id = app.create("default", &good).await;
    let mut other_id = good.clone();
    other_id["id"] = json!("someone-else");
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": other_id},
        {"name": "mode", "valueCode": "update"}
    ]});
    let outcome = app
        .post(
            &format!("/fhir/default/Patient/{id}/$validate"),
            &parameters,
        )
        .await
        .json();
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["expression"][0] == "Patient.id"),
        "{outcome}"
    );
    // A second Patient with the same NHS number would be refused.
    let outcome = app
        .post("/fhir/default/Patient/$validate", &good)
        .await
        .json();
    assert_eq!(outcome["issue"][0]["code"], "duplicate", "{outcome}");
    let delete = json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]});
    assert_eq!(
        app.post(&format!("/fhir/default/Patient/{id}/$validate"), &delete)
            .await
            .status,
        200
    );
    app.post("/fhir/default/Patient/nobody/$validate", &delete)
        .await
        .assert_outcome(404, "not-found");
    app.post("/fhir/default/Patient/$validate", &json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "merge"}]}))
        .await
        .assert_outcome(400, "invalid");
    app.post(
        "/fhir/default/Patient/$validate",
        &minimal("Encounter", None),
    )
    .await
    .assert_outcome(400, "invalid");
    // Only the create above was stored.
    let history = app.get("/fhir/default/_history").await.json();
    assert_eq!(history["entry"].as_array().unwrap().len(), 1);
}

async fn conformance_resources_are_served_read_only(app: TestApp) {
    let url = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient";
    let found = app
        .get(&format!("/fhir/default/StructureDefinition?url={url}"))
        .await
        .json();
    assert_eq!(found["type"], "searchset");
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["url"], url);
    assert_eq!(found["entry"][0]["search"]["mode"], "match");
    let read = app
        .get("/fhir/default/StructureDefinition/UKCore-Patient")
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["url"], url);
    let comments = app
        .get("/fhir/default/StructureDefinition?url=https://fhir.carerecord.dev/StructureDefinition/Extension-CareRecord-PatientComment")
        .await
        .json();
    assert_eq!(comments["total"], 1);
    for (rtype, id) in [
        ("ValueSet", "CareRecord-PatientCommentCategory"),
        ("CodeSystem", "CareRecord-PatientCommentStatus"),
        ("ValueSet", "administrative-gender"),
        ("StructureDefinition", "Patient"),
        ("OperationDefinition", "Resource-validate"),
        ("SearchParameter", "Patient-identifier"),
    ] {
        assert_eq!(
            app.get(&format!("/fhir/default/{rtype}/{id}")).await.status,
            200,
            "{rtype}/{id}"
        );
    }
    let paged = app.get("/fhir/default/ValueSet?_count=5").await.json();
    assert_eq!(paged["entry"].as_array().unwrap().len(), 5);
    assert!(paged["link"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["relation"] == "next"));
    app.get("/fhir/default/StructureDefinition/nope")
        .await
        .assert_outcome(404, "not-found");
    app.put(
        "/fhir/default/StructureDefinition/Patient",
        &json!({"resourceType": "StructureDefinition", "id": "Patient"}),
    )
    .await
    .assert_outcome(405, "not-supported");
    app.get("/fhir/default/ValueSet?color=red")
        .await
        .assert_outcome(400, "invalid");
}

fn comment(parts: Value) -> Value {
    json!({"url": "https://fhir.carerecord.dev/StructureDefinition/Extension-CareRecord-PatientComment", "extension": parts})
}

async fn patient_comment_extension_is_validated_like_any_other(app: TestApp) {
    // Feeders cannot write comments (they are added with $add-comment), so the extension is
    // checked through $validate: the same validation a write runs.
    let patient_id = app
        .create("default", &json!({"resourceType": "Patient"}))
        .await;
    let check = |resource: Value| {
        let app = &app;
        async move {
            let outcome = app
                .post("/fhir/default/ServiceRequest/$validate", &resource)
                .await
                .json();
            outcome["issue"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["severity"] == "error")
                .map(|i| i["code"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    let good_parts = json!([
        {"url": "text", "valueMarkdown": "Please call me after 5pm"},
        {"url": "category", "valueCode": "preference"},
        {"url": "author", "valueReference": {"reference": format!("Patient/{patient_id}")}},
        {"url": "recorded", "valueDateTime": "2026-11-21T10:00:00Z"},
        {"url": "status", "valueCode": "active"}
    ]);
    let errors = check(service_request(
        &patient_id,
        json!({"extension": [comment(good_parts.clone())]}),
    ))
    .await;
    assert!(errors.is_empty(), "{errors:?}");

    let mut bad_category = good_parts.clone();
    bad_category[1]["valueCode"] = json!("complaint");
    assert!(check(service_request(
        &patient_id,
        json!({"extension": [comment(bad_category)]})
    ))
    .await
    .contains(&"code-invalid".to_owned()));
    let mut no_text = good_parts.clone();
    no_text.as_array_mut().unwrap().remove(0);
    assert!(check(service_request(
        &patient_id,
        json!({"extension": [comment(no_text)]})
    ))
    .await
    .contains(&"required".to_owned()));
    let mut extra = good_parts.clone();
    extra
        .as_array_mut()
        .unwrap()
        .push(json!({"url": "mood", "valueString": "cross"}));
    assert!(check(service_request(
        &patient_id,
        json!({"extension": [comment(extra)]})
    ))
    .await
    .contains(&"structure".to_owned()));
    let mut author_practitioner = good_parts;
    author_practitioner[2]["valueReference"]["reference"] = json!("Practitioner/x");
    assert!(check(service_request(
        &patient_id,
        json!({"extension": [comment(author_practitioner)]})
    ))
    .await
    .contains(&"invalid".to_owned()));
}

/// The server agrees with the HL7 Java validator on the community's structural test cases.
async fn community_validator_cases_get_the_reference_verdict(app: TestApp) {
    // (file, status the server answers, an expression the first error names)
    let cases: [(&str, u16, Option<&str>); 27] = [
        ("ai1", 201, None),
        ("ai2", 201, None),
        ("ai3", 400, Some("Patient.unknownElement")),
        ("ai4", 400, Some("Patient.birthDate")),
        ("json-good", 201, None),
        ("patient-example-ra4", 201, None),
        ("pat-security-good1", 201, None),
        ("pat-security-good3", 201, None),
        ("pat-security-bad-xhtml", 422, Some("Patient.text.div")),
        ("pat-security-bad-string", 422, Some("Patient.name[0].text")),
        ("patient-id-bad-1", 400, Some("Patient.id")),
        ("patient-id-bad-2", 400, Some("Patient.id")),
        ("patient-id-bad-3", 400, Some("Patient.id")),
        ("resource-invalid-id-1", 400, Some("Location.id")),
        (
            "resource-invalid-id-3",
            400,
            Some("Location.contained[0].id"),
        ),
        ("resource-invalid-eid-0", 201, None),
        ("extension-example-1", 201, None),
        ("extension-example-2", 201, None),
        ("synthea", 400, Some("Encounter.reasonCode")),
        ("singleton-simple-good", 201, None),
        ("singleton-complex-good", 201, None),
        ("list-multiple-present", 201, None),
        ("bad-json-close-1", 400, None),
        ("bad-json-close-2", 400, None),
        ("json-comma-bad-1", 400, None),
        ("json-no-quotes-1", 400, None),
        ("json-comments-1", 400, None),
    ];
    for (name, status, expression) in cases {
        let path = format!(
            "{}/tests/fixtures/validator-cases/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read(&path).unwrap();
        // The resource type from the text, for the unparseable cases too.
        let rtype = String::from_utf8_lossy(&text)
            .split("\"resourceType\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .filter(|t| ["Patient", "Encounter", "Location"].contains(t))
            .unwrap_or("Patient")
            .to_owned();
        // Validated as a create would be, references aside (the cases refer to nothing loaded).
        let reply = app
            .send(
                "POST",
                &format!("/fhir/default/{rtype}/$validate"),
                &[("content-type", "application/fhir+json")],
                Some(&text),
            )
            .await;
        let body = String::from_utf8_lossy(&reply.body).to_string();
        let outcome = reply.json();
        let errors: Vec<&Value> = outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["severity"] == "error" && i["code"] != "not-found")
            .collect();
        match (status, expression) {
            (201, _) => assert!(reply.status == 200 && errors.is_empty(), "{name}: {body}"),
            (_, None) => assert_eq!(reply.status.as_u16(), status, "{name}: {body}"),
            (_, Some(expression)) => assert!(
                errors.iter().any(|e| e["expression"][0] == expression),
                "{name}: expected an error at {expression}: {body}"
            ),
        }
    }
}

on_both_backends!(
    community_validator_cases_get_the_reference_verdict,
    validate_operation_reports_every_issue_without_storing,
    conformance_resources_are_served_read_only,
    patient_comment_extension_is_validated_like_any_other,
    invalid_resources_are_refused_with_the_exact_issue,
    uk_core_examples_are_accepted_except_the_bad_nhs_number,
    legacy_nhs_number_system_is_normalised,
    one_patient_per_nhs_number,
    concurrent_creates_of_one_nhs_number_make_one_patient,
    lenient_handling_downgrades_unknown_elements_and_references,
);
