//! Write-time validation, run on every create and update before anything is stored.
//!
//! The foundation checks the elements the server itself relies on (`id`, `meta`); the
//! StructureDefinition-driven R4 and UK Core validation builds on [`Validator::validate`].

use serde_json::{Map, Value};

use crate::fhir::outcome::{Issue, IssueType, SpineCode};
use crate::fhir::{ResourceId, ResourceType};

/// Validates resources; cheap to share between workers.
#[derive(Debug, Default)]
pub struct Validator;

/// The issues found: any error rejects the write; warnings are reported only.
#[derive(Debug, Default, PartialEq)]
pub struct Findings {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl Validator {
    pub fn new() -> Self {
        Self
    }

    pub fn validate(&self, rtype: ResourceType, content: &Map<String, Value>) -> Findings {
        let mut findings = Findings::default();
        let at = |path: &str| format!("{rtype}.{path}");
        if let Some(id) = content.get("id") {
            if id.as_str().and_then(ResourceId::parse).is_none() {
                findings.errors.push(
                    Issue::error(IssueType::Value, "id must match [A-Za-z0-9-.]{1,64}")
                        .with_details(SpineCode::InvalidResourceId)
                        .at(at("id")),
                );
            }
        }
        if let Some(meta) = content.get("meta") {
            check_meta(meta, &at("meta"), &mut findings.errors);
        }
        findings
    }
}

fn check_meta(meta: &Value, path: &str, errors: &mut Vec<Issue>) {
    let invalid = |what: &str, at: String| {
        Issue::error(IssueType::Structure, what.to_owned())
            .with_details(SpineCode::InvalidResource)
            .at(at)
    };
    let Some(meta) = meta.as_object() else {
        errors.push(invalid("meta must be an object", path.to_owned()));
        return;
    };
    for (key, value) in meta {
        let element = format!("{path}.{key}");
        match key.as_str() {
            // Server-owned: whatever the client sent is replaced.
            "versionId" | "lastUpdated" => {}
            "source" if value.as_str().is_none_or(str::is_empty) => {
                errors.push(invalid("meta.source must be a non-empty uri", element));
            }
            "profile" => each_item(value, &element, errors, |item| {
                item.as_str()
                    .is_some_and(|s| !s.is_empty() && !s.contains(' '))
            }),
            "tag" | "security" => each_item(value, &element, errors, |item| {
                item.as_object().is_some_and(|o| !o.is_empty())
            }),
            _ => {}
        }
    }
}

/// Checks that `value` is a non-empty array whose items all pass `valid`.
fn each_item(value: &Value, path: &str, errors: &mut Vec<Issue>, valid: impl Fn(&Value) -> bool) {
    let Some(items) = value.as_array().filter(|items| !items.is_empty()) else {
        errors.push(
            Issue::error(
                IssueType::Structure,
                format!("{path} must be a non-empty array"),
            )
            .with_details(SpineCode::InvalidResource)
            .at(path.to_owned()),
        );
        return;
    };
    for (index, item) in items.iter().enumerate() {
        if !valid(item) {
            errors.push(
                Issue::error(
                    IssueType::Structure,
                    format!("{path}[{index}] is not valid"),
                )
                .with_details(SpineCode::InvalidResource)
                .at(format!("{path}[{index}]")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn findings(v: Value) -> Findings {
        match v {
            Value::Object(map) => Validator::new().validate(ResourceType::Patient, &map),
            _ => Findings::default(),
        }
    }

    #[test]
    fn meta_shapes_are_checked() {
        assert!(findings(json!({"meta": {"profile": ["http://x"]}}))
            .errors
            .is_empty());
        let cases = [
            (json!({"meta": "x"}), "Patient.meta"),
            (
                json!({"meta": {"profile": "http://x"}}),
                "Patient.meta.profile",
            ),
            (json!({"meta": {"tag": [1]}}), "Patient.meta.tag[0]"),
            (json!({"id": "a b"}), "Patient.id"),
        ];
        for (resource, expression) in cases {
            let errors = findings(resource).errors;
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].expression, vec![expression.to_owned()]);
        }
    }
}
