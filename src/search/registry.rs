//! The search parameters, as data: the R4 SearchParameters in `schema/search-parameters.json` and
//! the project's own in `fhir-profiles/`, compiled once. A new parameter is a data change.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::fhir::definitions::{Definitions, Kind};
use crate::fhir::ResourceType;
use crate::fhirpath::Expression;

/// The search parameter types (<https://hl7.org/fhir/R4/search.html#ptypes>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "number" => Self::Number,
            "date" => Self::Date,
            "string" => Self::String,
            "token" => Self::Token,
            "reference" => Self::Reference,
            "composite" => Self::Composite,
            "quantity" => Self::Quantity,
            "uri" => Self::Uri,
            "special" => Self::Special,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Date => "date",
            Self::String => "string",
            Self::Token => "token",
            Self::Reference => "reference",
            Self::Composite => "composite",
            Self::Quantity => "quantity",
            Self::Uri => "uri",
            Self::Special => "special",
        }
    }
}

/// One search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParam {
    pub code: String,
    pub kind: ParamType,
    /// The canonical URL of its SearchParameter.
    pub url: String,
    pub expression: Option<Expression>,
    /// Resource types a reference parameter can point at.
    pub targets: Vec<String>,
    /// The FHIR types of the elements the expression selects on this resource type (empty when
    /// they cannot be told from the definitions; the value's shape decides then).
    pub element_types: Vec<String>,
    pub documentation: String,
}

/// Every search parameter, by resource type and code.
#[derive(Debug, Default)]
pub struct Registry {
    by_type: HashMap<ResourceType, BTreeMap<String, SearchParam>>,
}

/// Parameters the server implements itself rather than through an index.
pub const NATIVE: [&str; 2] = ["_id", "_lastUpdated"];

/// Parameters whose SearchParameter has no expression, or that are not implemented; they are
/// refused as unknown rather than silently ignored.
const UNSUPPORTED: [&str; 5] = ["_text", "_content", "_query", "near", "phonetic"];

