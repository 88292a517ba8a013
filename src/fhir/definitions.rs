//! The FHIR definitions the server runs on, as data: the R4 StructureDefinitions (snapshots) and
//! value sets in `schema/`, and the UK Core and project profiles, extensions, value sets and code
//! systems in `fhir-profiles/` (differentials). They are compiled into the binary, parsed and
//! indexed once per process, and shared read-only.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

/// The files the definitions are built from, embedded at compile time.
mod embedded {
    pub const TYPES: &str = include_str!("../../schema/profiles-types.json");
    pub const RESOURCES: &str = include_str!("../../schema/profiles-resources.json");
    pub const VALUE_SETS: &str = include_str!("../../schema/valuesets.json");
    pub const OPERATIONS: &str = include_str!("../../schema/operations.json");
    pub const SEARCH_PARAMETERS: &str = include_str!("../../schema/search-parameters.json");
    /// Every conformance resource of `fhir-profiles/`, listed by `build.rs`.
    pub const PROFILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/profiles.rs"));
}

/// Upper bound of an element's cardinality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max {
    Unbounded,
    Count(u32),
}

impl Max {
    fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            Some(Self::Unbounded)
        } else {
            text.parse().ok().map(Self::Count)
        }
    }

    pub fn allows(self, count: usize) -> bool {
        match self {
            Self::Unbounded => true,
            Self::Count(max) => count <= max as usize,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    Required,
    Extensible,
    Preferred,
    Example,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub strength: Strength,
    /// Canonical URL without a `|version` suffix.
    pub value_set: String,
}

#[derive(Debug, Clone)]
pub struct TypeRef {
    /// `string`, `HumanName`, `Reference`, `Resource`, ... (FHIRPath system types are mapped to
    /// their FHIR primitive name).
    pub code: String,
    pub profiles: Vec<String>,
    pub target_profiles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub key: String,
    pub error: bool,
    pub human: String,
    pub expression: Option<String>,
}

/// One element of a StructureDefinition (snapshot or differential).
#[derive(Debug, Clone)]
pub struct Element {
    pub id: String,
    pub path: String,
    /// The last path segment without `[x]`.
    pub name: String,
    pub choice: bool,
    pub slice_name: Option<String>,
    pub min: Option<u32>,
    pub max: Option<Max>,
    /// The cardinality of the base element: whether the JSON form is an array.
    pub base_max: Option<Max>,
    pub types: Vec<TypeRef>,
    pub binding: Option<Binding>,
    /// `fixed[x]` (must equal) or `pattern[x]` (must contain).
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub constraints: Vec<Constraint>,
    /// `#Path` of the element whose definition this one reuses (recursive structures).
    pub content_reference: Option<String>,
    /// Discriminator paths of a `value` slicing on this element.
    pub slicing: Option<Vec<String>>,
    /// The slicing is closed: every item must fall in one of the slices.
    pub closed_slicing: bool,
    pub max_length: Option<usize>,
    /// Part of the `_summary=true` view.
    pub is_summary: bool,
}

impl Element {
    /// Whether the element's JSON form is an array.
    pub fn is_array(&self) -> bool {
        !matches!(self.base_max.or(self.max), Some(Max::Count(0 | 1)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PrimitiveType,
    ComplexType,
    Resource,
    Logical,
}

/// A StructureDefinition with its elements indexed.
#[derive(Debug)]
pub struct Structure {
    pub url: String,
    pub name: String,
    /// The type it defines or constrains (`Patient`, `Extension`, `HumanName`).
    pub type_name: String,
    pub kind: Kind,
    pub base_definition: Option<String>,
    /// Snapshot elements for base definitions; differential elements for profiles.
    pub elements: Vec<Element>,
    pub is_profile: bool,
    by_id: HashMap<String, usize>,
    /// Element id → indexes of its direct children (by id, so slices have their own children).
    children: HashMap<String, Vec<usize>>,
    /// For primitive types: the regex the value must match (anchored when compiled).
    pub primitive_regex: Option<String>,
    /// The resource as published, for serving.
    pub source: Arc<Value>,
}

impl Structure {
    pub fn element(&self, id: &str) -> Option<&Element> {
        self.by_id.get(id).map(|&i| &self.elements[i])
    }

    /// Direct children of the element with this id (including slices of children).
    pub fn children(&self, id: &str) -> impl Iterator<Item = &Element> {
        self.children
            .get(id)
            .into_iter()
            .flatten()
            .map(|&i| &self.elements[i])
    }

    /// The child of `parent_id` that a JSON key names: an exact name, or a choice element whose
    /// name plus a type suffix is the key. Slices are not returned.
    pub fn child_for_key<'s>(&'s self, parent_id: &str, key: &str) -> Option<ChildMatch<'s>> {
        let mut choice = None;
        for child in self.children(parent_id) {
            if child.slice_name.is_some() {
                continue;
            }
            if !child.choice && child.name == key {
                return Some(ChildMatch {
                    element: child,
                    type_code: None,
                });
            }
            if child.choice {
                if let Some(suffix) = key.strip_prefix(child.name.as_str()) {
                    if let Some(t) = child.types.iter().find(|t| type_suffix(&t.code) == suffix) {
                        choice = Some(ChildMatch {
                            element: child,
                            type_code: Some(t.code.as_str()),
                        });
                    }
                }
            }
        }
        choice
    }
}

/// A JSON key matched to its element; `type_code` is set for a choice element.
#[derive(Debug, Clone, Copy)]
pub struct ChildMatch<'s> {
    pub element: &'s Element,
    pub type_code: Option<&'s str>,
}

/// The JSON key suffix of a choice type: `dateTime` → `DateTime`, `Period` → `Period`.
pub fn type_suffix(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// A value set reduced to what validation needs.
#[derive(Debug, Default)]
pub struct ValueSetCodes {
    /// (system, code) pairs; `None` when the value set cannot be expanded from the shipped data
    /// (e.g. it draws on SNOMED CT), in which case membership is not checked.
    pub codes: Option<HashSet<(String, String)>>,
}

impl ValueSetCodes {
    /// `Some(true/false)` when membership is known; `None` when it cannot be checked.
    pub fn contains(&self, system: Option<&str>, code: &str) -> Option<bool> {
        let codes = self.codes.as_ref()?;
        Some(match system {
            Some(system) => codes.contains(&(system.to_owned(), code.to_owned())),
            None => codes.iter().any(|(_, c)| c == code),
        })
    }
}

/// Every definition, indexed.
#[derive(Debug)]
pub struct Definitions {
    structures: HashMap<String, Arc<Structure>>,
    /// Type name → URL of its base (core) StructureDefinition.
    base_by_type: HashMap<String, String>,
    value_sets: HashMap<String, ValueSetCodes>,
    /// Conformance resources as published (StructureDefinition, ValueSet, CodeSystem, ...).
    conformance: Vec<Arc<Value>>,
}

#[derive(Debug, thiserror::Error)]
#[error("definition data is invalid: {0}")]
pub struct DefinitionError(pub String);

impl Definitions {
    /// The definitions compiled into this binary, parsed once per process.
    pub fn shared() -> Result<Arc<Definitions>, DefinitionError> {
        static SHARED: OnceLock<Result<Arc<Definitions>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::load().map(Arc::new).map_err(|e| e.0))
            .clone()
            .map_err(DefinitionError)
    }

    fn load() -> Result<Self, DefinitionError> {
        let mut defs = Definitions {
            structures: HashMap::new(),
            base_by_type: HashMap::new(),
            value_sets: HashMap::new(),
            conformance: Vec::new(),
        };
        let mut code_systems: HashMap<String, Arc<Value>> = HashMap::new();
        let mut value_sets: HashMap<String, Arc<Value>> = HashMap::new();
        let mut add = |resource: Value, defs: &mut Definitions| -> Result<(), DefinitionError> {
            let resource = Arc::new(resource);
            let url = resource["url"].as_str().unwrap_or_default().to_owned();
            match resource["resourceType"].as_str() {
                Some("StructureDefinition") => {
                    let structure = Structure::from_json(Arc::clone(&resource))?;
                    if !structure.is_profile {
                        defs.base_by_type
                            .insert(structure.type_name.clone(), structure.url.clone());
                    }
                    defs.structures.insert(url, Arc::new(structure));
                }
                Some("CodeSystem") => {
                    code_systems.insert(url, Arc::clone(&resource));
                }
                Some("ValueSet") => {
                    value_sets.insert(url, Arc::clone(&resource));
                }
                _ => {}
            }
            defs.conformance.push(resource);
            Ok(())
        };
        for bundle in [
            embedded::TYPES,
            embedded::RESOURCES,
            embedded::VALUE_SETS,
            embedded::OPERATIONS,
            embedded::SEARCH_PARAMETERS,
        ] {
            let bundle: Value = serde_json::from_str(bundle)
                .map_err(|e| DefinitionError(format!("schema bundle: {e}")))?;
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                add(entry["resource"].clone(), &mut defs)?;
            }
        }
        for (name, text) in embedded::PROFILES {
            let resource: Value =
                serde_json::from_str(text).map_err(|e| DefinitionError(format!("{name}: {e}")))?;
            add(resource, &mut defs)?;
        }
        for (url, vs) in &value_sets {
            let codes = expand(vs, &value_sets, &code_systems, 0);
            defs.value_sets.insert(url.clone(), ValueSetCodes { codes });
        }
        Ok(defs)
    }

    pub fn structure(&self, url: &str) -> Option<&Arc<Structure>> {
        self.structures.get(strip_version(url))
    }

    /// The core StructureDefinition of a type (`Patient`, `HumanName`, `string`).
    pub fn base(&self, type_name: &str) -> Option<&Arc<Structure>> {
        self.base_by_type
            .get(type_name)
            .and_then(|url| self.structures.get(url))
    }

    pub fn value_set(&self, url: &str) -> Option<&ValueSetCodes> {
        self.value_sets.get(strip_version(url))
    }

    /// Conformance resources of one type (`StructureDefinition`, `ValueSet`, ...).
    pub fn conformance(&self, resource_type: &str) -> impl Iterator<Item = &Arc<Value>> {
        let resource_type = resource_type.to_owned();
        self.conformance
            .iter()
            .filter(move |r| r["resourceType"] == resource_type.as_str())
    }

    pub fn structures(&self) -> impl Iterator<Item = &Arc<Structure>> {
        self.structures.values()
    }
}

