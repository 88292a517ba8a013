//! The structure walk: one pass over the resource JSON, element by element, driven by the R4
//! snapshots, with the constraints of the applicable profiles (UK Core differentials, extension
//! definitions) layered on as profile contexts.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::narrative;
use super::nhs_number::{is_nhs_number_system, NhsNumber};
use super::{Findings, Options, ReferenceTarget, Validator};
use crate::fhir::definitions::{Binding, Definitions, Element, Kind, Strength, Structure};
use crate::fhir::outcome::{Issue, IssueType, SpineCode};
use crate::fhir::{ResourceId, ResourceType};

/// The value set of every language: BCP-47 tags.
const ALL_LANGUAGES: &str = "http://hl7.org/fhir/ValueSet/all-languages";

/// Nesting deeper than this is refused rather than walked.
const MAX_DEPTH: usize = 64;
/// The R4 limit on any primitive's text (1 MB).
const MAX_STRING_BYTES: usize = 1024 * 1024;

/// A position in a profile: constraints of `structure`'s element `id` apply to the current node.
#[derive(Clone, Copy)]
pub(super) struct ProfileContext<'d> {
    pub structure: &'d Structure,
    pub id: &'d str,
}

pub(super) struct Walker<'a> {
    pub validator: &'a Validator,
    pub defs: &'a Definitions,
    pub options: &'a Options,
    pub findings: Findings,
    /// Ids of the root resource's contained resources, and the `#id` references seen.
    pub contained_ids: HashSet<String>,
    pub referenced_contained: HashSet<String>,
    pub root_type: &'a str,
    /// The resources being walked, outermost first (`%rootResource`, then `%resource`).
    resources: Vec<&'a Value>,
    depth: usize,
}

impl<'a> Walker<'a> {
    pub fn new(
        validator: &'a Validator,
        options: &'a Options,
        root: &'a Map<String, Value>,
    ) -> Self {
        let contained_ids = root
            .get("contained")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect();
        Self {
            validator,
            defs: &validator.defs,
            options,
            findings: Findings::default(),
            contained_ids,
            referenced_contained: HashSet::new(),
            root_type: root
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            resources: Vec::new(),
            depth: 0,
        }
    }

    /// A structural problem: the JSON is not a FHIR resource of this shape (400).
    pub fn structural(&mut self, code: IssueType, path: &str, message: impl Into<String>) {
        self.findings.structural = true;
        self.findings.errors.push(
            Issue::error(code, message)
                .with_details(SpineCode::InvalidResource)
                .at(path),
        );
    }

    /// A rule violation in a well-formed resource (422).
    pub fn rule(&mut self, code: IssueType, path: &str, message: impl Into<String>) {
        self.findings.errors.push(
            Issue::error(code, message)
                .with_details(SpineCode::InvalidResource)
                .at(path),
        );
    }

    pub fn warn(&mut self, code: IssueType, path: &str, message: impl Into<String>) {
        self.findings
            .warnings
            .push(Issue::warning(code, message).at(path));
    }

