//! JSON Patch (RFC 6902) on a stored resource: `PATCH` with `application/json-patch+json`, and in
//! transactions as a Binary carrying the patch (<https://hl7.org/fhir/R4/http.html#patch>).

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fhir::outcome::{Issue, IssueType, SpineCode};

/// The media type of a JSON Patch document.
pub const JSON_PATCH: &str = "application/json-patch+json";

/// Parses a JSON Patch document (an array of operations).
pub fn parse(document: &Value) -> Result<json_patch::Patch, ApiError> {
    if !document.is_array() {
        return Err(unprocessable(
            "a JSON Patch document is an array of operations",
        ));
    }
    serde_json::from_value(document.clone()).map_err(|e| {
        ApiError::invalid_parameter("body", format!("not a valid JSON Patch document: {e}"))
    })
}

/// The patch carried by a transaction entry's Binary resource.
pub fn from_binary(binary: &Map<String, Value>) -> Result<json_patch::Patch, ApiError> {
    let content_type = binary
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !content_type.starts_with(JSON_PATCH) {
        return Err(ApiError::invalid_parameter(
            "Binary.contentType",
            format!("a PATCH entry carries a Binary with contentType {JSON_PATCH}"),
        ));
    }
    let data = binary
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| ApiError::invalid_parameter("Binary.data", format!("not base64: {e}")))?;
    let document: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid_parameter("Binary.data", format!("not JSON: {e}")))?;
    parse(&document)
}

/// Applies `patch` to `resource`. A failing operation (a `test` that does not hold, a path that
/// does not exist) answers 422, and so does a patch that changes the resource's type or id.
pub fn apply(
    resource: &Map<String, Value>,
    patch: &json_patch::Patch,
) -> Result<Map<String, Value>, ApiError> {
    let mut document = Value::Object(resource.clone());
    json_patch::patch(&mut document, patch)
        .map_err(|e| unprocessable(&format!("the patch could not be applied: {e}")))?;
    let Value::Object(patched) = document else {
        return Err(unprocessable(
            "the patch replaced the resource with something else",
        ));
    };
    for key in ["resourceType", "id"] {
        if patched.get(key) != resource.get(key) {
            return Err(unprocessable(&format!(
                "a patch cannot change the resource's {key}"
            )));
        }
    }
    Ok(patched)
}

fn unprocessable(message: &str) -> ApiError {
    ApiError::Invalid {
        status: actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
        issues: vec![
            Issue::error(IssueType::Processing, message).with_details(SpineCode::InvalidResource)
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn patches_apply_and_fail_cleanly() {
        let resource = object(json!({"resourceType": "Patient", "id": "p", "active": true}));
        let ok = parse(&json!([{"op": "test", "path": "/active", "value": true}, {"op": "replace", "path": "/active", "value": false}])).unwrap();
        assert_eq!(apply(&resource, &ok).unwrap()["active"], json!(false));
        let failing = parse(&json!([{"op": "test", "path": "/active", "value": false}])).unwrap();
        assert!(apply(&resource, &failing).is_err());
        let id_change = parse(&json!([{"op": "replace", "path": "/id", "value": "q"}])).unwrap();
        assert!(apply(&resource, &id_change).is_err());
        assert!(parse(&json!({"op": "add"})).is_err());
        let binary = object(
            json!({"resourceType": "Binary", "contentType": JSON_PATCH, "data": base64::engine::general_purpose::STANDARD.encode(br#"[{"op":"remove","path":"/active"}]"#)}),
        );
        assert!(apply(&resource, &from_binary(&binary).unwrap())
            .unwrap()
            .get("active")
            .is_none());
    }
}