fn strip_version(url: &str) -> &str {
    url.split('|').next().unwrap_or(url)
}

const REGEX_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/regex";
const FHIR_TYPE_EXTENSION: &str =
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";

impl Structure {
    fn from_json(source: Arc<Value>) -> Result<Self, DefinitionError> {
        let r = &*source;
        let url = text(r, "url")
            .ok_or_else(|| DefinitionError("StructureDefinition without url".into()))?;
        let kind = match r["kind"].as_str() {
            Some("primitive-type") => Kind::PrimitiveType,
            Some("complex-type") => Kind::ComplexType,
            Some("resource") => Kind::Resource,
            _ => Kind::Logical,
        };
        let is_profile = r["derivation"] == "constraint";
        let list = if r["snapshot"]["element"].is_array() {
            &r["snapshot"]["element"]
        } else {
            &r["differential"]["element"]
        };
        let elements: Vec<Element> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(parse_element)
            .collect();
        let mut by_id = HashMap::with_capacity(elements.len());
        let mut children: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, element) in elements.iter().enumerate() {
            by_id.insert(element.id.clone(), index);
            if let Some(parent) = parent_id(&element.id) {
                children.entry(parent.to_owned()).or_default().push(index);
            }
        }
        // A primitive's lexical rule sits on its `value` element's type, as an extension.
        let primitive_regex = if kind == Kind::PrimitiveType {
            list.as_array()
                .into_iter()
                .flatten()
                .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(".value")))
                .and_then(|e| e["type"][0]["extension"].as_array())
                .and_then(|x| x.iter().find(|x| x["url"] == REGEX_EXTENSION))
                .and_then(|x| x["valueString"].as_str())
                .map(str::to_owned)
        } else {
            None
        };
        Ok(Self {
            name: text(r, "name").unwrap_or_default(),
            type_name: text(r, "type").unwrap_or_default(),
            base_definition: text(r, "baseDefinition"),
            url,
            kind,
            elements,
            is_profile,
            by_id,
            children,
            primitive_regex,
            source,
        })
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v[key].as_str().map(str::to_owned)
}