    /// Validates a resource object (the root, or a contained or nested resource).
    pub fn resource(&mut self, value: &'a Value, path: &str, profiles: &[&'a Structure]) {
        let Some(obj) = value.as_object() else {
            self.structural(
                IssueType::Structure,
                path,
                "a resource must be a JSON object",
            );
            return;
        };
        let Some(rtype) = obj.get("resourceType").and_then(Value::as_str) else {
            self.structural(
                IssueType::Required,
                &format!("{path}.resourceType"),
                "a resource needs its resourceType",
            );
            return;
        };
        let Some(base) = self.defs.base(rtype).filter(|s| s.kind == Kind::Resource) else {
            self.warn(
                IssueType::NotSupported,
                path,
                format!("{rtype} resources are not validated by this server"),
            );
            return;
        };
        let contexts: Vec<ProfileContext<'a>> = profiles
            .iter()
            .map(|p| ProfileContext {
                structure: p,
                id: p.type_name.as_str(),
            })
            .collect();
        self.resources.push(value);
        self.object(obj, base, &base.type_name, path, &contexts, true);
        self.invariants(base, &base.type_name, value, path);
        self.resources.pop();
        if base.type_name != "Resource"
            && base.type_name != "Bundle"
            && base.type_name != "Parameters"
            && base.type_name != "Binary"
        {
            self.domain_resource_rules(obj, path);
        }
    }

    /// dom-2, dom-4, dom-5 on contained resources (dom-3 is checked once the walk has seen every
    /// reference).
    fn domain_resource_rules(&mut self, obj: &Map<String, Value>, path: &str) {
        for (i, contained) in obj
            .get("contained")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{path}.contained[{i}]");
            if contained.get("contained").is_some() {
                self.rule(
                    IssueType::Invariant,
                    &at,
                    "dom-2: a contained resource cannot contain resources",
                );
            }
            let meta = &contained["meta"];
            if meta.get("versionId").is_some() || meta.get("lastUpdated").is_some() {
                self.rule(
                    IssueType::Invariant,
                    &at,
                    "dom-4: a contained resource cannot have meta.versionId or meta.lastUpdated",
                );
            }
            if meta.get("security").is_some() {
                self.rule(
                    IssueType::Invariant,
                    &at,
                    "dom-5: a contained resource cannot have security labels",
                );
            }
        }
        if obj.get("text").and_then(|t| t.get("div")).is_none() {
            // dom-6 is a best-practice rule: a warning.
            self.warn(
                IssueType::Informational,
                path,
                "dom-6: a resource should have narrative for robust management",
            );
        }
    }

    /// Validates the children of an object node whose element is `element_id` in `sd`.
    fn object(
        &mut self,
        obj: &'a Map<String, Value>,
        sd: &'a Structure,
        element_id: &str,
        path: &str,
        contexts: &[ProfileContext<'a>],
        is_resource: bool,
    ) {
        if self.depth >= MAX_DEPTH {
            self.structural(
                IssueType::TooLong,
                path,
                "the resource is nested too deeply",
            );
            return;
        }
        self.depth += 1;
        if obj.is_empty() {
            self.structural(
                IssueType::Structure,
                path,
                "empty objects are not allowed in FHIR JSON",
            );
        }
        // Items per base element name, and per profile slice.
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut slice_counts: HashMap<(usize, String), usize> = HashMap::new();
        let mut sibling = String::new();
        for (key, value) in obj {
            if key == "resourceType" && is_resource {
                continue;
            }
            if key == "fhir_comments" {
                // Left by XML-to-JSON converters (the published UK Core examples carry them); not
                // R4 JSON, but harmless text: kept, and flagged.
                self.warn(
                    IssueType::Informational,
                    &format!("{path}.{key}"),
                    "fhir_comments is not part of FHIR R4 JSON",
                );
                continue;
            }
            if let Some(primitive) = key.strip_prefix('_') {
                self.primitive_extension(
                    sd,
                    element_id,
                    primitive,
                    value,
                    &format!("{path}.{key}"),
                    obj,
                );
                continue;
            }
            let Some(matched) = sd.child_for_key(element_id, key) else {
                self.unknown_element(path, key, sd, element_id);
                continue;
            };
            let element = matched.element;
            // The snapshots type Resource.id as a plain string; the specification says `id`.
            let type_code = if is_resource && key == "id" {
                "id".to_owned()
            } else {
                matched
                    .type_code
                    .map(str::to_owned)
                    .or_else(|| element.types.first().map(|t| t.code.clone()))
                    .unwrap_or_else(|| "BackboneElement".to_owned())
            };
            let key_path = join(path, ".", key);
            let items: Vec<(String, &'a Value)> = match (element.is_array(), value) {
                (true, Value::Array(items)) => {
                    if items.is_empty() {
                        self.structural(
                            IssueType::Structure,
                            &key_path,
                            "empty arrays are not allowed in FHIR JSON",
                        );
                    }
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (indexed(&key_path, i), v))
                        .collect()
                }
                (true, _) => {
                    self.structural(
                        IssueType::Structure,
                        &key_path,
                        format!("{key} must be a JSON array"),
                    );
                    continue;
                }
                (false, Value::Array(_)) => {
                    self.structural(
                        IssueType::Structure,
                        &key_path,
                        format!("{key} must not be an array (it repeats at most once)"),
                    );
                    continue;
                }
                (false, v) => vec![(key_path.clone(), v)],
            };
            let count = counts.entry(element.name.as_str()).or_default();
            if element.choice && *count > 0 {
                self.structural(
                    IssueType::Structure,
                    &key_path,
                    format!("{}[x] can have only one value", element.name),
                );
            }
            *count += items.len();
            sibling.clear();
            sibling.push('_');
            sibling.push_str(key);
            let has_extension_sibling = obj.contains_key(sibling.as_str());
            for (item_path, item) in items {
                if item.is_null() {
                    // Nulls hold places in primitive arrays whose extensions sit in `_key`.
                    if !(has_extension_sibling && element.is_array()) {
                        self.structural(
                            IssueType::Structure,
                            &item_path,
                            "null is not a FHIR value",
                        );
                    }
                    continue;
                }
                let item_contexts = self.item_contexts(
                    contexts,
                    element,
                    &type_code,
                    item,
                    &item_path,
                    &mut slice_counts,
                );
                self.value(item, &type_code, element, sd, &item_path, &item_contexts);
            }
        }
        self.cardinality(sd, element_id, path, &counts);
        self.profile_cardinality(contexts, path, &counts, &slice_counts);
        self.depth -= 1;
    }

    fn unknown_element(&mut self, path: &str, key: &str, sd: &Structure, element_id: &str) {
        let at = format!("{path}.{key}");
        let message = format!(
            "unknown element '{key}' in {}",
            if element_id.contains('.') {
                element_id
            } else {
                sd.type_name.as_str()
            }
        );
        if self.options.lenient {
            self.warn(IssueType::Structure, &at, message);
        } else {
            self.structural(IssueType::Structure, &at, message);
        }
    }

    /// `_name`: the id and extensions of primitive `name`.
    fn primitive_extension(
        &mut self,
        sd: &'a Structure,
        element_id: &str,
        name: &str,
        value: &'a Value,
        path: &str,
        parent: &Map<String, Value>,
    ) {
        let Some(matched) = sd.child_for_key(element_id, name) else {
            self.unknown_element(
                path.rsplit_once('.').map(|(p, _)| p).unwrap_or(path),
                &format!("_{name}"),
                sd,
                element_id,
            );
            return;
        };
        let is_primitive = matched
            .type_code
            .or_else(|| matched.element.types.first().map(|t| t.code.as_str()))
            .is_some_and(|t| {
                self.defs
                    .base(t)
                    .is_some_and(|s| s.kind == Kind::PrimitiveType)
            });
        if !is_primitive {
            self.structural(
                IssueType::Structure,
                path,
                format!("'_{name}' is only allowed for primitive elements"),
            );
            return;
        }
        let element_sd = self.defs.base("Element");
        let items: Vec<(String, &'a Value)> = match value {
            Value::Array(items) if matched.element.is_array() => {
                let values = parent
                    .get(name)
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                if values != 0 && values != items.len() {
                    self.structural(
                        IssueType::Structure,
                        path,
                        format!("'_{name}' must have as many items as '{name}'"),
                    );
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (indexed(path, i), v))
                    .collect()
            }
            Value::Object(_) if !matched.element.is_array() => vec![(path.to_owned(), value)],
            _ => {
                self.structural(
                    IssueType::Structure,
                    path,
                    format!("'_{name}' has the wrong JSON form"),
                );
                return;
            }
        };
        for (item_path, item) in items {
            match (item, element_sd) {
                (Value::Null, _) => {}
                (Value::Object(obj), Some(element_sd)) => {
                    self.object(obj, element_sd, "Element", &item_path, &[], false)
                }
                _ => self.structural(
                    IssueType::Structure,
                    &item_path,
                    "a primitive's extension holder must be an object",
                ),
            }
        }
    }

    /// The profile contexts that apply to one item of `element`: the profile's element, the slices
    /// the item falls in, and the definition of an extension the item is an instance of.
    fn item_contexts(
        &mut self,
        contexts: &[ProfileContext<'a>],
        element: &Element,
        type_code: &str,
        item: &Value,
        path: &str,
        slice_counts: &mut HashMap<(usize, String), usize>,
    ) -> Vec<ProfileContext<'a>> {
        let mut out = Vec::new();
        let suffix = if element.choice { "[x]" } else { "" };
        for ctx in contexts {
            let candidate = format!("{}.{}{suffix}", ctx.id, element.name);
            let profile_element = ctx.structure.element(&candidate);
            match profile_element {
                Some(pe) => out.push(ProfileContext {
                    structure: ctx.structure,
                    id: pe.id.as_str(),
                }),
                // The differential may constrain descendants of an element it does not list
                // itself (`Patient.communication.language`): follow the path all the same.
                None => {
                    if let Some(descendant) = ctx.structure.elements.iter().find(|e| {
                        e.id.len() > candidate.len()
                            && e.id.starts_with(&candidate)
                            && e.id[candidate.len()..].starts_with(['.', ':'])
                    }) {
                        out.push(ProfileContext {
                            structure: ctx.structure,
                            id: &descendant.id[..candidate.len()],
                        });
                    }
                }
            }
            let slicing = profile_element.and_then(|pe| pe.slicing.as_ref());
            let mut in_any_slice = false;
            for slice in ctx.structure.children(ctx.id).filter(|s| {
                s.slice_name.is_some()
                    && s.id.starts_with(&candidate)
                    && s.id[candidate.len()..].starts_with(':')
            }) {
                if self.in_slice(ctx.structure, slice, slicing, item) {
                    in_any_slice = true;
                    *slice_counts
                        .entry((ctx.structure as *const Structure as usize, slice.id.clone()))
                        .or_default() += 1;
                    out.push(ProfileContext {
                        structure: ctx.structure,
                        id: slice.id.as_str(),
                    });
                    for url in slice.types.iter().flat_map(|t| t.profiles.iter()) {
                        if let Some(ext) = self.defs.structure(url) {
                            out.push(ProfileContext {
                                structure: ext,
                                id: ext.type_name.as_str(),
                            });
                        }
                    }
                }
            }
            if !in_any_slice && profile_element.is_some_and(|pe| pe.closed_slicing) {
                self.rule(
                    IssueType::Structure,
                    path,
                    format!(
                        "not allowed here: the profile's slicing of {} is closed",
                        element.name
                    ),
                );
            }
        }
        // Any extension whose definition is known is validated against it, sliced or not.
        if type_code == "Extension" {
            if let Some(ext) = item["url"].as_str().and_then(|u| self.defs.structure(u)) {
                if ext.type_name == "Extension"
                    && !out.iter().any(|c| std::ptr::eq(c.structure, &**ext))
                {
                    out.push(ProfileContext {
                        structure: ext,
                        id: ext.type_name.as_str(),
                    });
                }
            }
        }
        out
    }

    /// Whether an item belongs to a slice: an extension slice matches on `url`; other slices on the
    /// fixed or pattern values at their discriminator paths.
    fn in_slice(
        &self,
        sd: &Structure,
        slice: &Element,
        slicing: Option<&Vec<String>>,
        item: &Value,
    ) -> bool {
        if let Some(url) = slice.types.iter().flat_map(|t| t.profiles.iter()).next() {
            return item["url"].as_str() == Some(url.as_str());
        }
        let default_url = vec!["url".to_owned()];
        let discriminators = match slicing {
            Some(paths) if !paths.is_empty() => paths,
            _ => &default_url,
        };
        discriminators.iter().all(|discriminator| {
            let Some(expected) = sd
                .element(&format!("{}.{discriminator}", slice.id))
                .and_then(|e| e.fixed.as_ref().or(e.pattern.as_ref()))
            else {
                return false;
            };
            values_at(item, discriminator).contains(&expected)
        })
    }

    /// One value of an element, by its type.
    fn value(
        &mut self,
        item: &'a Value,
        type_code: &str,
        element: &'a Element,
        sd: &'a Structure,
        path: &str,
        contexts: &[ProfileContext<'a>],
    ) {
        for ctx in contexts {
            if let Some(pe) = ctx.structure.element(ctx.id) {
                self.profile_element_rules(pe, type_code, item, path);
            }
        }
        if let Some(target) = &element.content_reference {
            match item {
                Value::Object(obj) => {
                    self.object(obj, sd, target, path, contexts, false);
                    self.invariants(sd, target, item, path);
                }
                _ => self.structural(IssueType::Structure, path, "expected a JSON object"),
            }
            return;
        }
        let type_sd = self.defs.base(type_code);
        match type_sd.map(|s| s.kind) {
            Some(Kind::PrimitiveType) => {
                self.primitive(item, type_code, element, path);
                if let Some(binding) = &element.binding {
                    self.binding(binding, type_code, item, path);
                }
            }
            Some(Kind::Resource) => self.resource(item, path, &[]),
            Some(Kind::ComplexType) if type_code != "BackboneElement" && type_code != "Element" => {
                let Some(datatype) = type_sd else { return };
                let Value::Object(obj) = item else {
                    self.structural(
                        IssueType::Structure,
                        path,
                        format!("a {type_code} must be a JSON object"),
                    );
                    return;
                };
                self.object(obj, datatype, type_code, path, contexts, false);
                self.datatype_rules(type_code, obj, element, path);
                self.invariants(datatype, type_code, item, path);
                if let (Some(binding), "Coding" | "CodeableConcept") = (&element.binding, type_code)
                {
                    self.binding(binding, type_code, item, path);
                }
            }
            _ => match item {
                // BackboneElement / Element: children are defined inline.
                Value::Object(obj) => {
                    self.object(obj, sd, &element.id, path, contexts, false);
                    self.invariants(sd, &element.id, item, path);
                }
                _ => self.structural(IssueType::Structure, path, "expected a JSON object"),
            },
        }
    }

    /// The R4 invariants declared on this element, evaluated with FHIRPath. An empty result
    /// passes, as FHIR says; an expression the evaluator cannot evaluate is skipped, not failed.
    fn invariants(&mut self, sd: &Structure, element_id: &str, focus: &'a Value, path: &str) {
        let Some(&resource) = self.resources.last() else {
            return;
        };
        let root = self.resources.first().copied().unwrap_or(resource);
        for invariant in self.validator.invariants_of(&sd.url, element_id) {
            let result = invariant.expression.evaluate_in(
                crate::fhirpath::Item::from_json(focus),
                resource,
                root,
            );
            let verdict = match result.as_deref() {
                Ok([]) => None,
                Ok([item]) => item.as_bool(),
                Ok(_) => None,
                Err(e) => {
                    log::debug!(
                        "invariant {} could not be evaluated: {}",
                        invariant.key,
                        e.message
                    );
                    None
                }
            };
            if verdict == Some(false) {
                self.rule(
                    IssueType::Invariant,
                    path,
                    format!("{}: {}", invariant.key, invariant.human),
                );
            }
        }
    }

    /// Rules of specific datatypes that the snapshots state only as invariants or prose.
    fn datatype_rules(
        &mut self,
        type_code: &str,
        obj: &'a Map<String, Value>,
        element: &Element,
        path: &str,
    ) {
        match type_code {
            "Identifier" => self.identifier(obj, path),
            "Reference" => self.reference(obj, element, path),
            "Extension" => {
                // ext-1
                let has_value = obj.keys().any(|k| k.starts_with("value"));
                if obj.contains_key("extension") == has_value {
                    self.rule(IssueType::Invariant, path, "ext-1: an extension has either a value or nested extensions, not both and not neither");
                }
            }
            "Narrative" => {
                if let Some(div) = obj.get("div").and_then(Value::as_str) {
                    for problem in narrative::check(div) {
                        self.rule(IssueType::Invariant, &format!("{path}.div"), problem);
                    }
                }
            }
            "Period" => {
                // per-1: compared at the precision both share.
                if let (Some(start), Some(end)) = (
                    obj.get("start").and_then(Value::as_str),
                    obj.get("end").and_then(Value::as_str),
                ) {
                    if super::dates::definitely_after(start, end) {
                        self.rule(
                            IssueType::Invariant,
                            path,
                            "per-1: the period's start must not be after its end",
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn identifier(&mut self, obj: &Map<String, Value>, path: &str) {
        let Some(system) = obj.get("system").and_then(Value::as_str) else {
            return;
        };
        if !is_nhs_number_system(system) {
            return;
        }
        let value_path = format!("{path}.value");
        match obj.get("value").and_then(Value::as_str) {
            Some(value) => match NhsNumber::parse(value) {
                Ok(number) => {
                    if self.root_type == "Patient"
                        && path.starts_with("Patient.identifier[")
                        && self.findings.nhs_number.is_none()
                    {
                        self.findings.nhs_number = Some(number);
                    }
                }
                Err(err) => self.findings.errors.push(
                    Issue::error(
                        IssueType::Value,
                        format!("'{value}' is not a valid NHS number: {err}"),
                    )
                    .with_details(SpineCode::InvalidNhsNumber)
                    .at(value_path),
                ),
            },
            None => self.findings.errors.push(
                Issue::error(
                    IssueType::Required,
                    "an NHS number identifier needs its value",
                )
                .with_details(SpineCode::InvalidNhsNumber)
                .at(value_path),
            ),
        }
    }

    fn reference(&mut self, obj: &Map<String, Value>, element: &Element, path: &str) {
        let Some(reference) = obj.get("reference").and_then(Value::as_str) else {
            return;
        };
        let at = format!("{path}.reference");
        if let Some(local) = reference.strip_prefix('#') {
            if !local.is_empty() && !self.contained_ids.contains(local) {
                self.reference_error(&at, format!("'{reference}' names no contained resource"));
            }
            self.referenced_contained.insert(local.to_owned());
            return;
        }
        if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
            if !self.options.in_bundle {
                self.reference_error(
                    &at,
                    format!("'{reference}' can only be resolved inside a transaction Bundle"),
                );
            }
            return;
        }
        if reference.starts_with("http://") || reference.starts_with("https://") {
            return;
        }
        // Relative: Type/id or Type/id/_history/vid.
        let parts: Vec<&str> = reference.split('/').collect();
        let well_formed = match parts.as_slice() {
            [t, id] | [t, id, "_history", _] => {
                t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && t.chars().all(|c| c.is_ascii_alphanumeric())
                    && ResourceId::parse(id).is_some()
            }
            _ => false,
        };
        if !well_formed {
            self.reference_error(&at, format!("'{reference}' is not a valid reference (Type/id, an absolute URL, or #contained)"));
            return;
        }
        let target_type = parts[0];
        let allowed: Vec<&str> = element
            .types
            .iter()
            .flat_map(|t| t.target_profiles.iter())
            .filter_map(|p| p.rsplit('/').next())
            .collect();
        if !allowed.is_empty() && !allowed.contains(&"Resource") && !allowed.contains(&target_type)
        {
            self.reference_error(
                &at,
                format!(
                    "a {target_type} cannot be referenced here (allowed: {})",
                    allowed.join(", ")
                ),
            );
            return;
        }
        if let (Some(rtype), Some(id)) = (
            ResourceType::parse(target_type),
            ResourceId::parse(parts[1]),
        ) {
            self.findings.references.push(ReferenceTarget {
                resource_type: rtype,
                id,
                expression: at,
            });
        }
    }

    fn reference_error(&mut self, path: &str, message: String) {
        self.findings.errors.push(
            Issue::error(IssueType::Invalid, message)
                .with_details(SpineCode::ReferenceNotFound)
                .at(path),
        );
    }

    /// The JSON kind and lexical form of a primitive value.
    fn primitive(&mut self, item: &Value, type_code: &str, element: &Element, path: &str) {
        let ok = match type_code {
            "boolean" => item.is_boolean(),
            "integer" => item.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "positiveInt" => item
                .as_i64()
                .is_some_and(|n| (1..=i64::from(i32::MAX)).contains(&n)),
            "unsignedInt" => item
                .as_i64()
                .is_some_and(|n| (0..=i64::from(i32::MAX)).contains(&n)),
            "decimal" => item.is_number(),
            _ => match item.as_str() {
                None => false,
                Some("") => {
                    self.structural(
                        IssueType::Structure,
                        path,
                        "empty strings are not allowed in FHIR JSON",
                    );
                    return;
                }
                Some(text) => {
                    let max = element.max_length.unwrap_or(MAX_STRING_BYTES);
                    if text.len() > max {
                        self.rule(
                            IssueType::TooLong,
                            path,
                            format!("longer than the maximum of {max} characters"),
                        );
                    }
                    if type_code != "xhtml" && text.contains('<') {
                        if let Some(problem) = narrative::active_content(text) {
                            self.rule(IssueType::Security, path, format!("the text contains active content ({problem}), which is not allowed"));
                        }
                    }
                    if type_code == "xhtml" {
                        true
                    } else {
                        match self.validator.primitive_pattern(type_code) {
                            Some(regex) => regex.is_match(text),
                            None => true,
                        }
                    }
                }
            },
        };
        if !ok {
            let shown = match item {
                Value::String(s) => format!("'{}'", s.chars().take(60).collect::<String>()),
                other => other.to_string().chars().take(60).collect(),
            };
            self.findings.structural = true;
            self.findings.errors.push(
                Issue::error(
                    IssueType::Value,
                    format!("{shown} is not a valid {type_code}"),
                )
                .with_details(SpineCode::InvalidResource)
                .at(path),
            );
        }
    }

    /// Required bindings: the code must come from the value set when the set can be expanded here.
    fn binding(&mut self, binding: &Binding, type_code: &str, item: &Value, path: &str) {
        if binding.strength != Strength::Required {
            return;
        }
        if binding.value_set == ALL_LANGUAGES {
            self.language_codes(type_code, item, path);
            return;
        }
        let Some(value_set) = self.defs.value_set(&binding.value_set) else {
            return;
        };
        let codings: Vec<(Option<&str>, &str)> = match type_code {
            "Coding" => item["code"]
                .as_str()
                .map(|c| vec![(item["system"].as_str(), c)])
                .unwrap_or_default(),
            "CodeableConcept" => item["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["code"].as_str().map(|code| (c["system"].as_str(), code)))
                .collect(),
            _ => item.as_str().map(|c| vec![(None, c)]).unwrap_or_default(),
        };
        if codings.is_empty() {
            if type_code == "CodeableConcept" {
                self.rule(
                    IssueType::CodeInvalid,
                    path,
                    format!("a code from {} is required", binding.value_set),
                );
            }
            return;
        }
        let verdicts: Vec<Option<bool>> = codings
            .iter()
            .map(|(s, c)| value_set.contains(*s, c))
            .collect();
        if verdicts.contains(&Some(true)) || verdicts.contains(&None) {
            return;
        }
        let shown: Vec<String> = codings
            .iter()
            .map(|(s, c)| match s {
                Some(s) => format!("{s}|{c}"),
                None => (*c).to_owned(),
            })
            .collect();
        self.rule(
            IssueType::CodeInvalid,
            path,
            format!(
                "{} is not in the required value set {}",
                shown.join(", "),
                binding.value_set
            ),
        );
    }

    /// `all-languages` is BCP-47 (a grammar, not a list): every code must be a well-formed tag.
    fn language_codes(&mut self, type_code: &str, item: &Value, path: &str) {
        const BCP47: &str = "urn:ietf:bcp:47";
        // Codings of other systems (a SNOMED CT concept beside the tag) are not judged here.
        let codes: Vec<&str> = match type_code {
            "CodeableConcept" => item["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["system"].as_str().is_none_or(|s| s == BCP47))
                .filter_map(|c| c["code"].as_str())
                .collect(),
            "Coding" if item["system"].as_str().is_none_or(|s| s == BCP47) => {
                item["code"].as_str().into_iter().collect()
            }
            "Coding" => Vec::new(),
            _ => item.as_str().into_iter().collect(),
        };
        if type_code == "CodeableConcept"
            && codes.is_empty()
            && item["coding"].as_array().is_some_and(|c| !c.is_empty())
        {
            self.rule(
                IssueType::CodeInvalid,
                path,
                "a language needs a BCP-47 coding (urn:ietf:bcp:47)",
            );
        }
        for code in codes {
            let mut parts = code.split('-');
            let primary = parts.next().unwrap_or_default();
            let well_formed = (2..=3).contains(&primary.len())
                && primary.chars().all(|c| c.is_ascii_alphabetic())
                && parts.all(|p| {
                    (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric())
                });
            if !well_formed {
                self.rule(
                    IssueType::CodeInvalid,
                    path,
                    format!("'{code}' is not a BCP-47 language tag"),
                );
            }
        }
    }

    /// Constraints a profile places on one value: allowed types, required bindings, fixed and
    /// pattern values.
    fn profile_element_rules(&mut self, pe: &Element, type_code: &str, item: &Value, path: &str) {
        if !pe.types.is_empty()
            && pe.id.ends_with("[x]")
            && !pe.types.iter().any(|t| t.code == type_code)
        {
            let allowed: Vec<&str> = pe.types.iter().map(|t| t.code.as_str()).collect();
            self.rule(
                IssueType::Structure,
                path,
                format!(
                    "type {type_code} is not allowed here by the profile (allowed: {})",
                    allowed.join(", ")
                ),
            );
        }
        if let Some(binding) = &pe.binding {
            self.binding(binding, type_code, item, path);
        }
        if type_code == "Reference" {
            let allowed: Vec<&str> = pe
                .types
                .iter()
                .flat_map(|t| t.target_profiles.iter())
                .filter_map(|p| self.defs.structure(p).map(|s| s.type_name.as_str()))
                .collect();
            let target = item["reference"].as_str().and_then(|r| r.split('/').next());
            if let Some(target) = target.filter(|t| !allowed.is_empty() && !allowed.contains(t)) {
                self.reference_error(
                    &format!("{path}.reference"),
                    format!(
                        "the profile allows only {} here, not {target}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        if let Some(fixed) = &pe.fixed {
            if item != fixed {
                self.rule(IssueType::Value, path, format!("must be exactly {fixed}"));
            }
        }
        if let Some(pattern) = &pe.pattern {
            if !contains_pattern(item, pattern) {
                self.rule(
                    IssueType::Value,
                    path,
                    format!("must match the pattern {pattern}"),
                );
            }
        }
    }

    /// min/max of the base definition's children.
    fn cardinality(
        &mut self,
        sd: &Structure,
        element_id: &str,
        path: &str,
        counts: &HashMap<&str, usize>,
    ) {
        for child in sd.children(element_id).filter(|c| c.slice_name.is_none()) {
            let count = counts.get(child.name.as_str()).copied().unwrap_or(0);
            self.check_count(child, count, path);
        }
    }

    /// min/max of each profile's children and slices.
    fn profile_cardinality(
        &mut self,
        contexts: &[ProfileContext<'a>],
        path: &str,
        counts: &HashMap<&str, usize>,
        slice_counts: &HashMap<(usize, String), usize>,
    ) {
        for ctx in contexts {
            for child in ctx.structure.children(ctx.id) {
                let count = if child.slice_name.is_some() {
                    slice_counts
                        .get(&(ctx.structure as *const Structure as usize, child.id.clone()))
                        .copied()
                        .unwrap_or(0)
                } else {
                    counts.get(child.name.as_str()).copied().unwrap_or(0)
                };
                self.check_count(child, count, path);
            }
        }
    }

    fn check_count(&mut self, element: &Element, count: usize, path: &str) {
        // Called for every element of every definition walked, present or not: the texts are
        // made only for a count that breaks a rule.
        let too_few = element.min.is_some_and(|min| count < min as usize);
        let too_many = element.max.as_ref().is_some_and(|max| !max.allows(count));
        if !too_few && !too_many {
            return;
        }
        let label = match &element.slice_name {
            Some(slice) => format!("{} (slice {slice})", element.name),
            None => element.name.clone(),
        };
        let at = format!("{path}.{}", element.name);
        if let Some(min) = element.min {
            if count < min as usize {
                self.rule(
                    IssueType::Required,
                    &at,
                    format!("{label} is required (at least {min})"),
                );
            }
        }
        if let Some(max) = element.max {
            if !max.allows(count) {
                self.rule(
                    IssueType::Structure,
                    &at,
                    format!(
                        "{label} appears {count} times; the maximum is {}",
                        match max {
                            crate::fhir::definitions::Max::Count(n) => n.to_string(),
                            crate::fhir::definitions::Max::Unbounded => "*".into(),
                        }
                    ),
                );
            }
        }
    }

    /// dom-3: every contained resource is referenced from elsewhere in the resource.
    pub fn finish(&mut self, root: &Map<String, Value>, path: &str) {
        for (i, contained) in root
            .get("contained")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let id = contained["id"].as_str().unwrap_or_default();
            if !self.referenced_contained.contains(id) && !self.referenced_contained.contains("") {
                self.rule(
                    IssueType::Invariant,
                    &format!("{path}.contained[{i}]"),
                    "dom-3: a contained resource must be referenced from elsewhere in the resource",
                );
            }
        }
    }
}

/// `{a}{separator}{b}`, without the formatting machinery (paths are made for every element).
fn join(a: &str, separator: &str, b: &str) -> String {
    let mut out = String::with_capacity(a.len() + separator.len() + b.len());
    out.push_str(a);
    out.push_str(separator);
    out.push_str(b);
    out
}

/// `{path}[{i}]`.
fn indexed(path: &str, i: usize) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    out.push_str(path);
    out.push('[');
    out.push_str(&i.to_string());
    out.push(']');
    out
}

/// The values at a dotted path below `item`, through arrays.
fn values_at<'v>(item: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut current = vec![item];
    for segment in path.split('.') {
        current = current
            .into_iter()
            .flat_map(|v| match &v[segment] {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                Value::Null => Vec::new(),
                other => vec![other],
            })
            .collect();
    }
    current
}

/// Whether `value` contains everything in `pattern` (FHIR pattern[x] semantics).
fn contains_pattern(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| contains_pattern(vv, pv))),
        (Value::Array(v), Value::Array(p)) => p
            .iter()
            .all(|pv| v.iter().any(|vv| contains_pattern(vv, pv))),
        (v, p) => v == p,
    }
}
