//! Write-time validation, run on every create and update (and by `$validate`), driven by the
//! StructureDefinitions in `schema/` (R4 base) and `fhir-profiles/` (UK Core, project profiles):
//!
//! - structure: unknown elements, JSON kinds, arrays, primitive formats (the regexes of the R4
//!   primitive types), choice types, primitive extensions (`_birthDate`), contained resources,
//!   empty objects/arrays/strings;
//! - rules: cardinality, required bindings over the shipped value sets, fixed and pattern values,
//!   slicing by value and by extension URL, the invariants ext-1, dom-2..dom-6, per-1 and narrative
//!   safety (txt-1/txt-2);
//! - UK Core: Patient, Encounter and ServiceRequest always meet their UK Core profile; any other
//!   profile a resource claims in `meta.profile` is applied when it is known;
//! - NHS numbers (Modulus 11) wherever an NHS number identifier appears, and the references a
//!   write must be able to resolve.
//!
//! Structural problems answer 400; rule violations 422 (see [`Findings::status`]).

pub mod dates;
pub mod narrative;
pub mod nhs_number;
mod walk;

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use crate::fhir::definitions::{DefinitionError, Definitions, Kind, Structure};
use crate::fhir::outcome::{Issue, IssueType};
use crate::fhir::{ResourceId, ResourceType};
use crate::fhirpath::Expression;
use nhs_number::{NhsNumber, LEGACY_NHS_NUMBER_SYSTEM, NHS_NUMBER_SYSTEM};

/// The UK Core profile each resource type is always held to.
const UK_CORE: [(&str, &str); 3] = [
    (
        "Patient",
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient",
    ),
    (
        "Encounter",
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter",
    ),
    (
        "ServiceRequest",
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest",
    ),
];

/// Invariants checked natively by the walk (faster, and with clearer messages), or, for ele-1,
/// by the walk's refusal of empty values; their FHIRPath forms are not evaluated.
const NATIVE_INVARIANTS: [&str; 10] = [
    "ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "dom-6", "per-1", "txt-1", "txt-2",
];

/// An error-severity invariant of an R4 element, compiled.
struct Invariant {
    key: String,
    human: String,
    expression: Expression,
}

/// Validates resources. Built once at start; cheap to share between workers.
pub struct Validator {
    defs: Arc<Definitions>,
    /// Anchored regexes of the primitive types, by type name.
    primitive_patterns: HashMap<String, Regex>,
    /// The R4 invariants evaluated with FHIRPath, by `structure url#element id`.
    invariants: HashMap<String, Vec<Invariant>>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

/// How to validate.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `Prefer: handling=lenient`: unknown elements become warnings, and references need not
    /// resolve.
    pub lenient: bool,
    /// The resource is an entry of a transaction Bundle, where `urn:uuid:` references resolve.
    pub in_bundle: bool,
    /// Profiles to apply besides the UK Core one and those claimed in `meta.profile`.
    pub profiles: Vec<String>,
}

/// A relative reference to a resource type this server stores: it must exist in the same local
/// system (checked inside the write transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceTarget {
    pub resource_type: ResourceType,
    pub id: ResourceId,
    /// Where the reference is, e.g. `Encounter.subject.reference`.
    pub expression: String,
}

/// What validation found, and the facts a write needs from the resource.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// An error makes the JSON not a well-formed resource of its type (400 rather than 422).
    pub structural: bool,
    /// A Patient's NHS number, for the one-Patient-per-NHS-number rule.
    pub nhs_number: Option<NhsNumber>,
    pub references: Vec<ReferenceTarget>,
}

impl Findings {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// 400 for structural problems, 422 for rule violations.
    pub fn status(&self) -> u16 {
        if self.structural {
            400
        } else {
            422
        }
    }
}

fn invariant_key(structure_url: &str, element_id: &str) -> String {
    format!("{structure_url}#{element_id}")
}