/// `Patient.identifier:nhsNumber.system` → `Patient.identifier:nhsNumber`;
/// `Patient.extension:a` → `Patient`.
fn parent_id(id: &str) -> Option<&str> {
    // The last '.' that is not inside a slice name (slice names contain no '.').
    id.rfind('.').map(|i| &id[..i])
}

fn parse_element(e: &Map<String, Value>) -> Element {
    let path = e
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let id = e
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| path.clone());
    let last = path.rsplit('.').next().unwrap_or_default();
    let choice = last.ends_with("[x]");
    let name = last.trim_end_matches("[x]").to_owned();
    let types = e
        .get("type")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let raw = t["code"].as_str().unwrap_or_default();
            // Primitive `value` elements carry FHIRPath system types; their FHIR type is in an
            // extension.
            let code = if raw.starts_with("http://hl7.org/fhirpath/System.") {
                t["extension"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["url"] == FHIR_TYPE_EXTENSION)
                    .and_then(|x| x["valueUrl"].as_str())
                    .unwrap_or("string")
                    .to_owned()
            } else {
                raw.to_owned()
            };
            TypeRef {
                code,
                profiles: strings(&t["profile"]),
                target_profiles: strings(&t["targetProfile"]),
            }
        })
        .collect();
    let binding = e.get("binding").and_then(|b| {
        let strength = match b["strength"].as_str()? {
            "required" => Strength::Required,
            "extensible" => Strength::Extensible,
            "preferred" => Strength::Preferred,
            _ => Strength::Example,
        };
        Some(Binding {
            strength,
            value_set: strip_version(b["valueSet"].as_str()?).to_owned(),
        })
    });
    let prefixed = |prefix: &str| {
        e.iter()
            .find(|(k, _)| k.starts_with(prefix) && k.len() > prefix.len())
            .map(|(_, v)| v.clone())
    };
    let constraints = e
        .get("constraint")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| Constraint {
            key: c["key"].as_str().unwrap_or_default().to_owned(),
            error: c["severity"] == "error",
            human: c["human"].as_str().unwrap_or_default().to_owned(),
            expression: c["expression"].as_str().map(str::to_owned),
        })
        .collect();
    let slicing = e.get("slicing").map(|s| {
        s["discriminator"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["type"] == "value" || d["type"] == "pattern")
            .filter_map(|d| d["path"].as_str().map(str::to_owned))
            .collect()
    });
    Element {
        id,
        name,
        choice,
        slice_name: e
            .get("sliceName")
            .and_then(Value::as_str)
            .map(str::to_owned),
        min: e
            .get("min")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        max: e.get("max").and_then(Value::as_str).and_then(Max::parse),
        base_max: e
            .get("base")
            .and_then(|b| b["max"].as_str())
            .and_then(Max::parse),
        types,
        binding,
        fixed: prefixed("fixed"),
        pattern: prefixed("pattern"),
        constraints,
        content_reference: e
            .get("contentReference")
            .and_then(Value::as_str)
            .map(|r| r.trim_start_matches('#').to_owned()),
        closed_slicing: e.get("slicing").is_some_and(|s| s["rules"] == "closed"),
        slicing,
        max_length: e
            .get("maxLength")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        is_summary: e.get("isSummary").and_then(Value::as_bool).unwrap_or(false),
        path,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| strip_version(s).to_owned())
        .collect()
}

