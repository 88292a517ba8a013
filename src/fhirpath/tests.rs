use serde_json::{json, Value};

use super::*;

/// A compact, unambiguous rendering of a result: JSON nodes as JSON (resources as
/// `Type/id`) with `:type` when known and `+ext` when carrying `_name` content; literals as
/// `'string'`, `1`, `1.5`, `true`, `@date`; resolved references as `->Type`.
fn render(item: &Item<'_>) -> String {
    match item {
        Item::Node {
            value,
            fhir_type,
            primitive_element,
        } => {
            let resource = value.get("resourceType").and_then(Value::as_str);
            let mut text = match (resource, value) {
                (Some(rt), _) => format!("{rt}/{}", value["id"].as_str().unwrap_or("?")),
                (None, Value::Null) => "novalue".to_owned(),
                (None, v) => v.to_string(),
            };
            if let (None, Some(t)) = (resource, fhir_type) {
                text.push(':');
                text.push_str(t);
            }
            if primitive_element.is_some() {
                text.push_str("+ext");
            }
            text
        }
        Item::Boolean(b) => b.to_string(),
        Item::Integer(i) => i.to_string(),
        Item::Decimal(d) => format!("{d:?}"),
        Item::String(s) => format!("'{s}'"),
        Item::Date(s) | Item::DateTime(s) => format!("@{s}"),
        Item::Time(s) => format!("@T{s}"),
        Item::Resolved { resource_type } => format!("->{resource_type}"),
    }
}

fn eval_on(resource: &Value, expr: &str) -> Result<Vec<String>, String> {
    let parsed = Expression::parse(expr).map_err(|e| format!("parse: {e}"))?;
    parsed
        .evaluate(resource)
        .map(|items| items.iter().map(render).collect())
        .map_err(|e| format!("eval: {e}"))
}

/// Runs `(expression, expected rendering)` rows against one resource.
fn check_table(resource: &Value, rows: &[(&str, &[&str])]) {
    let mut failures = Vec::new();
    for (expr, expected) in rows {
        match eval_on(resource, expr) {
            Ok(got) if got == *expected => {}
            other => failures.push(format!(
                "{expr}\n   expected {expected:?}\n   got      {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "lastUpdated": "2024-01-02T03:04:05.678Z"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">John</div>"},
        "active": true,
        "name": [
            {"use": "official", "family": "Smith", "given": ["John", "Q"]},
            {"family": "Smythe", "given": [null, "Jon"],
             "_given": [{"extension": [{"url": "http://example.org/ext", "valueString": "jx"}]}, null]}
        ],
        "telecom": [
            {"system": "phone", "value": "0113 000"},
            {"system": "email", "value": "j@example.org"},
            {"system": "email", "value": "john@example.org", "rank": 2}
        ],
        "gender": "male",
        "birthDate": "1970-05-06",
        "_birthDate": {"id": "bd", "extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1970-05-06T10:00:00+01:00"
        }]},
        "deceasedDateTime": "2020-01-01T10:00:00Z",
        "address": [{"city": "Leeds", "postalCode": "LS1 1AA"}, null],
        "generalPractitioner": [{"reference": "Practitioner/pr1"}, {"reference": "Organization/o1"}],
        "managingOrganization": {"reference": "#org"},
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Contained Org"}]
    })
}

#[test]
fn expression_is_send_sync_clone_debug() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_traits::<Expression>();
    assert_traits::<ParseError>();
    assert_traits::<EvalError>();
}