impl Registry {
    pub fn load(defs: &Definitions, search_parameters: &[Value]) -> Self {
        let mut registry = Registry::default();
        for sp in search_parameters {
            let Some(code) = sp["code"].as_str() else {
                continue;
            };
            if UNSUPPORTED.contains(&code) {
                continue;
            }
            let Some(kind) = sp["type"].as_str().and_then(ParamType::parse) else {
                continue;
            };
            if matches!(kind, ParamType::Composite | ParamType::Special) {
                continue;
            }
            let expression =
                sp["expression"]
                    .as_str()
                    .and_then(|text| match Expression::parse(text) {
                        Ok(e) => Some(e),
                        Err(e) => {
                            log::warn!("search parameter {code}: expression not usable: {e}");
                            None
                        }
                    });
            if expression.is_none() && !NATIVE.contains(&code) {
                continue;
            }
            let targets: Vec<String> = sp["target"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            let bases: Vec<&str> = sp["base"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let applies_to: Vec<ResourceType> =
                if bases.contains(&"Resource") || bases.contains(&"DomainResource") {
                    ResourceType::ALL.to_vec()
                } else {
                    bases
                        .iter()
                        .filter_map(|b| ResourceType::parse(b))
                        .collect()
                };
            for rtype in applies_to {
                let element_types = sp["expression"]
                    .as_str()
                    .map(|e| element_types(defs, rtype, e))
                    .unwrap_or_default();
                registry.by_type.entry(rtype).or_default().insert(
                    code.to_owned(),
                    SearchParam {
                        code: code.to_owned(),
                        kind,
                        url: sp["url"].as_str().unwrap_or_default().to_owned(),
                        expression: expression.clone(),
                        targets: targets.clone(),
                        element_types,
                        documentation: sp["description"].as_str().unwrap_or_default().to_owned(),
                    },
                );
            }
        }
        registry
    }

    pub fn get(&self, rtype: ResourceType, code: &str) -> Option<&SearchParam> {
        self.by_type.get(&rtype)?.get(code)
    }

    /// The parameters of a type, by code.
    pub fn params(&self, rtype: ResourceType) -> impl Iterator<Item = &SearchParam> {
        self.by_type
            .get(&rtype)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// The parameters whose values are indexed (all but the native ones).
    pub fn indexed(&self, rtype: ResourceType) -> impl Iterator<Item = &SearchParam> {
        self.params(rtype)
            .filter(|p| p.expression.is_some() && !NATIVE.contains(&p.code.as_str()))
    }
}

/// The FHIR types of what an expression selects on `rtype`, read from the definitions: each
/// `|`-separated part that is a plain path from the type (with `.where(...)` filters and
/// `as T` casts allowed) is resolved element by element.
fn element_types(defs: &Definitions, rtype: ResourceType, expression: &str) -> Vec<String> {
    let mut types = Vec::new();
    for part in split_top_level(expression, '|') {
        let part = part
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim();
        if let Some((_, cast)) = part.split_once(" as ") {
            types.push(cast.trim().trim_end_matches(')').to_owned());
            continue;
        }
        let path = strip_calls(part);
        let mut segments = path.split('.');
        let head = segments.next().unwrap_or_default();
        if head != rtype.as_str() && head != "Resource" && head != "DomainResource" {
            continue;
        }
        let rest: Vec<&str> = segments.collect();
        if let Some(found) = resolve_path(defs, rtype.as_str(), &rest) {
            types.extend(found);
        }
    }
    types.sort();
    types.dedup();
    types
}

/// Walks `segments` from the type `root` through the definitions; the element's types.
fn resolve_path(defs: &Definitions, root: &str, segments: &[&str]) -> Option<Vec<String>> {
    let mut structure = defs.base(root)?;
    let mut element_id = structure.type_name.clone();
    let mut current: Vec<String> = vec![root.to_owned()];
    for segment in segments {
        let child = structure.child_for_key(&element_id, segment).or_else(|| {
            // A choice element named without its type (`deceased`): all its types.
            structure
                .children(&element_id)
                .find(|c| c.choice && c.name == *segment)
                .map(|element| crate::fhir::definitions::ChildMatch {
                    element,
                    type_code: None,
                })
        })?;
        current = match child.type_code {
            Some(t) => vec![t.to_owned()],
            None => child.element.types.iter().map(|t| t.code.clone()).collect(),
        };
        match current.as_slice() {
            [single] if single == "BackboneElement" || single == "Element" => {
                element_id = child.element.id.clone();
            }
            [single] => {
                let next = defs.base(single)?;
                if next.kind == Kind::PrimitiveType {
                    element_id = String::new();
                } else {
                    element_id = next.type_name.clone();
                }
                structure = next;
            }
            _ => element_id = String::new(),
        }
    }
    Some(current)
}

/// Removes function calls (`.where(...)`, `.exists()`) from a path.
fn strip_calls(part: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in part.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    // `a.where` is left with a trailing `.where`; drop function names.
    out.split('.')
        .filter(|s| {
            !matches!(
                *s,
                "where" | "exists" | "resolve" | "ofType" | "first" | "empty" | "not"
            )
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => depth -= 1,
            c if c == separator && depth == 0 && !in_string => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let defs = Definitions::shared().unwrap();
        let params: Vec<Value> = defs
            .conformance("SearchParameter")
            .map(|r| (**r).clone())
            .collect();
        Registry::load(&defs, &params)
    }

    #[test]
    fn parameters_and_their_element_types() {
        let r = registry();
        let identifier = r.get(ResourceType::Patient, "identifier").unwrap();
        assert_eq!(identifier.kind, ParamType::Token);
        assert_eq!(identifier.element_types, ["Identifier"]);
        assert_eq!(
            r.get(ResourceType::Patient, "name").unwrap().element_types,
            ["HumanName"]
        );
        assert_eq!(
            r.get(ResourceType::Patient, "family")
                .unwrap()
                .element_types,
            ["string"]
        );
        assert_eq!(
            r.get(ResourceType::Patient, "email").unwrap().element_types,
            ["ContactPoint"]
        );
        assert_eq!(
            r.get(ResourceType::Patient, "death-date")
                .unwrap()
                .element_types,
            ["dateTime"]
        );
        assert_eq!(
            r.get(ResourceType::Encounter, "patient")
                .unwrap()
                .element_types,
            ["Reference"]
        );
        assert_eq!(
            r.get(ResourceType::Encounter, "length")
                .unwrap()
                .element_types,
            ["Duration"]
        );
        let occurrence = &r
            .get(ResourceType::ServiceRequest, "occurrence")
            .unwrap()
            .element_types;
        assert!(
            occurrence.contains(&"Period".to_owned())
                && occurrence.contains(&"dateTime".to_owned()),
            "{occurrence:?}"
        );
        assert!(r.get(ResourceType::Patient, "_tag").is_some());
        assert!(r.get(ResourceType::Location, "_profile").is_some());
        assert!(r.get(ResourceType::Patient, "_id").is_some());
        assert!(r.get(ResourceType::Patient, "near").is_none());
        assert!(r
            .get(ResourceType::Encounter, "subject")
            .unwrap()
            .targets
            .contains(&"Patient".to_owned()));
    }
}
