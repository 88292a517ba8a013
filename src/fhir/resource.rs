//! Resource JSON as stored and served: parsing a request body, and stamping the server's `id` and
//! `meta` onto what the client sent without dropping or reordering anything else.

use serde_json::{Map, Value};

use super::instant::Millis;
use super::{ResourceId, ResourceType, VersionId};

/// Why a request body is not a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not valid JSON (line {line}, column {column}): {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the body must be a JSON object (a FHIR resource)")]
    NotAnObject,
    #[error("the body has no resourceType")]
    MissingResourceType,
    #[error("resourceType is '{found}' but this endpoint takes {expected}")]
    TypeMismatch {
        found: String,
        expected: ResourceType,
    },
}

/// Parses a request body into a JSON object, reporting where malformed JSON breaks.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, BodyError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BodyError::NotAnObject),
        Err(e) => Err(BodyError::Malformed {
            line: e.line(),
            column: e.column(),
            message: malformed_reason(&e),
        }),
    }
}

/// serde's message without its own " at line X column Y" suffix (we report those separately).
fn malformed_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Parses a body that must be a resource of `expected` type.
pub fn parse_resource(
    bytes: &[u8],
    expected: ResourceType,
) -> Result<Map<String, Value>, BodyError> {
    let map = parse_object(bytes)?;
    match map.get("resourceType").and_then(Value::as_str) {
        None => Err(BodyError::MissingResourceType),
        Some(found) if found != expected.as_str() => Err(BodyError::TypeMismatch {
            found: found.to_owned(),
            expected,
        }),
        Some(_) => Ok(map),
    }
}

/// The server-owned parts of a stored version.
#[derive(Debug, Clone, Copy)]
pub struct VersionStamp<'a> {
    pub resource_type: ResourceType,
    pub id: &'a ResourceId,
    pub version: VersionId,
    pub last_updated: Millis,
}

/// Returns the resource as it is stored: `resourceType`, `id` and `meta` first, with the server's
/// `meta.versionId` and `meta.lastUpdated` replacing any the client sent; every other element (and
/// every other `meta` element: `profile`, `security`, `tag`, `source`) kept in the client's order.
pub fn stamp(content: Map<String, Value>, stamp: VersionStamp<'_>) -> Value {
    let mut out = Map::with_capacity(content.len() + 2);
    out.insert(
        "resourceType".into(),
        Value::String(stamp.resource_type.as_str().into()),
    );
    out.insert("id".into(), Value::String(stamp.id.as_str().into()));

    let mut meta = Map::new();
    meta.insert("versionId".into(), Value::String(stamp.version.to_string()));
    meta.insert(
        "lastUpdated".into(),
        Value::String(stamp.last_updated.to_instant()),
    );
    let mut rest = Map::with_capacity(content.len());
    for (key, value) in content {
        match key.as_str() {
            "resourceType" | "id" => {}
            "meta" => {
                if let Value::Object(client_meta) = value {
                    for (k, v) in client_meta {
                        if k != "versionId" && k != "lastUpdated" {
                            meta.insert(k, v);
                        }
                    }
                }
            }
            _ => {
                rest.insert(key, value);
            }
        }
    }
    out.insert("meta".into(), Value::Object(meta));
    out.extend(rest);
    Value::Object(out)
}

/// Whether two versions carry the same content, ignoring what the server stamps per version.
/// An update whose content equals the current version creates no new version.
pub fn same_content(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let keys = a.keys().chain(b.keys());
    for key in keys {
        let equal = if key == "meta" {
            client_meta(a.get("meta")) == client_meta(b.get("meta"))
        } else {
            a.get(key) == b.get(key)
        };
        if !equal {
            return false;
        }
    }
    true
}

/// `meta` without the server-stamped elements; `None` when nothing else is in it.
fn client_meta(meta: Option<&Value>) -> Option<Map<String, Value>> {
    let mut meta = meta?.as_object()?.clone();
    meta.shift_remove("versionId");
    meta.shift_remove("lastUpdated");
    (!meta.is_empty()).then_some(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn stamp_puts_server_fields_first_and_keeps_client_meta() {
        let id = ResourceId::parse("p1").into_iter().next();
        let Some(id) = id else { return };
        let body = object(json!({
            "resourceType": "Patient",
            "name": [{"family": "Smith"}],
            "meta": {"versionId": "99", "profile": ["http://x"], "tag": [{"code": "t"}]},
            "active": true,
            "id": "ignored"
        }));
        let stamped = stamp(
            body,
            VersionStamp {
                resource_type: ResourceType::Patient,
                id: &id,
                version: VersionId::FIRST,
                last_updated: Millis(0),
            },
        );
        let text = serde_json::to_string(&stamped).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"1970-01-01T00:00:00.000Z","profile":["http://x"],"tag":[{"code":"t"}]},"name":[{"family":"Smith"}],"active":true}"#
        );
    }

    #[test]
    fn same_content_ignores_server_meta_only() {
        let a = json!({"resourceType": "Patient", "id": "1", "meta": {"versionId": "1", "lastUpdated": "x"}, "active": true});
        let b = json!({"resourceType": "Patient", "id": "1", "active": true});
        let c = json!({"resourceType": "Patient", "id": "1", "meta": {"tag": [{"code": "t"}]}, "active": true});
        let d = json!({"resourceType": "Patient", "id": "1", "active": false});
        let (a, b, c, d) = (object(a), object(b), object(c), object(d));
        assert!(same_content(&a, &b));
        assert!(!same_content(&a, &c));
        assert!(!same_content(&a, &d));
    }

    #[test]
    fn malformed_json_reports_position() {
        let err = parse_object(b"{\n  \"a\": 1,\n  oops\n}");
        assert!(matches!(err, Err(BodyError::Malformed { line: 3, .. })));
        assert_eq!(parse_object(b"[1]"), Err(BodyError::NotAnObject));
    }
}