#[test]
fn search_expressions_on_patient() {
    check_table(
        &patient(),
        &[
            (
                "Patient.name",
                &[
                    r#"{"use":"official","family":"Smith","given":["John","Q"]}"#,
                    r#"{"family":"Smythe","given":[null,"Jon"],"_given":[{"extension":[{"url":"http://example.org/ext","valueString":"jx"}]},null]}"#,
                ],
            ),
            (
                "Patient.name.family | Practitioner.name.family",
                &[r#""Smith""#, r#""Smythe""#],
            ),
            ("Practitioner.name.family", &[]),
            (
                "Patient.telecom.where(system='email')",
                &[
                    r#"{"system":"email","value":"j@example.org"}"#,
                    r#"{"system":"email","value":"john@example.org","rank":2}"#,
                ],
            ),
            (
                "Patient.telecom.where(system='email').value",
                &[r#""j@example.org""#, r#""john@example.org""#],
            ),
            (
                "(Patient.deceased as dateTime)",
                &[r#""2020-01-01T10:00:00Z":dateTime"#],
            ),
            ("Patient.deceased.as(Period)", &[]),
            (
                "Patient.deceased.exists() and Patient.deceased != false",
                &["true"],
            ),
            ("Patient.active", &["true"]),
            ("Patient.gender", &[r#""male""#]),
            ("Patient.address.city", &[r#""Leeds""#]),
            (
                "Patient.birthDate | Person.birthDate | RelatedPerson.birthDate",
                &[r#""1970-05-06"+ext"#],
            ),
            (
                "Resource.meta.lastUpdated",
                &[r#""2024-01-02T03:04:05.678Z""#],
            ),
            ("DomainResource.id", &["\"p1\""]),
            ("Resource.id", &["\"p1\""]),
            (
                "Patient.generalPractitioner.where(resolve() is Practitioner).reference",
                &[r#""Practitioner/pr1""#],
            ),
            (
                "Patient.managingOrganization.resolve()",
                &["->Organization"],
            ),
            ("Patient.link.other", &[]),
        ],
    );
}

#[test]
fn choice_elements_and_primitive_extensions() {
    check_table(
        &patient(),
        &[
            // Arrays flatten; `_given` pairs with `given` by index; a null value with an
            // extension is an item without a value.
            (
                "name.given",
                &[r#""John""#, r#""Q""#, "novalue+ext", r#""Jon""#],
            ),
            ("name.given.hasValue()", &["false"]),
            ("name[1].given.first().hasValue()", &["false"]),
            ("name[1].given.last().hasValue()", &["true"]),
            ("name[1].given.first().extension.value", &[r#""jx":string"#]),
            ("name[1].given.extension(%`ext-x`).count()", &["0"]),
            (
                "name[1].given.extension('http://example.org/ext').value",
                &[r#""jx":string"#],
            ),
            ("birthDate.id", &[r#""bd""#]),
            (
                "birthDate.extension.value",
                &[r#""1970-05-06T10:00:00+01:00":dateTime"#],
            ),
            ("birthDate.extension.value is dateTime", &["true"]),
            ("birthDate.children().count()", &["2"]),
            ("birthDate.hasValue()", &["true"]),
            ("deceased is dateTime", &["true"]),
            ("deceased is DateTime", &["true"]),
            ("deceased is FHIR.dateTime", &["true"]),
            ("deceased is boolean", &["false"]),
            ("deceased.ofType(dateTime).count()", &["1"]),
            // Nulls inside arrays are skipped.
            ("address.count()", &["1"]),
            ("children().count()", &["17"]),
            ("contained.children().count()", &["2"]),
            ("descendants().where($this = 'jx')", &[r#""jx""#]),
            ("descendants().ofType(Organization).id", &[r#""org""#]),
            ("descendants().url.distinct().count()", &["2"]),
        ],
    );
    // An exact key wins over a choice match.
    let quantity = json!({"resourceType": "Observation", "id": "o",
        "valueQuantity": {"value": 5, "unit": "mg"},
        "component": [{"value": 1, "valueString": "x"}]});
    check_table(
        &quantity,
        &[
            (
                "Observation.value",
                &[r#"{"value":5,"unit":"mg"}:Quantity"#],
            ),
            ("Observation.value.value", &["5"]),
            ("Observation.value is Quantity", &["true"]),
            ("Observation.value.is(Quantity)", &["true"]),
            ("Observation.value as Range", &[]),
            ("component.value", &["1"]),
        ],
    );
    // `valueSet` is not a choice of `value`: "Set" is no FHIR type.
    let binding = json!({"valueSet": "http://x/vs"});
    check_table(
        &binding,
        &[("value", &[]), ("valueSet", &[r#""http://x/vs""#])],
    );
}

fn encounter() -> Value {
    json!({
        "resourceType": "Encounter",
        "id": "e1",
        "meta": {"lastUpdated": "2024-02-03T04:05:06Z"},
        "status": "finished",
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"individual": {"reference": "Practitioner/a"}},
            {"individual": {"reference": "PractitionerRole/b"}},
            {"individual": {"reference": "https://fhir.example.org/r4/Practitioner/c/_history/2"}},
            {"individual": {"reference": "#pc"}},
            {"individual": {"reference": "urn:uuid:6a1b1d6e-8a0e-4e55-a5b1-7d1c1c1c1c1c", "type": "Practitioner"}},
            {"individual": {"reference": "RelatedPerson/d"}},
            {"individual": {"display": "no reference"}}
        ],
        "location": [
            {"location": {"reference": "Location/l1"}, "period": {"start": "2024-01-01"}},
            {"location": {"reference": "Location/l2"}}
        ],
        "contained": [{"resourceType": "Practitioner", "id": "pc"}]
    })
}

#[test]
fn search_expressions_on_encounter() {
    check_table(
        &encounter(),
        &[
            (
                "Encounter.participant.individual.where(resolve() is Practitioner).reference",
                &[
                    r#""Practitioner/a""#,
                    r#""https://fhir.example.org/r4/Practitioner/c/_history/2""#,
                    r##""#pc""##,
                    r#""urn:uuid:6a1b1d6e-8a0e-4e55-a5b1-7d1c1c1c1c1c""#,
                ],
            ),
            (
                "Encounter.participant.individual.resolve()",
                &["->Practitioner", "->PractitionerRole", "->Practitioner", "->Practitioner", "->Practitioner", "->RelatedPerson"],
            ),
            (
                "CarePlan.subject.where(resolve() is Patient) | Encounter.subject.where(resolve() is Patient)",
                &[r#"{"reference":"Patient/p1"}"#],
            ),
            ("Encounter.location.location.reference", &[r#""Location/l1""#, r#""Location/l2""#]),
            ("Encounter.location.period.start", &[r#""2024-01-01""#]),
            ("Resource.meta.lastUpdated", &[r#""2024-02-03T04:05:06Z""#]),
            ("Patient.name", &[]),
        ],
    );
    let group_subject =
        json!({"resourceType": "Encounter", "id": "e2", "subject": {"reference": "Group/g"}});
    check_table(
        &group_subject,
        &[("CarePlan.subject.where(resolve() is Patient) | Encounter.subject.where(resolve() is Patient)", &[])],
    );
}

#[test]
fn search_expressions_on_other_resources() {
    let sr = json!({"resourceType": "ServiceRequest", "id": "s", "occurrencePeriod": {"start": "2024-01-01", "end": "2024-01-31"},
        "orderDetail": [{"text": "fasting"}], "code": {"text": "x"}, "subject": {"reference": "Patient/p"}});
    check_table(
        &sr,
        &[
            (
                "ServiceRequest.occurrence",
                &[r#"{"start":"2024-01-01","end":"2024-01-31"}:Period"#],
            ),
            ("ServiceRequest.orderDetail.text", &[r#""fasting""#]),
            (
                "ServiceRequest.subject.where(resolve() is Patient).reference",
                &[r#""Patient/p""#],
            ),
        ],
    );
    let sr_dt =
        json!({"resourceType": "ServiceRequest", "id": "s2", "occurrenceDateTime": "2024-03-04"});
    check_table(
        &sr_dt,
        &[("ServiceRequest.occurrence", &[r#""2024-03-04":dateTime"#])],
    );
    let location = json!({"resourceType": "Location", "id": "l", "name": "Ward 1", "alias": ["W1", "Ward 1", "Ward One"]});
    check_table(
        &location,
        &[(
            "Location.name | Location.alias",
            &[r#""Ward 1""#, r#""W1""#, r#""Ward One""#],
        )],
    );
    let organization = json!({"resourceType": "Organization", "id": "o", "name": "Leeds GP", "alias": ["LGP"], "active": false});
    check_table(
        &organization,
        &[
            (
                "Organization.name | Organization.alias",
                &[r#""Leeds GP""#, r#""LGP""#],
            ),
            ("Organization.active", &["false"]),
        ],
    );
    let role = json!({"resourceType": "PractitionerRole", "id": "r",
        "telecom": [{"system": "email", "value": "r@x.org"}], "practitioner": {"reference": "Practitioner/1"}});
    check_table(
        &role,
        &[
            ("PractitionerRole.telecom.where(system='email').value", &[r#""r@x.org""#]),
            ("PractitionerRole.practitioner.reference", &[r#""Practitioner/1""#]),
            ("Patient.telecom.where(system='email') | PractitionerRole.telecom.where(system='email')", &[r#"{"system":"email","value":"r@x.org"}"#]),
        ],
    );
    let practitioner = json!({"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Jones", "given": ["Ann"]}]});
    check_table(
        &practitioner,
        &[(
            "Patient.name.family | Practitioner.name.family",
            &[r#""Jones""#],
        )],
    );
}

#[test]
fn deceased_search_expression_variants() {
    let expr =
        Expression::parse("Patient.deceased.exists() and Patient.deceased != false").unwrap();
    let cases = [
        (
            json!({"resourceType": "Patient", "deceasedBoolean": true}),
            vec![Item::Boolean(true)],
        ),
        (
            json!({"resourceType": "Patient", "deceasedBoolean": false}),
            vec![Item::Boolean(false)],
        ),
        (
            json!({"resourceType": "Patient", "deceasedDateTime": "2020"}),
            vec![Item::Boolean(true)],
        ),
        (
            json!({"resourceType": "Patient"}),
            vec![Item::Boolean(false)],
        ),
    ];
    for (resource, expected) in cases {
        assert_eq!(expr.evaluate(&resource).unwrap(), expected, "{resource}");
    }
}

fn search_bundle() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/search-parameters.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_r4_search_parameter_expression_parses() {
    let bundle = search_bundle();
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 262);
    let mut parsed = 0;
    let mut failures = Vec::new();
    for entry in entries {
        let resource = &entry["resource"];
        let Some(expr) = resource["expression"].as_str() else {
            continue;
        };
        match Expression::parse(expr) {
            Ok(_) => parsed += 1,
            Err(e) => failures.push(format!("{}: {e}: {expr}", resource["id"])),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Three of the 262 (Resource-content, Resource-query, DomainResource-text) have no
    // expression: they are special parameters.
    assert_eq!(parsed, 259);
    eprintln!("{parsed} search parameter expressions parse");
}

/// Every expression of a parameter that applies to a fixture evaluates without error on it.
#[test]
fn search_parameter_expressions_evaluate_on_fixtures() {
    let bundle = search_bundle();
    let fixtures = [
        patient(),
        encounter(),
        json!({"resourceType": "ServiceRequest", "id": "s", "occurrenceDateTime": "2024-01-01",
            "subject": {"reference": "Patient/p"}, "orderDetail": [{"text": "x"}]}),
        json!({"resourceType": "Location", "id": "l", "name": "Ward", "alias": ["W"],
            "address": {"city": "Leeds"}, "position": {"latitude": 53.8, "longitude": -1.5}}),
        json!({"resourceType": "Organization", "id": "o", "name": "Org", "active": true}),
        json!({"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Jones"}],
            "telecom": [{"system": "email", "value": "a@b.c"}]}),
        json!({"resourceType": "PractitionerRole", "id": "r", "period": {"start": "2020"},
            "practitioner": {"reference": "Practitioner/pr"}}),
    ];
    let mut evaluated = 0;
    for entry in bundle["entry"].as_array().unwrap() {
        let resource = &entry["resource"];
        let Some(text) = resource["expression"].as_str() else {
            continue;
        };
        let expr = Expression::parse(text).unwrap();
        for fixture in &fixtures {
            let rt = fixture["resourceType"].as_str().unwrap();
            let applies = resource["base"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b == rt || b == "Resource" || b == "DomainResource");
            if applies {
                expr.evaluate(fixture)
                    .unwrap_or_else(|e| panic!("{text} on {rt}: {e}"));
                evaluated += 1;
            }
        }
    }
    assert_eq!(evaluated, 168);
}

fn constraint_expressions(file: &str) -> Option<Vec<(String, String)>> {
    let path = format!("{}/schema/{file}", env!("CARGO_MANIFEST_DIR"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipping constraints of {file}: {path} is not there");
        return None;
    };
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for entry in bundle["entry"].as_array().unwrap() {
        let sd = &entry["resource"];
        // The differential's constraints are repeated in the snapshot.
        for element in sd["snapshot"]["element"].as_array().into_iter().flatten() {
            for constraint in element["constraint"].as_array().into_iter().flatten() {
                if let Some(expr) = constraint["expression"].as_str() {
                    out.push((
                        constraint["key"].as_str().unwrap_or("?").to_owned(),
                        expr.to_owned(),
                    ));
                }
            }
        }
    }
    Some(out)
}

#[test]
fn every_r4_constraint_expression_parses() {
    for file in ["profiles-resources.json", "profiles-types.json"] {
        let Some(constraints) = constraint_expressions(file) else {
            continue;
        };
        let failures: Vec<String> = constraints
            .iter()
            .filter_map(|(key, expr)| {
                Expression::parse(expr)
                    .err()
                    .map(|e| format!("{key}: {e}: {expr}"))
            })
            .collect();
        let mut distinct: Vec<&String> = constraints.iter().map(|(_, e)| e).collect();
        distinct.sort();
        distinct.dedup();
        eprintln!(
            "{file}: {} of {} constraint expressions parse ({} distinct)",
            constraints.len() - failures.len(),
            constraints.len(),
            distinct.len()
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // Every invariant on every node of a fixture: errors are allowed (the invariant may
        // not be meant for that node), panics are not.
        let resource = patient();
        let patient_nodes: Vec<Item<'_>> = Expression::parse("descendants()")
            .unwrap()
            .evaluate(&resource)
            .unwrap();
        distinct.iter().for_each(|text| {
            let expr = Expression::parse(text).unwrap();
            let _ = expr.evaluate(&resource);
            for node in &patient_nodes {
                let _ = expr.evaluate_in(node.clone(), &resource, &resource);
            }
        });
    }
}

// --- invariants ---------------------------------------------------------------------------

const ELE_1: &str = "hasValue() or (children().count() > id.count())";
const EXT_1: &str = "extension.exists() != value.exists()";
const DOM_2: &str = "contained.contained.empty()";
const DOM_3: &str = "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()";
const DOM_4: &str = "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()";
const DOM_5: &str = "contained.meta.security.empty()";
const DOM_6: &str = "text.`div`.exists()";
const PAT_1: &str =
    "name.exists() or telecom.exists() or address.exists() or organization.exists()";
const PRR_1: &str = "orderDetail.empty() or code.exists()";
const PER_1: &str = "start.hasValue().not() or end.hasValue().not() or (start <= end)";
const REF_1: &str = "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))";
const RNG_2: &str = "low.empty() or high.empty() or (low <= high)";
const ELD_2: &str =
    "min.empty() or max.empty() or (max = '*') or iif(max != '*', min <= max.toInteger())";
const TIM_9: &str = "offset.empty() or (when.exists() and when.select($this in ('C' | 'CM' | 'CD' | 'CV')).allFalse())";

/// `(invariant, focus, resource, expected)`; the focus is the resource when `None`.
type InvariantCase = (&'static str, Option<Value>, Value, Option<bool>);

#[test]
fn invariants() {
    let res = patient();
    let cases: Vec<InvariantCase> = vec![
        // ele-1: an element must have a value or children other than id.
        (ELE_1, Some(json!({"family": "x"})), res.clone(), Some(true)),
        (ELE_1, Some(json!({})), res.clone(), Some(false)),
        (ELE_1, Some(json!({"id": "a"})), res.clone(), Some(false)),
        (
            ELE_1,
            Some(json!({"id": "a", "extension": [{"url": "u", "valueCode": "c"}]})),
            res.clone(),
            Some(true),
        ),
        (ELE_1, Some(json!("a string")), res.clone(), Some(true)),
        (ELE_1, Some(json!(false)), res.clone(), Some(true)),
        // ext-1: value or extensions, not both, not neither.
        (
            EXT_1,
            Some(json!({"url": "u", "valueString": "x"})),
            res.clone(),
            Some(true),
        ),
        (EXT_1, Some(json!({"url": "u"})), res.clone(), Some(false)),
        (
            EXT_1,
            Some(
                json!({"url": "u", "valueString": "x", "extension": [{"url": "v", "valueBoolean": true}]}),
            ),
            res.clone(),
            Some(false),
        ),
        (
            EXT_1,
            Some(json!({"url": "u", "extension": [{"url": "v", "valueBoolean": true}]})),
            res.clone(),
            Some(true),
        ),
        // dom-2: no nested contained resources.
        (DOM_2, None, res.clone(), Some(true)),
        (
            DOM_2,
            None,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "contained": [{"resourceType": "Patient", "id": "x"}]}]}),
            Some(false),
        ),
        // dom-3: every contained resource is referenced from the container, or refers to it.
        (DOM_3, None, res.clone(), Some(true)),
        (
            DOM_3,
            None,
            json!({"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Organization", "id": "o"}]}),
            Some(false),
        ),
        (
            DOM_3,
            None,
            json!({"resourceType": "Patient", "id": "p", "managingOrganization": {"reference": "#o"},
            "contained": [{"resourceType": "Organization", "id": "o"}, {"resourceType": "Practitioner", "id": "x"}]}),
            Some(false),
        ),
        (
            DOM_3,
            None,
            json!({"resourceType": "Patient", "id": "p",
            "contained": [{"resourceType": "Organization", "id": "o", "partOf": {"reference": "#"}}]}),
            Some(true),
        ),
        (
            DOM_3,
            None,
            json!({"resourceType": "ServiceRequest", "id": "s", "instantiatesCanonical": ["#pd"],
            "contained": [{"resourceType": "PlanDefinition", "id": "pd"}]}),
            Some(true),
        ),
        (
            DOM_3,
            None,
            json!({"resourceType": "Patient", "id": "p"}),
            Some(true),
        ),
        // dom-4 / dom-5: contained resources carry no versionId, lastUpdated or security.
        (DOM_4, None, res.clone(), Some(true)),
        (
            DOM_4,
            None,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "meta": {"versionId": "1"}}]}),
            Some(false),
        ),
        (
            DOM_4,
            None,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}}]}),
            Some(false),
        ),
        (DOM_5, None, res.clone(), Some(true)),
        (
            DOM_5,
            None,
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "meta": {"security": [{"code": "R"}]}}]}),
            Some(false),
        ),
        // dom-6: a narrative (a best-practice guideline, evaluated all the same).
        (DOM_6, None, res.clone(), Some(true)),
        (
            DOM_6,
            None,
            json!({"resourceType": "Patient", "id": "p"}),
            Some(false),
        ),
        // pat-1, on a Patient.contact element.
        (
            PAT_1,
            Some(json!({"name": {"family": "Smith"}})),
            res.clone(),
            Some(true),
        ),
        (
            PAT_1,
            Some(json!({"organization": {"reference": "Organization/1"}})),
            res.clone(),
            Some(true),
        ),
        (
            PAT_1,
            Some(json!({"relationship": [{"text": "next of kin"}], "gender": "female"})),
            res.clone(),
            Some(false),
        ),
        // prr-1: orderDetail needs a code.
        (
            PRR_1,
            None,
            json!({"resourceType": "ServiceRequest", "orderDetail": [{"text": "x"}]}),
            Some(false),
        ),
        (
            PRR_1,
            None,
            json!({"resourceType": "ServiceRequest", "orderDetail": [{"text": "x"}], "code": {"text": "c"}}),
            Some(true),
        ),
        (
            PRR_1,
            None,
            json!({"resourceType": "ServiceRequest"}),
            Some(true),
        ),
        // per-1: start <= end, with partial precision and time zones.
        (
            PER_1,
            Some(json!({"start": "2020-01-01", "end": "2020-05-01"})),
            res.clone(),
            Some(true),
        ),
        (
            PER_1,
            Some(json!({"start": "2020-06-01", "end": "2020-05-01"})),
            res.clone(),
            Some(false),
        ),
        (
            PER_1,
            Some(json!({"start": "2020", "end": "2020-05-01"})),
            res.clone(),
            None,
        ),
        (
            PER_1,
            Some(json!({"start": "2019", "end": "2020-05-01"})),
            res.clone(),
            Some(true),
        ),
        (
            PER_1,
            Some(json!({"start": "2021", "end": "2020-05-01"})),
            res.clone(),
            Some(false),
        ),
        (
            PER_1,
            Some(json!({"start": "2020-01-01T10:00:00+02:00", "end": "2020-01-01T09:00:00Z"})),
            res.clone(),
            Some(true),
        ),
        (
            PER_1,
            Some(json!({"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T09:00:00+02:00"})),
            res.clone(),
            Some(false),
        ),
        (
            PER_1,
            Some(json!({"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T10:00:00Z"})),
            res.clone(),
            Some(true),
        ),
        (
            PER_1,
            Some(json!({"start": "2020-01-01"})),
            res.clone(),
            Some(true),
        ),
        (
            PER_1,
            Some(json!({"end": "2020-01-01"})),
            res.clone(),
            Some(true),
        ),
        // A few more R4 invariants, for the functions they use.
        (
            REF_1,
            Some(json!({"reference": "#org"})),
            res.clone(),
            Some(true),
        ),
        (
            REF_1,
            Some(json!({"reference": "#nowhere"})),
            res.clone(),
            Some(false),
        ),
        (
            REF_1,
            Some(json!({"reference": "Patient/1"})),
            res.clone(),
            Some(true),
        ),
        (
            RNG_2,
            Some(
                json!({"low": {"value": 1, "system": "http://unitsofmeasure.org", "code": "mg"}, "high": {"value": 2, "system": "http://unitsofmeasure.org", "code": "mg"}}),
            ),
            res.clone(),
            Some(true),
        ),
        (
            RNG_2,
            Some(
                json!({"low": {"value": 3, "system": "http://unitsofmeasure.org", "code": "mg"}, "high": {"value": 2, "system": "http://unitsofmeasure.org", "code": "mg"}}),
            ),
            res.clone(),
            Some(false),
        ),
        (
            RNG_2,
            Some(json!({"low": {"value": 3, "code": "mg"}, "high": {"value": 2, "code": "g"}})),
            res.clone(),
            None,
        ),
        (
            ELD_2,
            Some(json!({"min": 0, "max": "*"})),
            res.clone(),
            Some(true),
        ),
        (
            ELD_2,
            Some(json!({"min": 1, "max": "1"})),
            res.clone(),
            Some(true),
        ),
        (
            ELD_2,
            Some(json!({"min": 2, "max": "1"})),
            res.clone(),
            Some(false),
        ),
        (
            TIM_9,
            Some(json!({"offset": 10, "when": ["AC"]})),
            res.clone(),
            Some(true),
        ),
        (
            TIM_9,
            Some(json!({"offset": 10, "when": ["C"]})),
            res.clone(),
            Some(false),
        ),
        (TIM_9, Some(json!({"when": ["C"]})), res.clone(), Some(true)),
    ];
    let mut failures = Vec::new();
    for (invariant, focus, resource, expected) in &cases {
        let expr = Expression::parse(invariant).unwrap();
        let focus = focus.as_ref().unwrap_or(resource);
        match expr.evaluate_bool(focus, resource) {
            Ok(got) if got == *expected => {}
            other => failures.push(format!(
                "{invariant}\n  on {focus}\n  expected {expected:?}, got {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn ele_1_on_primitives_with_extensions() {
    let resource = patient();
    let expr = Expression::parse(ELE_1).unwrap();
    let extension = json!({"extension": [{"url": "u", "valueCode": "c"}]});
    let only_id = json!({"id": "x"});
    let cases = [
        (Value::Null, Some(&extension), true),
        (Value::Null, Some(&only_id), false),
        (json!("v"), Some(&only_id), true),
    ];
    for (value, element, expected) in &cases {
        let focus = Item::Node {
            value,
            fhir_type: Some("string"),
            primitive_element: *element,
        };
        let result = expr.evaluate_in(focus, &resource, &resource).unwrap();
        assert_eq!(
            result,
            vec![Item::Boolean(*expected)],
            "{value} {element:?}"
        );
    }
}

#[test]
fn evaluate_bool_rejects_non_boolean_results() {
    let resource = patient();
    let bool_of = |text: &str| {
        Expression::parse(text)
            .unwrap()
            .evaluate_bool(&resource, &resource)
    };
    assert_eq!(bool_of("active"), Ok(Some(true)));
    assert_eq!(bool_of("{}"), Ok(None));
    assert!(bool_of("name").is_err());
    assert!(bool_of("id").is_err());
    assert!(bool_of("true | false").is_err());
}

#[test]
fn environment_variables() {
    let resource = patient();
    let contact = json!({"name": {"family": "Doe"}});
    let run = |text: &str| -> Vec<String> {
        Expression::parse(text)
            .unwrap()
            .evaluate_on(&contact, &resource)
            .unwrap()
            .iter()
            .map(render)
            .collect()
    };
    assert_eq!(run("%resource.id"), [r#""p1""#]);
    assert_eq!(run("%rootResource.id"), [r#""p1""#]);
    assert_eq!(run("%context.name.family"), [r#""Doe""#]);
    assert_eq!(run("$this.name.family"), [r#""Doe""#]);
    assert_eq!(run("%ucum"), ["'http://unitsofmeasure.org'"]);
    assert_eq!(run("%sct"), ["'http://snomed.info/sct'"]);
    assert_eq!(run("%loinc"), ["'http://loinc.org'"]);
    assert_eq!(
        run("%`vs-administrative-gender`"),
        ["'http://hl7.org/fhir/ValueSet/administrative-gender'"]
    );
    assert_eq!(
        run("%'ext-patient-birthTime'"),
        ["'http://hl7.org/fhir/StructureDefinition/patient-birthTime'"]
    );
    // A contained resource as %resource, its container as %rootResource.
    let contained = &resource["contained"][0];
    let result = Expression::parse("%resource.id | %rootResource.id")
        .unwrap()
        .evaluate_in(Item::from_json(contained), contained, &resource)
        .unwrap();
    assert_eq!(
        result.iter().map(render).collect::<Vec<_>>(),
        [r#""org""#, r#""p1""#]
    );
}

#[test]
fn operators() {
    let empty = json!({});
    check_table(
        &empty,
        &[
            ("1 + 2 * 3", &["7"]),
            ("(1 + 2) * 3", &["9"]),
            ("7 div 2", &["3"]),
            ("7 mod 2", &["1"]),
            ("-7 div 2", &["-3"]),
            ("7.5 div 2", &["3"]),
            ("7 / 2", &["3.5"]),
            ("7.5 mod 2", &["1.5"]),
            ("1 / 0", &[]),
            ("1 div 0", &[]),
            ("-5 + 2", &["-3"]),
            ("- (2 * 3)", &["-6"]),
            ("+4", &["4"]),
            ("2 - 3 - 4", &["-5"]),
            ("1.5 + 1", &["2.5"]),
            ("'a' + 'b'", &["'ab'"]),
            ("'a' & 'b'", &["'ab'"]),
            ("'a' & {}", &["'a'"]),
            ("'a' + {}", &[]),
            ("{} - 1", &[]),
            ("1 < 2", &["true"]),
            ("2 <= 2", &["true"]),
            ("2.5 > 3", &["false"]),
            ("3 >= 2.5", &["true"]),
            ("'b' > 'a'", &["true"]),
            ("{} < 1", &[]),
            ("@2020-01-01 < @2020-02", &["true"]),
            ("@2020 < @2020-05-01", &[]),
            ("@2020-05 <= @2020-05", &["true"]),
            (
                "@2020-01-01T10:00:00+01:00 = @2020-01-01T09:00:00Z",
                &["true"],
            ),
            ("@2020-01-01T10:00:00.5Z > @2020-01-01T10:00:00Z", &["true"]),
            ("@2020-01-01T10:00 < @2020-01-01T10:00:01", &[]),
            ("@T10:00 < @T11:00", &["true"]),
            ("@T10:00 = @T10:00:00", &[]),
            ("@2015-02-04T = @2015-02-04T", &["true"]),
            ("'2020-01-01' = @2020-01-01", &["true"]),
            ("'2020-01-01' < @2021", &["true"]),
            ("1 = 1.0", &["true"]),
            ("1 = 1", &["true"]),
            ("1 != 2", &["true"]),
            ("'a' = 'A'", &["false"]),
            ("'a' ~ 'A'", &["true"]),
            ("'a  b' ~ 'A B'", &["true"]),
            ("'a' !~ 'b'", &["true"]),
            ("1.01 ~ 1.0", &["true"]),
            ("1.2 ~ 1.0", &["false"]),
            ("@2020 ~ @2020-01", &["false"]),
            ("{} = 1", &[]),
            ("{} != 1", &[]),
            ("{} ~ {}", &["true"]),
            ("1 ~ {}", &["false"]),
            ("(1 | 2) = (1 | 2)", &["true"]),
            ("(1 | 2) = (2 | 1)", &["false"]),
            ("(1 | 2) ~ (2 | 1)", &["true"]),
            ("(1 | 2) = 1", &["false"]),
            ("true = 'true'", &["false"]),
            ("1 in (1 | 2)", &["true"]),
            ("3 in (1 | 2)", &["false"]),
            ("1 in {}", &["false"]),
            ("{} in (1 | 2)", &[]),
            ("(1 | 2) contains 2", &["true"]),
            ("'a' | 'b' contains 'b'", &["true"]),
            ("1 | 1 | 2", &["1", "2"]),
            ("1 | 1.0", &["1"]),
            ("true and true", &["true"]),
            ("true and false", &["false"]),
            ("true and {}", &[]),
            ("false and {}", &["false"]),
            ("{} and false", &["false"]),
            ("{} and {}", &[]),
            ("true or {}", &["true"]),
            ("{} or true", &["true"]),
            ("{} or false", &[]),
            ("false or false", &["false"]),
            ("true xor false", &["true"]),
            ("true xor true", &["false"]),
            ("{} xor true", &[]),
            ("false implies {}", &["true"]),
            ("true implies {}", &[]),
            ("true implies false", &["false"]),
            ("{} implies true", &["true"]),
            ("{} implies false", &[]),
            ("true or false and false", &["true"]),
            ("false and true or true", &["true"]),
            ("1 + 2 = 3 and 'a' | 'b' contains 'b'", &["true"]),
            ("false implies true or false", &["true"]),
            ("true implies false implies false", &["true"]),
            ("1 = 1 = true", &["true"]),
            ("5 is Integer", &["true"]),
            ("5 is String", &["false"]),
            ("'x'.is(System.String)", &["true"]),
            ("'x' is string", &["true"]),
            ("2.5 is Decimal", &["true"]),
            ("@2020 is Date", &["true"]),
            ("@2020-01-01T10:00 is DateTime", &["true"]),
            ("@T10:00 is Time", &["true"]),
            ("true is Boolean", &["true"]),
            ("{} is Boolean", &[]),
            ("(1 | 'a') as Integer", &["1"]),
            ("(1 | 'a').ofType(String)", &["'a'"]),
            ("1 + 1 is Integer", &["true"]),
        ],
    );
}

#[test]
fn functions() {
    check_table(
        &patient(),
        &[
            ("name.exists()", &["true"]),
            ("link.exists()", &["false"]),
            ("name.exists(family = 'Smythe')", &["true"]),
            ("name.exists(family = 'Nobody')", &["false"]),
            ("link.empty()", &["true"]),
            ("telecom.count()", &["3"]),
            (
                "telecom.where(rank.exists()).value",
                &[r#""john@example.org""#],
            ),
            ("telecom.where($index = 1).value", &[r#""j@example.org""#]),
            (
                "telecom.select(system)",
                &[r#""phone""#, r#""email""#, r#""email""#],
            ),
            (
                "telecom.select(system).distinct()",
                &[r#""phone""#, r#""email""#],
            ),
            ("telecom.select(system).isDistinct()", &["false"]),
            ("telecom.value.isDistinct()", &["true"]),
            ("telecom.all(system.exists())", &["true"]),
            ("telecom.all(system = 'email')", &["false"]),
            ("link.all(false)", &["true"]),
            ("name.given.first()", &[r#""John""#]),
            ("name.given.last()", &[r#""Jon""#]),
            ("name.given.tail().count()", &["3"]),
            ("name.given.skip(1).first()", &[r#""Q""#]),
            ("name.given.skip(-1).count()", &["4"]),
            ("name.given.take(2)", &[r#""John""#, r#""Q""#]),
            ("name.given.take(0)", &[]),
            ("name.first().family.single()", &[r#""Smith""#]),
            ("link.single()", &[]),
            ("name.given.where($this = 'Q')", &[r#""Q""#]),
            ("name[1].family", &[r#""Smythe""#]),
            ("name[5].family", &[]),
            ("name[-1]", &[]),
            ("active.not()", &["false"]),
            ("link.not()", &[]),
            ("name.first().not()", &["false"]),
            ("(1 | 2).union(2 | 3)", &["1", "2", "3"]),
            ("(1 | 2).combine(2 | 3)", &["1", "2", "2", "3"]),
            ("(1 | 2 | 3).intersect(2 | 3 | 4)", &["2", "3"]),
            ("(1 | 2 | 3).exclude(2)", &["1", "3"]),
            ("(1 | 2).subsetOf(1 | 2 | 3)", &["true"]),
            ("(1 | 4).subsetOf(1 | 2 | 3)", &["false"]),
            ("(1 | 2 | 3).supersetOf(3)", &["true"]),
            ("{}.subsetOf(1)", &["true"]),
            ("(true | false).allTrue()", &["false"]),
            ("(true | true).combine(true).allTrue()", &["true"]),
            ("(true | false).anyTrue()", &["true"]),
            ("(false).allFalse()", &["true"]),
            ("{}.allFalse()", &["true"]),
            ("{}.anyFalse()", &["false"]),
            ("(true | false).anyFalse()", &["true"]),
            ("iif(active, 'yes', 'no')", &["'yes'"]),
            ("iif(link.exists(), 'yes', 'no')", &["'no'"]),
            ("iif(link.exists(), 'yes')", &[]),
            (
                "name.first().iif(family = 'Smith', given.first())",
                &[r#""John""#],
            ),
            ("name.given.trace('given').count()", &["4"]),
            ("telecom.value.trace('v', $this.length()).count()", &["3"]),
            ("extension('http://example.org/none')", &[]),
            (
                "gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')",
                &[],
            ),
            ("text.htmlChecks()", &["true"]),
            ("htmlChecks()", &["true"]),
            (
                "conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')",
                &["true"],
            ),
            ("now().exists() and today().exists()", &["true"]),
            ("today() is Date", &["true"]),
            ("now() > @2020-01-01T00:00:00Z", &["true"]),
            ("today() > @2020-01-01", &["true"]),
            ("birthDate < today()", &["true"]),
            ("children().ofType(HumanName)", &[]),
            ("descendants().ofType(boolean)", &["true"]),
            (
                "descendants().where($this is dateTime and $this > @2019).count()",
                &["2"],
            ),
            ("Patient is Patient", &["true"]),
            ("Patient.is(DomainResource)", &["true"]),
            ("$this.is(Resource)", &["true"]),
            ("is(Organization)", &["false"]),
            ("Patient.as(Resource).id", &[r#""p1""#]),
            (
                "contained.ofType(Organization).name",
                &[r#""Contained Org""#],
            ),
            ("contained.ofType(Practitioner)", &[]),
            ("contained.is(FHIR.Organization)", &["true"]),
        ],
    );
}

#[test]
fn string_functions() {
    check_table(
        &patient(),
        &[
            ("gender.contains('al')", &["true"]),
            ("gender.contains('')", &["true"]),
            ("gender.startsWith('ma')", &["true"]),
            ("gender.endsWith('ma')", &["false"]),
            ("gender.matches('^m.l')", &["true"]),
            ("gender.matches('^M')", &["false"]),
            ("gender.matches('a')", &["true"]),
            ("gender.matches(gender)", &["true"]),
            ("'a\nb'.matches('a.b')", &["true"]),
            ("gender.replaceMatches('[aeiou]', '_')", &["'m_l_'"]),
            (
                "'2020-01'.replaceMatches('(\\\\d+)-(\\\\d+)', '$2/$1')",
                &["'01/2020'"],
            ),
            (
                "'Patient.name.given'.replaceMatches('\\\\..*', '')",
                &["'Patient'"],
            ),
            ("gender.length()", &["4"]),
            ("'héllo'.length()", &["5"]),
            ("gender.substring(1)", &["'ale'"]),
            ("gender.substring(1, 2)", &["'al'"]),
            ("gender.substring(1, 99)", &["'ale'"]),
            ("gender.substring(4)", &[]),
            ("gender.substring(-1)", &[]),
            ("'héllo'.substring(1, 2)", &["'él'"]),
            ("gender.upper()", &["'MALE'"]),
            ("'MiXeD'.lower()", &["'mixed'"]),
            ("'  x '.trim()", &["'x'"]),
            ("gender.indexOf('le')", &["2"]),
            ("gender.indexOf('z')", &["-1"]),
            ("'héllo'.indexOf('l')", &["2"]),
            ("gender.replace('male', 'female')", &["'female'"]),
            ("link.value.upper()", &[]),
            ("'abc'.startsWith({})", &[]),
            ("5.toString()", &["'5'"]),
            ("2.50.toString()", &["'2.5'"]),
            ("1.0.toString()", &["'1.0'"]),
            ("true.toString()", &["'true'"]),
            ("@2020-01.toString()", &["'2020-01'"]),
            ("active.toString()", &["'true'"]),
            ("'42'.toInteger()", &["42"]),
            ("'-42'.toInteger()", &["-42"]),
            ("'4.2'.toInteger()", &[]),
            ("'x'.toInteger()", &[]),
            ("true.toInteger()", &["1"]),
            ("'4.5'.toDecimal()", &["4.5"]),
            ("'abc'.toDecimal()", &[]),
            ("'it\\'s'", &["'it's'"]),
            ("'tab\\there'.length()", &["8"]),
            ("'\\u00e9'", &["'é'"]),
            ("'\\uD83D\\uDE00'.length()", &["1"]),
            ("'a\\/b'", &["'a/b'"]),
            ("'\\d+'", &["'\\d+'"]),
            ("text.`div`.startsWith('<div')", &["true"]),
            ("`text`.status", &[r#""generated""#]),
            ("name.`given`.count()", &["4"]),
        ],
    );
}

/// Errors, not panics, for FHIRPath's singleton rules and type mismatches.
#[test]
fn evaluation_errors() {
    let resource = patient();
    for text in [
        "name.family + 'x'",
        "telecom.value.single()",
        "telecom.value.startsWith('j')",
        "(1 | 2) < 3",
        "1 < 'a'",
        "name < name",
        "'a' * 2",
        "-'a'",
        "telecom.value.length()",
        "name.where(given)",
        "name is HumanName",
        "(1 | 2).not()",
        "5.startsWith('5')",
        "gender.matches('[' + '')",
        "$index",
        "name.skip('a')",
        "telecom.value in 'x'",
        "(true | false) and true",
        "9223372036854775807 * 2",
    ] {
        let expr = Expression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let result = expr.evaluate(&resource);
        assert!(
            result.is_err(),
            "{text} should fail to evaluate, got {result:?}"
        );
    }
}

#[test]
fn parse_errors_name_the_position() {
    let cases: &[(&str, usize)] = &[
        ("Patient.name.bogus()", 13),
        ("aggregate($this)", 0),
        ("name.repeat(name)", 5),
        ("Patient.", 8),
        ("Patient.name[", 13),
        ("(1 + 2", 6),
        ("1 +", 3),
        ("'unterminated", 0),
        ("`unterminated", 0),
        ("%unknown", 0),
        ("$total", 0),
        ("@20", 0),
        ("@2020-13", 0),
        ("@2020-02-30", 0),
        ("@T25:00", 0),
        ("1 and and 2", 6),
        ("where()", 0),
        ("first(1)", 0),
        ("substring(1, 2, 3)", 0),
        ("is(1)", 0),
        ("ofType(a.b.c)", 0),
        ("x.matches('(')", 2),
        ("4 'mg'", 2),
        ("2 days", 2),
        ("a # b", 2),
        ("é", 0),
        ("/* open", 0),
        ("'\\u12'", 1),
        ("'\\uD800'", 1),
        ("99999999999999999999", 0),
        ("a.b c", 4),
        ("{1}", 1),
        ("", 0),
    ];
    for (text, position) in cases {
        match Expression::parse(text) {
            Ok(e) => panic!("{text:?} parsed: {e:?}"),
            Err(e) => assert_eq!(e.position, *position, "{text:?}: {e}"),
        }
    }
    let e = Expression::parse("name.bogus()").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown or unsupported function 'bogus' (at offset 5)"
    );
}

#[test]
fn comments_and_whitespace() {
    check_table(
        &patient(),
        &[
            ("id // the id", &[r#""p1""#]),
            ("/* leading */ id", &[r#""p1""#]),
            ("name\n  .family\n  .first()", &[r#""Smith""#]),
            ("6 / 3", &["2.0"]),
        ],
    );
}

#[test]
fn expression_round_trips_its_text() {
    let text = "Patient.name.given";
    let expr: Expression = text.parse().unwrap();
    assert_eq!(expr.as_str(), text);
}

/// A deterministic xorshift generator: enough randomness for fuzzing without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn garbage_never_panics() {
    const FRAGMENTS: &[&str] = &[
        "Patient",
        ".",
        "name",
        "given",
        "(",
        ")",
        "[",
        "]",
        "'",
        "'abc'",
        "`",
        "`div`",
        "@",
        "@2020",
        "@2020-01-01T10:00:00Z",
        "@T",
        "@T10:",
        "%",
        "%resource",
        "%ucum",
        "%context",
        "$this",
        "$",
        "$index",
        "where(",
        "select(",
        "exists(",
        "all(",
        "and",
        "or",
        "xor",
        "implies",
        "|",
        "+",
        "-",
        "*",
        "/",
        "div",
        "mod",
        "&",
        "1",
        "0",
        "2.5",
        "9223372036854775807",
        " ",
        ",",
        "{",
        "}",
        "\\",
        "\\u",
        "'\\u00",
        "is",
        "as",
        "contains",
        "in",
        "=",
        "!=",
        "~",
        "!~",
        "<",
        ">=",
        "<=",
        "/*",
        "*/",
        "//",
        "\n",
        "true",
        "false",
        "first()",
        ".count()",
        "resolve()",
        "ofType(",
        "iif(",
        "matches('[a-",
        "matches('a*')",
        "descendants()",
        "children()",
        "not()",
        "é",
        "💥",
        "\"",
        "!",
        "?",
        "#",
        "substring(",
        "-9",
        "trace('x', ",
        "extension(",
        "hasValue()",
        ".as(",
        "String)",
        "dateTime",
        "toInteger()",
        "skip(",
        "take(",
        "single()",
        "..",
        "\t",
    ];
    let resource = patient();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    let mut inputs = Vec::new();
    for _ in 0..400 {
        let n = 1 + rng.below(24);
        inputs.push(
            (0..n)
                .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
                .collect::<String>(),
        );
    }
    // Random characters too, printable and not.
    for _ in 0..200 {
        let n = rng.below(40);
        inputs.push(
            (0..n)
                .map(|_| match rng.below(4) {
                    0 => char::from(rng.below(128) as u8),
                    1 => char::from_u32(0x80 + rng.below(0x3000) as u32).unwrap_or('?'),
                    _ => {
                        let pool = b"()[]{}.'`@%$+-*/&|<>=~!,0123456789aTZ: \\";
                        char::from(pool[rng.below(pool.len())])
                    }
                })
                .collect(),
        );
    }
    for text in &inputs {
        let result = std::panic::catch_unwind(|| {
            if let Ok(expr) = Expression::parse(text) {
                let _ = expr.evaluate(&resource);
                true
            } else {
                false
            }
        });
        match result {
            Ok(true) => parsed += 1,
            Ok(false) => {}
            Err(_) => panic!("panicked on {text:?}"),
        }
    }
    assert_eq!(inputs.len(), 600);
    eprintln!(
        "{parsed} of {} garbage expressions happened to parse",
        inputs.len()
    );
}

/// A random expression from a small grammar, so that most of them parse and evaluation
/// (not only the parser) meets odd combinations.
fn generate(rng: &mut Rng, depth: usize) -> String {
    const TERMS: &[&str] = &[
        "name",
        "given",
        "telecom",
        "'abc'",
        "''",
        "1",
        "0",
        "-3",
        "2.5",
        "true",
        "false",
        "{}",
        "@2020",
        "@2020-01-01T10:00:00Z",
        "@T10:00",
        "$this",
        "$index",
        "%resource",
        "%ucum",
        "birthDate",
        "deceased",
        "contained",
        "Patient",
        "%context",
        "text.`div`",
        "address",
        "'2020-05'",
        "name.given",
        "id",
        "active",
    ];
    const OPERATORS: &[&str] = &[
        "+", "-", "*", "/", "div", "mod", "&", "|", "=", "!=", "~", "!~", "<", ">", "<=", ">=",
        "in", "contains", "and", "or", "xor", "implies",
    ];
    const NO_ARGS: &[&str] = &[
        "first",
        "last",
        "tail",
        "count",
        "empty",
        "exists",
        "not",
        "hasValue",
        "children",
        "descendants",
        "resolve",
        "distinct",
        "isDistinct",
        "allTrue",
        "anyTrue",
        "allFalse",
        "anyFalse",
        "length",
        "upper",
        "lower",
        "trim",
        "toString",
        "toInteger",
        "toDecimal",
        "single",
        "today",
        "now",
        "htmlChecks",
    ];
    const ONE_ARG: &[&str] = &[
        "where",
        "select",
        "all",
        "exists",
        "skip",
        "take",
        "union",
        "combine",
        "intersect",
        "exclude",
        "subsetOf",
        "supersetOf",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "indexOf",
        "substring",
        "extension",
        "trace",
        "memberOf",
        "conformsTo",
    ];
    const NAMES: &[&str] = &[
        "name",
        "given",
        "family",
        "telecom",
        "value",
        "system",
        "extension",
        "url",
        "id",
        "`div`",
        "contained",
        "deceased",
        "reference",
        "participant",
        "individual",
        "Patient",
    ];
    const TWO_ARGS: &[&str] = &["iif", "replace", "replaceMatches", "substring", "trace"];
    const TYPES: &[&str] = &[
        "String",
        "Integer",
        "dateTime",
        "Patient",
        "FHIR.HumanName",
        "System.Boolean",
        "canonical",
        "Quantity",
    ];
    if depth == 0 {
        return TERMS[rng.below(TERMS.len())].to_owned();
    }
    let sub = |rng: &mut Rng| {
        let d = rng.below(depth);
        generate(rng, d)
    };
    match rng.below(10) {
        0 | 1 => {
            let op = OPERATORS[rng.below(OPERATORS.len())];
            format!("{} {op} {}", sub(rng), sub(rng))
        }
        2 => format!("{}.{}()", sub(rng), NO_ARGS[rng.below(NO_ARGS.len())]),
        3 => {
            let f = ONE_ARG[rng.below(ONE_ARG.len())];
            format!("{}.{f}({})", sub(rng), sub(rng))
        }
        4 => {
            let f = TWO_ARGS[rng.below(TWO_ARGS.len())];
            format!("{}.{f}({}, {})", sub(rng), sub(rng), sub(rng))
        }
        5 => {
            let t = TYPES[rng.below(TYPES.len())];
            match rng.below(5) {
                0 => format!("({} is {t})", sub(rng)),
                1 => format!("({} as {t})", sub(rng)),
                2 => format!("{}.ofType({t})", sub(rng)),
                3 => format!("{}.as({t})", sub(rng)),
                _ => format!("{}.is({t})", sub(rng)),
            }
        }
        6 => format!("({})", sub(rng)),
        7 => format!("{}[{}]", sub(rng), sub(rng)),
        8 => format!("-{}", sub(rng)),
        _ => format!("{}.{}", sub(rng), NAMES[rng.below(NAMES.len())]),
    }
}

#[test]
fn generated_expressions_never_panic() {
    let resources = [patient(), encounter()];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut parsed, mut evaluated) = (0, 0);
    for _ in 0..1000 {
        let text = generate(&mut rng, 5);
        let outcome = std::panic::catch_unwind(|| {
            let Ok(expr) = Expression::parse(&text) else {
                return (0, 0);
            };
            let ok = resources
                .iter()
                .filter(|r| expr.evaluate(r).is_ok())
                .count();
            (1, ok)
        });
        match outcome {
            Ok((p, e)) => {
                parsed += p;
                evaluated += e;
            }
            Err(_) => panic!("panicked on {text:?}"),
        }
    }
    eprintln!("generated: {parsed} of 1000 parse, {evaluated} evaluations without error");
    assert!(parsed > 900, "{parsed}");
}

#[test]
fn nesting_is_bounded() {
    let deep_parens = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let deep_signs = format!("{}1", "-".repeat(100_000));
    let long_sum = format!("1{}", " + 1".repeat(100_000));
    let long_path = format!("a{}", ".b".repeat(100_000));
    let long_calls = format!("a{}", ".first()".repeat(100_000));
    let nested_where = format!("{}true{}", "a.where(".repeat(1000), ")".repeat(1000));
    let nested_index = format!("{}0{}", "a[".repeat(1000), "]".repeat(1000));
    let long_union = format!("1{}", " | 1".repeat(100_000));
    for text in [
        &deep_parens,
        &deep_signs,
        &long_sum,
        &long_path,
        &long_calls,
        &nested_where,
        &nested_index,
        &long_union,
    ] {
        let e = Expression::parse(text).unwrap_err();
        assert!(e.message.contains("nest"), "{}: {e}", &text[..20]);
    }
    let at_limit = format!("{}1{}", "(".repeat(64), ")".repeat(64));
    assert!(Expression::parse(&at_limit).is_ok());
    let over_limit = format!("{}1{}", "(".repeat(65), ")".repeat(65));
    assert!(Expression::parse(&over_limit).is_err());
}

/// The deepest trees the parser accepts evaluate on half a spawned thread's default stack
/// (2 MiB), even in a debug build.
#[test]
fn deepest_accepted_expressions_evaluate_without_overflow() {
    let resource = patient();
    let sum = format!("1{}", " + 1".repeat(parser::MAX_HEIGHT - 2));
    let nested_where = format!(
        "{}true{}",
        "where(".repeat(parser::MAX_NESTING - 1),
        ")".repeat(parser::MAX_NESTING - 1)
    );
    let nested_iif = format!(
        "{}1{}",
        "iif(true, ".repeat(parser::MAX_NESTING - 1),
        ")".repeat(parser::MAX_NESTING - 1)
    );
    let nested_parens = format!(
        "{}1{}",
        "(1 + ".repeat(parser::MAX_NESTING - 1),
        ")".repeat(parser::MAX_NESTING - 1)
    );
    let path = format!(
        "name{}",
        ".given.first().length().toString()".repeat((parser::MAX_HEIGHT - 2) / 4)
    );
    let mut expressions = Vec::new();
    for text in [&sum, &nested_where, &nested_iif, &nested_parens, &path] {
        expressions
            .push(Expression::parse(text).unwrap_or_else(|e| panic!("{}: {e}", &text[..30])));
    }
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            expressions
                .iter()
                .map(|e| e.evaluate(&resource).map(|items| items.len()))
                .collect::<Vec<_>>()
        })
        .unwrap();
    let results = handle.join().unwrap();
    assert_eq!(results[0], Ok(1));
    assert_eq!(results[1], Ok(1));
    assert_eq!(results[2], Ok(1));
    assert_eq!(results[3], Ok(1));
    assert!(results[4].is_ok());
}

#[test]
fn evaluation_borrows_the_resource() {
    let resource = patient();
    let expr = Expression::parse("Patient.name.family").unwrap();
    let items = expr.evaluate(&resource).unwrap();
    let family = &resource["name"][0]["family"];
    match &items[0] {
        Item::Node { value, .. } => assert!(std::ptr::eq(*value, family)),
        other => panic!("{other:?}"),
    }
    assert_eq!(items[0].as_str(), Some("Smith"));
    assert_eq!(Item::from_json(&resource).fhir_type(), Some("Patient"));
}
