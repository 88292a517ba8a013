//! `_summary` and `_elements` (<https://hl7.org/fhir/R4/search.html#summary>): what of each
//! resource a searchset carries. A trimmed resource is marked SUBSETTED.

use serde_json::{json, Map, Value};

use super::query::Summary;
use crate::fhir::definitions::Definitions;

const SUBSETTED: (&str, &str) = (
    "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "SUBSETTED",
);

/// Whether a resource is served as stored (no trimming asked for).
pub fn is_whole(summary: Summary, elements: Option<&Vec<String>>) -> bool {
    matches!(summary, Summary::False) && elements.is_none()
}

/// The resource trimmed as `_summary`/`_elements` ask; `None` when the stored JSON is unreadable.
pub fn shape(
    defs: &Definitions,
    content: &str,
    summary: Summary,
    elements: Option<&Vec<String>>,
) -> Option<String> {
    let Value::Object(resource) = serde_json::from_str::<Value>(content).ok()? else {
        return None;
    };
    let rtype = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let structure = defs.base(&rtype);
    let element = |key: &str| structure.and_then(|s| s.element(&format!("{rtype}.{key}")));
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let base = key.strip_prefix('_').unwrap_or(key);
        let defined = element(base).or_else(|| {
            structure.and_then(|s| {
                s.children(&rtype)
                    .find(|c| c.choice && base.starts_with(&c.name))
            })
        });
        let mandatory = defined.is_some_and(|e| e.min.unwrap_or(0) > 0);
        if let Some(elements) = elements {
            // Mandatory elements too, so that the subset is still a valid resource
            // (<https://hl7.org/fhir/R4/search.html#elements>: servers SHOULD return them).
            return mandatory || elements.iter().any(|e| e == base);
        }
        match summary {
            Summary::True => defined.is_some_and(|e| e.is_summary),
            Summary::Text => base == "text" || mandatory,
            Summary::Data => base != "text",
            Summary::False | Summary::Count => true,
        }
    };
    let mut out = Map::new();
    for (key, value) in resource {
        if keep(&key) {
            out.insert(key, value);
        }
    }
    let meta = out.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({"system": SUBSETTED.0, "code": SUBSETTED.1}));
        }
    }
    serde_json::to_string(&Value::Object(out)).ok()
}