/// Expands a value set from its `compose` over the shipped code systems; `None` when any part
/// cannot be expanded here.
fn expand(
    vs: &Value,
    value_sets: &HashMap<String, Arc<Value>>,
    code_systems: &HashMap<String, Arc<Value>>,
    depth: usize,
) -> Option<HashSet<(String, String)>> {
    if depth > 8 {
        return None;
    }
    let mut codes = HashSet::new();
    let compose = vs.get("compose")?;
    for include in compose["include"].as_array()? {
        codes.extend(expand_part(include, value_sets, code_systems, depth)?);
    }
    for exclude in compose["exclude"].as_array().into_iter().flatten() {
        for code in expand_part(exclude, value_sets, code_systems, depth)? {
            codes.remove(&code);
        }
    }
    Some(codes)
}

fn expand_part(
    part: &Value,
    value_sets: &HashMap<String, Arc<Value>>,
    code_systems: &HashMap<String, Arc<Value>>,
    depth: usize,
) -> Option<HashSet<(String, String)>> {
    let mut codes: Option<HashSet<(String, String)>> = None;
    if let Some(system) = part["system"].as_str() {
        let listed = part["concept"].as_array();
        let filters = part["filter"].as_array();
        let from_system: HashSet<(String, String)> = match (listed, filters) {
            (Some(concepts), _) => concepts
                .iter()
                .filter_map(|c| c["code"].as_str())
                .map(|c| (system.to_owned(), c.to_owned()))
                .collect(),
            (None, Some(filters)) => {
                let cs = code_systems.get(system)?;
                let mut all = HashSet::new();
                for filter in filters {
                    // Only hierarchy filters can be evaluated from the shipped data.
                    if filter["property"] != "concept"
                        || !matches!(filter["op"].as_str(), Some("is-a" | "descendent-of"))
                    {
                        return None;
                    }
                    let root = filter["value"].as_str()?;
                    let include_root = filter["op"] == "is-a";
                    collect_descendants(
                        &cs["concept"],
                        system,
                        root,
                        include_root,
                        false,
                        &mut all,
                    );
                }
                all
            }
            (None, None) => {
                let cs = code_systems.get(system)?;
                if cs["content"] != "complete" && cs["content"].is_string() {
                    return None;
                }
                let mut all = HashSet::new();
                collect_all(&cs["concept"], system, &mut all);
                all
            }
        };
        codes = Some(from_system);
    }
    for imported in part["valueSet"].as_array().into_iter().flatten() {
        let url = strip_version(imported.as_str()?);
        let other = expand(value_sets.get(url)?, value_sets, code_systems, depth + 1)?;
        codes = Some(match codes {
            // `system` plus `valueSet` in one include is their intersection.
            Some(current) => current.intersection(&other).cloned().collect(),
            None => other,
        });
    }
    codes
}

