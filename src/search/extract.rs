//! Index extraction: each search parameter's FHIRPath expression is evaluated on the resource and
//! what it selects becomes typed index rows (<https://hl7.org/fhir/R4/search.html#ptypes>).

use serde_json::Value;

use super::registry::{ParamType, Registry, SearchParam};
use super::values::{date_range, fold};
use crate::fhir::ResourceType;
use crate::fhirpath::Item;

#[derive(Debug, Clone, PartialEq)]
pub struct StringValue {
    pub param: String,
    pub norm: String,
    pub exact: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenValue {
    pub param: String,
    /// `""` when the value has no system.
    pub system: String,
    pub code: String,
    pub text: Option<String>,
    pub type_system: Option<String>,
    pub type_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DateValue {
    pub param: String,
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReferenceValue {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub url: Option<String>,
    pub identifier_system: Option<String>,
    pub identifier_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantityValue {
    pub param: String,
    pub value: f64,
    pub system: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UriValue {
    pub param: String,
    pub value: String,
}

/// Every index row of one resource version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexRows {
    pub strings: Vec<StringValue>,
    pub tokens: Vec<TokenValue>,
    pub dates: Vec<DateValue>,
    pub references: Vec<ReferenceValue>,
    pub quantities: Vec<QuantityValue>,
    pub uris: Vec<UriValue>,
}

impl IndexRows {
    pub fn len(&self) -> usize {
        self.strings.len()
            + self.tokens.len()
            + self.dates.len()
            + self.references.len()
            + self.quantities.len()
            + self.uris.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index rows of a resource of `rtype`.
pub fn extract(registry: &Registry, rtype: ResourceType, resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    for param in registry.indexed(rtype) {
        let Some(expression) = &param.expression else {
            continue;
        };
        let Ok(items) = expression.evaluate(resource) else {
            continue;
        };
        for item in &items {
            index_item(param, item, &mut rows);
        }
    }
    dedup(&mut rows);
    rows
}

fn dedup(rows: &mut IndexRows) {
    fn unique<T: PartialEq>(items: &mut Vec<T>) {
        let mut kept: Vec<T> = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            if !kept.contains(&item) {
                kept.push(item);
            }
        }
        *items = kept;
    }
    unique(&mut rows.strings);
    unique(&mut rows.tokens);
    unique(&mut rows.dates);
    unique(&mut rows.references);
    unique(&mut rows.quantities);
    unique(&mut rows.uris);
}

/// The FHIR type of a selected item: known from the item (choice suffix, resource), from the
/// definitions when the parameter selects one type, or guessed from the JSON shape.
fn item_type<'i>(param: &'i SearchParam, item: &'i Item<'_>) -> Option<&'i str> {
    if let Some(t) = item.fhir_type() {
        return Some(t);
    }
    match param.element_types.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    }
}

fn index_item(param: &SearchParam, item: &Item<'_>, rows: &mut IndexRows) {
    let code = &param.code;
    if let Item::Boolean(b) = item {
        if param.kind == ParamType::Token {
            rows.tokens.push(token(code, "", &b.to_string()));
        }
        return;
    }
    let Some(value) = item.as_json() else {
        return;
    };
    let fhir_type = item_type(param, item).unwrap_or_else(|| guess_type(value));
    match param.kind {
        ParamType::String => index_string(code, fhir_type, value, rows),
        ParamType::Token => index_token(code, fhir_type, value, rows),
        ParamType::Date => index_date(code, fhir_type, value, rows),
        ParamType::Reference => index_reference(code, value, rows),
        ParamType::Quantity | ParamType::Number => index_quantity(code, value, rows),
        ParamType::Uri => {
            if let Some(text) = value.as_str() {
                rows.uris.push(UriValue {
                    param: code.clone(),
                    value: text.to_owned(),
                });
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn guess_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "decimal",
        Value::String(_) => "string",
        Value::Object(o) if o.contains_key("coding") => "CodeableConcept",
        Value::Object(o) if o.contains_key("reference") || o.contains_key("identifier") => {
            "Reference"
        }
        Value::Object(o) if o.contains_key("family") || o.contains_key("given") => "HumanName",
        Value::Object(o) if o.contains_key("start") || o.contains_key("end") => "Period",
        Value::Object(o) if o.contains_key("code") && o.contains_key("system") => "Coding",
        Value::Object(o) if o.contains_key("value") && o.contains_key("system") => "Identifier",
        _ => "Element",
    }
}

fn string(param: &str, text: &str) -> StringValue {
    StringValue {
        param: param.to_owned(),
        norm: fold(text),
        exact: text.to_owned(),
    }
}

fn index_string(param: &str, fhir_type: &str, value: &Value, rows: &mut IndexRows) {
    let fields: &[&str] = match fhir_type {
        "HumanName" => &["text", "family", "given", "prefix", "suffix"],
        "Address" => &[
            "text",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
        ],
        _ => &[],
    };
    match value {
        Value::String(text) => rows.strings.push(string(param, text)),
        Value::Object(obj) => {
            for field in fields {
                match obj.get(*field) {
                    Some(Value::String(text)) => rows.strings.push(string(param, text)),
                    Some(Value::Array(items)) => {
                        for text in items.iter().filter_map(Value::as_str) {
                            rows.strings.push(string(param, text));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn token(param: &str, system: &str, code: &str) -> TokenValue {
    TokenValue {
        param: param.to_owned(),
        system: system.to_owned(),
        code: code.to_owned(),
        text: None,
        type_system: None,
        type_code: None,
    }
}

fn index_token(param: &str, fhir_type: &str, value: &Value, rows: &mut IndexRows) {
    let text = |v: &Value| v.as_str().map(fold);
    match (fhir_type, value) {
        (_, Value::Bool(b)) => rows.tokens.push(token(param, "", &b.to_string())),
        (_, Value::String(code)) => rows.tokens.push(token(param, "", code)),
        ("CodeableConcept", Value::Object(cc)) => {
            let cc_text = cc.get("text").and_then(|t| t.as_str()).map(fold);
            let codings = cc.get("coding").and_then(Value::as_array);
            for coding in codings.into_iter().flatten() {
                if let Some(code) = coding["code"].as_str() {
                    let mut t = token(param, coding["system"].as_str().unwrap_or_default(), code);
                    t.text = text(&coding["display"]).or_else(|| cc_text.clone());
                    rows.tokens.push(t);
                }
            }
            if let Some(cc_text) = cc_text {
                // A row for :text on the concept's own text.
                let mut t = token(param, "", "");
                t.text = Some(cc_text);
                rows.tokens.push(t);
            }
        }
        ("Coding", Value::Object(coding)) => {
            if let Some(code) = coding.get("code").and_then(Value::as_str) {
                let mut t = token(
                    param,
                    coding
                        .get("system")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    code,
                );
                t.text = coding.get("display").and_then(|d| d.as_str()).map(fold);
                rows.tokens.push(t);
            }
        }
        ("Identifier", Value::Object(identifier)) => {
            if let Some(code) = identifier.get("value").and_then(Value::as_str) {
                let mut t = token(
                    param,
                    identifier
                        .get("system")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    code,
                );
                let kind = &identifier.get("type").cloned().unwrap_or(Value::Null);
                t.text = kind["text"].as_str().map(fold);
                t.type_system = kind["coding"][0]["system"].as_str().map(str::to_owned);
                t.type_code = kind["coding"][0]["code"].as_str().map(str::to_owned);
                rows.tokens.push(t);
            }
        }
        ("ContactPoint", Value::Object(point)) => {
            if let Some(code) = point.get("value").and_then(Value::as_str) {
                rows.tokens.push(token(
                    param,
                    point
                        .get("system")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    code,
                ));
            }
        }
        _ => {}
    }
}

fn index_date(param: &str, fhir_type: &str, value: &Value, rows: &mut IndexRows) {
    let mut push = |low: i64, high: i64| {
        rows.dates.push(DateValue {
            param: param.to_owned(),
            low,
            high,
        })
    };
    match (fhir_type, value) {
        (_, Value::String(text)) => {
            if let Some((low, high)) = date_range(text) {
                push(low, high);
            }
        }
        ("Timing", Value::Object(timing)) => {
            for event in timing
                .get("event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some((low, high)) = event.as_str().and_then(date_range) {
                    push(low, high);
                }
            }
            if let Some(bounds) = timing.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                if let Some((low, high)) = period_range(bounds) {
                    push(low, high);
                }
            }
        }
        (_, Value::Object(_)) => {
            if let Some((low, high)) = period_range(value) {
                push(low, high);
            }
        }
        _ => {}
    }
}

/// A Period's range; an open end is unbounded.
fn period_range(period: &Value) -> Option<(i64, i64)> {
    let start = period["start"]
        .as_str()
        .and_then(date_range)
        .map(|(low, _)| low);
    let end = period["end"]
        .as_str()
        .and_then(date_range)
        .map(|(_, high)| high);
    if start.is_none() && end.is_none() {
        return None;
    }
    Some((start.unwrap_or(i64::MIN / 2), end.unwrap_or(i64::MAX / 2)))
}

fn index_reference(param: &str, value: &Value, rows: &mut IndexRows) {
    let mut row = ReferenceValue {
        param: param.to_owned(),
        ..ReferenceValue::default()
    };
    match value {
        // canonical / uri targets
        Value::String(url) => row.url = Some(url.clone()),
        Value::Object(reference) => {
            if let Some(text) = reference.get("reference").and_then(Value::as_str) {
                if text.starts_with('#') || text.starts_with("urn:") {
                    // Contained and bundle-local references are not searchable targets.
                } else if text.starts_with("http://") || text.starts_with("https://") {
                    row.url = Some(text.to_owned());
                } else {
                    let mut parts = text.split('/');
                    row.target_type = parts.next().map(str::to_owned);
                    row.target_id = parts.next().map(str::to_owned);
                }
            }
            if let Some(identifier) = reference.get("identifier") {
                row.identifier_system = identifier["system"].as_str().map(str::to_owned);
                row.identifier_value = identifier["value"].as_str().map(str::to_owned);
            }
        }
        _ => {}
    }
    if row.target_id.is_some() || row.url.is_some() || row.identifier_value.is_some() {
        rows.references.push(row);
    }
}

fn index_quantity(param: &str, value: &Value, rows: &mut IndexRows) {
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                rows.quantities.push(QuantityValue {
                    param: param.to_owned(),
                    value: v,
                    system: String::new(),
                    code: String::new(),
                });
            }
        }
        Value::Object(q) => {
            if let Some(v) = q.get("value").and_then(Value::as_f64) {
                rows.quantities.push(QuantityValue {
                    param: param.to_owned(),
                    value: v,
                    system: q
                        .get("system")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    code: q
                        .get("code")
                        .or_else(|| q.get("unit"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::definitions::Definitions;
    use serde_json::json;

    fn rows(rtype: ResourceType, resource: Value) -> IndexRows {
        let defs = Definitions::shared().unwrap();
        let params: Vec<Value> = defs
            .conformance("SearchParameter")
            .map(|r| (**r).clone())
            .collect();
        let registry = Registry::load(&defs, &params);
        extract(&registry, rtype, &resource)
    }

    #[test]
    fn patient_rows() {
        let r = rows(
            ResourceType::Patient,
            json!({
                "resourceType": "Patient",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
                "name": [{"family": "Zoë-Smith", "given": ["Jane", "Ann"]}],
                "telecom": [{"system": "email", "value": "jane@example.org"}],
                "gender": "female",
                "birthDate": "1980-02",
                "deceasedBoolean": false,
                "generalPractitioner": [{"reference": "Organization/gp1"}],
                "meta": {"tag": [{"system": "http://t", "code": "x"}], "profile": ["http://p"]}
            }),
        );
        let has_string = |p: &str, v: &str| r.strings.iter().any(|s| s.param == p && s.norm == v);
        assert!(has_string("family", "zoe-smith"));
        assert!(has_string("given", "ann"));
        assert!(has_string("name", "jane"));
        let has_token = |p: &str, s: &str, c: &str| {
            r.tokens
                .iter()
                .any(|t| t.param == p && t.system == s && t.code == c)
        };
        assert!(has_token(
            "identifier",
            "https://fhir.nhs.uk/Id/nhs-number",
            "9434765919"
        ));
        assert!(has_token("gender", "", "female"));
        assert!(has_token("email", "email", "jane@example.org"));
        assert!(has_token("deceased", "", "false"));
        assert!(has_token("_tag", "http://t", "x"));
        assert!(r
            .uris
            .iter()
            .any(|u| u.param == "_profile" && u.value == "http://p"));
        let birth = r.dates.iter().find(|d| d.param == "birthdate").unwrap();
        assert_eq!(birth.high - birth.low + 1, 29 * 86_400_000);
        assert!(r
            .references
            .iter()
            .any(|x| x.param == "general-practitioner"
                && x.target_type.as_deref() == Some("Organization")
                && x.target_id.as_deref() == Some("gp1")));
    }

    #[test]
    fn encounter_rows() {
        let r = rows(
            ResourceType::Encounter,
            json!({
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": {"reference": "Patient/p1"},
                "participant": [{"individual": {"reference": "Practitioner/d1"}}],
                "period": {"start": "2024-01-01T10:00:00Z"},
                "length": {"value": 30, "system": "http://unitsofmeasure.org", "code": "min"}
            }),
        );
        assert!(r
            .references
            .iter()
            .any(|x| x.param == "patient" && x.target_id.as_deref() == Some("p1")));
        assert!(r.references.iter().any(|x| x.param == "subject"));
        assert!(r
            .references
            .iter()
            .any(|x| x.param == "practitioner" && x.target_id.as_deref() == Some("d1")));
        assert!(r
            .tokens
            .iter()
            .any(|t| t.param == "class" && t.code == "IMP"));
        let period = r.dates.iter().find(|d| d.param == "date").unwrap();
        assert!(period.high > period.low + 1_000_000_000);
        assert!(r
            .quantities
            .iter()
            .any(|q| q.param == "length" && q.value == 30.0 && q.code == "min"));
    }
}