impl Validator {
    pub fn new() -> Result<Self, DefinitionError> {
        let defs = Definitions::shared()?;
        let mut primitive_patterns = HashMap::new();
        for structure in defs.structures().filter(|s| s.kind == Kind::PrimitiveType) {
            if let Some(pattern) = &structure.primitive_regex {
                let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    DefinitionError(format!("regex of {}: {e}", structure.type_name))
                })?;
                primitive_patterns.insert(structure.type_name.clone(), regex);
            }
        }
        let mut invariants: HashMap<String, Vec<Invariant>> = HashMap::new();
        for structure in defs.structures().filter(|s| !s.is_profile) {
            for element in &structure.elements {
                for constraint in &element.constraints {
                    let Some(text) = constraint.expression.as_deref() else {
                        continue;
                    };
                    if !constraint.error || NATIVE_INVARIANTS.contains(&constraint.key.as_str()) {
                        continue;
                    }
                    match Expression::parse(text) {
                        Ok(expression) => invariants
                            .entry(invariant_key(&structure.url, &element.id))
                            .or_default()
                            .push(Invariant {
                                key: constraint.key.clone(),
                                human: constraint.human.clone(),
                                expression,
                            }),
                        Err(e) => log::debug!("invariant {} not evaluated: {e}", constraint.key),
                    }
                }
            }
        }
        Ok(Self {
            defs,
            primitive_patterns,
            invariants,
        })
    }

    fn invariants_of(&self, structure_url: &str, element_id: &str) -> &[Invariant] {
        self.invariants
            .get(&invariant_key(structure_url, element_id))
            .map_or(&[], Vec::as_slice)
    }

    pub fn definitions(&self) -> &Arc<Definitions> {
        &self.defs
    }

    fn primitive_pattern(&self, type_name: &str) -> Option<&Regex> {
        self.primitive_patterns.get(type_name)
    }

    /// Rewrites what the server normalises before validating and storing: the legacy NHS number
    /// system becomes the current one, and the server-owned `meta.versionId` and
    /// `meta.lastUpdated` a client sent are dropped (the server stamps its own).
    pub fn normalise(&self, resource: &mut Map<String, Value>) {
        if let Some(Value::Object(meta)) = resource.get_mut("meta") {
            meta.shift_remove("versionId");
            meta.shift_remove("lastUpdated");
            if meta.is_empty() {
                resource.shift_remove("meta");
            }
        }
        fn walk(value: &mut Value) {
            match value {
                Value::Object(map) => {
                    if map.get("system").and_then(Value::as_str) == Some(LEGACY_NHS_NUMBER_SYSTEM) {
                        map.insert("system".into(), Value::String(NHS_NUMBER_SYSTEM.into()));
                    }
                    map.values_mut().for_each(walk);
                }
                Value::Array(items) => items.iter_mut().for_each(walk),
                _ => {}
            }
        }
        resource.values_mut().for_each(walk);
    }

    /// Validates a resource of `rtype` (its `resourceType` is already known to match).
    pub fn validate(&self, rtype: ResourceType, resource: &Value, options: &Options) -> Findings {
        let mut profiles: Vec<&Structure> = Vec::new();
        let mut unknown_profiles = Vec::new();
        let uk_core = UK_CORE
            .iter()
            .find(|(t, _)| *t == rtype.as_str())
            .map(|(_, url)| *url);
        let claimed = resource["meta"]["profile"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for url in uk_core
            .into_iter()
            .chain(claimed)
            .chain(options.profiles.iter().map(String::as_str))
        {
            match self.defs.structure(url) {
                Some(p) if p.type_name == rtype.as_str() => {
                    if !profiles.iter().any(|q| std::ptr::eq(*q, &**p)) {
                        profiles.push(p);
                    }
                }
                Some(_) => unknown_profiles.push((url.to_owned(), "it constrains another type")),
                None => unknown_profiles.push((url.to_owned(), "it is not known to this server")),
            }
        }
        let path = rtype.as_str();
        let Some(root) = resource.as_object() else {
            return Findings {
                structural: true,
                errors: vec![Issue::error(
                    IssueType::Structure,
                    "a resource must be a JSON object",
                )],
                ..Findings::default()
            };
        };
        let mut walker = walk::Walker::new(self, options, root);
        walker.resource(resource, path, &profiles);
        walker.finish(root, path);
        for (url, why) in unknown_profiles {
            walker.warn(
                IssueType::NotSupported,
                &format!("{path}.meta.profile"),
                format!("profile {url} was not applied: {why}"),
            );
        }
        walker.findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(v: Value) -> Findings {
        let validator = Validator::new().unwrap();
        let rtype = ResourceType::parse(v["resourceType"].as_str().unwrap()).unwrap();
        validator.validate(rtype, &v, &Options::default())
    }

    #[test]
    fn a_plain_patient_is_valid() {
        let findings = validate(json!({
            "resourceType": "Patient",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
            "name": [{"family": "Smith", "given": ["Jane"]}],
            "gender": "female",
            "birthDate": "1980-02-29"
        }));
        assert!(findings.is_valid(), "{:?}", findings.errors);
        assert_eq!(
            findings.nhs_number.map(|n| n.to_string()),
            Some("9434765919".into())
        );
    }

    #[test]
    fn structural_and_rule_errors_are_told_apart() {
        let unknown = validate(json!({"resourceType": "Patient", "colour": "blue"}));
        assert_eq!(unknown.status(), 400);
        assert_eq!(
            unknown.errors[0].expression,
            vec!["Patient.colour".to_owned()]
        );
        let gender = validate(json!({"resourceType": "Patient", "gender": "F"}));
        assert_eq!(gender.status(), 422, "{:?}", gender.errors);
        assert_eq!(
            gender.errors[0].expression,
            vec!["Patient.gender".to_owned()]
        );
    }
}