fn collect_all(concepts: &Value, system: &str, out: &mut HashSet<(String, String)>) {
    for concept in concepts.as_array().into_iter().flatten() {
        if let Some(code) = concept["code"].as_str() {
            out.insert((system.to_owned(), code.to_owned()));
        }
        collect_all(&concept["concept"], system, out);
    }
}

fn collect_descendants(
    concepts: &Value,
    system: &str,
    root: &str,
    include_root: bool,
    inside: bool,
    out: &mut HashSet<(String, String)>,
) {
    for concept in concepts.as_array().into_iter().flatten() {
        let code = concept["code"].as_str().unwrap_or_default();
        let is_root = code == root;
        if (inside || (is_root && include_root)) && !code.is_empty() {
            out.insert((system.to_owned(), code.to_owned()));
        }
        collect_descendants(
            &concept["concept"],
            system,
            root,
            include_root,
            inside || is_root,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_load_and_index() {
        let defs = Definitions::shared().unwrap();
        let patient = defs.base("Patient").unwrap();
        assert_eq!(patient.kind, Kind::Resource);
        let gender = patient.element("Patient.gender").unwrap();
        assert_eq!(
            gender.binding.as_ref().unwrap().strength,
            Strength::Required
        );
        let deceased = patient
            .child_for_key("Patient", "deceasedDateTime")
            .unwrap();
        assert_eq!(deceased.type_code, Some("dateTime"));
        assert!(patient.child_for_key("Patient", "deceasedString").is_none());
        assert!(patient.element("Patient.name").unwrap().is_array());
        assert!(!patient.element("Patient.gender").unwrap().is_array());
        let date = defs.base("date").unwrap();
        assert!(date
            .primitive_regex
            .as_deref()
            .unwrap()
            .starts_with("([0-9]"));
        let uk = defs
            .structure("https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient")
            .unwrap();
        assert!(uk.is_profile);
        assert_eq!(
            uk.element("Patient.identifier:nhsNumber.system")
                .unwrap()
                .fixed,
            Some(Value::String("https://fhir.nhs.uk/Id/nhs-number".into()))
        );
        let genders = defs
            .value_set("http://hl7.org/fhir/ValueSet/administrative-gender")
            .unwrap();
        assert_eq!(
            genders.contains(Some("http://hl7.org/fhir/administrative-gender"), "female"),
            Some(true)
        );
        assert_eq!(genders.contains(None, "f"), Some(false));
        let nhs = defs
            .value_set("https://fhir.hl7.org.uk/ValueSet/UKCore-NHSNumberVerificationStatus")
            .unwrap();
        assert!(nhs.codes.as_ref().is_some_and(|c| c.len() >= 8), "{nhs:?}");
    }
}
