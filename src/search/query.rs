//! Parsing a search request (`?name=value&...`) into a checked [`SearchRequest`]: every
//! parameter known for the type, every modifier and prefix valid for the parameter's type, every
//! value well formed — or an error naming the parameter.

use super::registry::{ParamType, Registry, NATIVE};
use super::values::{date_range, fold, number_range};
use crate::fhir::ResourceType;
use crate::validation::nhs_number::{is_nhs_number_system, NhsNumber};

/// Results per page unless `_count` says otherwise, and the most `_count` may ask for.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;
/// Chains may go this deep (`subject:Patient.organization.name` is two).
pub const MAX_CHAIN_DEPTH: usize = 3;
/// At most this many values may be OR-ed or AND-ed in one request.
pub const MAX_VALUES: usize = 100;

/// A search problem, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub param: String,
    pub message: String,
    /// The parameter is unknown (ignorable under lenient handling) rather than malformed.
    pub unknown: bool,
}

impl ParamError {
    fn new(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: param.to_owned(),
            message: message.into(),
            unknown: false,
        }
    }

    fn unknown(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: param.to_owned(),
            message: message.into(),
            unknown: true,
        }
    }
}

/// Comparison prefixes of ordered values (<https://hl7.org/fhir/R4/search.html#prefix>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    fn split(value: &str) -> (Self, &str) {
        let prefixes = [
            ("eq", Self::Eq),
            ("ne", Self::Ne),
            ("gt", Self::Gt),
            ("lt", Self::Lt),
            ("ge", Self::Ge),
            ("le", Self::Le),
            ("sa", Self::Sa),
            ("eb", Self::Eb),
            ("ap", Self::Ap),
        ];
        for (text, prefix) in prefixes {
            if let Some(rest) = value.strip_prefix(text) {
                return (prefix, rest);
            }
        }
        (Self::Eq, value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    StartsWith,
    Exact,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenMatch {
    /// `[system]|[code]`; `system: None` matches any system, `Some("")` no system.
    Code {
        system: Option<String>,
        code: String,
    },
    /// `[system]|`: any code in the system.
    System(String),
    /// `:text`: starts-with on the display or text.
    Text(String),
    /// `:of-type`: `[type system]|[type code]|[value]` of an Identifier.
    OfType {
        system: String,
        code: String,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceMatch {
    Local {
        target_type: Option<String>,
        id: String,
    },
    Url(String),
    Identifier {
        system: Option<String>,
        value: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMode {
    Equals,
    Below,
    Above,
}

/// One value of a parameter (values of one parameter are OR-ed).
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    String {
        mode: StringMode,
        value: String,
    },
    Token(TokenMatch),
    /// An instant range (ms, inclusive) compared by `prefix`.
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    Reference(ReferenceMatch),
    Quantity {
        prefix: Prefix,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Uri {
        mode: UriMode,
        value: String,
    },
}

/// One AND-ed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `_id`: any of the ids.
    Id(Vec<String>),
    /// `_lastUpdated`: any of the ranges.
    LastUpdated(Vec<Predicate>),
    /// An indexed parameter matching any of the predicates (`negate` for `:not`).
    Param {
        param: String,
        kind: ParamType,
        negate: bool,
        any_of: Vec<Predicate>,
    },
    /// `:missing`.
    Missing {
        param: String,
        kind: ParamType,
        missing: bool,
    },
    /// `ref:Type.inner`: the reference points at a `target` resource meeting `inner`.
    Chain {
        param: String,
        target: ResourceType,
        inner: Box<Clause>,
    },
    /// `_has:Source:ref:inner`: some `source` resource referring to this one by `ref` meets `inner`.
    Has {
        source: ResourceType,
        param: String,
        inner: Box<Clause>,
    },
    /// Compartment search: the resource names the patient through any of `params`.
    InCompartment {
        params: Vec<String>,
        patient: String,
    },
    /// Access control: leave out restricted Patients and what names them through `params`.
    ExcludeRestricted { params: Vec<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// A parameter code, `_id` or `_lastUpdated`.
    pub param: String,
    pub kind: ParamType,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source: ResourceType,
    /// `None` for `*`: every reference parameter of the source type.
    pub param: Option<String>,
    pub target: Option<ResourceType>,
    pub iterate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Summary {
    #[default]
    False,
    True,
    Count,
    Data,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    /// No `_total`: given when it costs nothing (the whole result fits the first page).
    #[default]
    Default,
    None,
    Estimate,
    Accurate,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchRequest {
    pub types: Vec<ResourceType>,
    pub clauses: Vec<Clause>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub sort: Vec<SortKey>,
    pub count: usize,
    pub summary: Summary,
    pub elements: Option<Vec<String>>,
    pub total: Total,
    /// An opaque paging cursor from a previous page's link.
    pub cursor: Option<String>,
    /// The parameters used, as given, for the links (paging parameters and parameters ignored
    /// under lenient handling excluded).
    pub echo: Vec<(String, String)>,
    /// Parameters ignored under lenient handling.
    pub ignored: Vec<ParamError>,
}

/// Parses a search over `types` (one type for a type-level search; several for `_type`).
pub fn parse(
    registry: &Registry,
    types: &[ResourceType],
    params: &[(String, String)],
    lenient: bool,
) -> Result<SearchRequest, ParamError> {
    let mut request = SearchRequest {
        types: types.to_vec(),
        count: DEFAULT_COUNT,
        ..SearchRequest::default()
    };
    let values_total: usize = params.iter().map(|(_, v)| v.split(',').count()).sum();
    if values_total > MAX_VALUES {
        return Err(ParamError::new(
            "query",
            format!("at most {MAX_VALUES} values may be searched at once"),
        ));
    }
    for (name, value) in params {
        // Errors name the parameter as the client wrote it (`subject:Patient.colour`, not
        // `colour`).
        let result =
            parse_one(registry, types, name, value, &mut request).map_err(|e| ParamError {
                param: name.clone(),
                ..e
            });
        match result {
            Ok(()) => {
                if name != "_cursor" && name != "_format" && name != "_pretty" {
                    request.echo.push((name.clone(), value.clone()));
                }
            }
            // Left out of the links too: they show the parameters actually used.
            Err(e) if e.unknown && lenient => request.ignored.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok(request)
}

fn parse_one(
    registry: &Registry,
    types: &[ResourceType],
    name: &str,
    value: &str,
    request: &mut SearchRequest,
) -> Result<(), ParamError> {
    if value.is_empty() && name != "_cursor" {
        return Err(ParamError::new(name, "has no value"));
    }
    match name {
        "_count" => {
            request.count = value
                .parse()
                .ok()
                .filter(|n| (0..=MAX_COUNT).contains(n))
                .ok_or_else(|| {
                    ParamError::new(
                        name,
                        format!("must be a whole number from 0 to {MAX_COUNT}"),
                    )
                })?;
            return Ok(());
        }
        "_cursor" => {
            request.cursor = Some(value.to_owned());
            return Ok(());
        }
        "_format" | "_pretty" => return Ok(()),
        "_summary" => {
            request.summary = match value {
                "true" => Summary::True,
                "false" => Summary::False,
                "count" => Summary::Count,
                "data" => Summary::Data,
                "text" => Summary::Text,
                _ => {
                    return Err(ParamError::new(
                        name,
                        "must be true, false, count, data or text",
                    ))
                }
            };
            return Ok(());
        }
        "_total" => {
            request.total = match value {
                "none" => Total::None,
                "estimate" => Total::Estimate,
                "accurate" => Total::Accurate,
                _ => return Err(ParamError::new(name, "must be none, estimate or accurate")),
            };
            return Ok(());
        }
        "_elements" => {
            let elements: Vec<String> = value
                .split(',')
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
            if elements
                .iter()
                .any(|e| !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err(ParamError::new(name, "must list element names"));
            }
            request.elements = Some(elements);
            return Ok(());
        }
        "_sort" => {
            for key in value.split(',') {
                let (descending, code) = match key.strip_prefix('-') {
                    Some(code) => (true, code),
                    None => (false, key),
                };
                let kind = sort_kind(registry, types, code)
                    .ok_or_else(|| ParamError::new(name, format!("cannot sort by '{code}': not a search parameter of every searched type")))?;
                request.sort.push(SortKey {
                    param: code.to_owned(),
                    kind,
                    descending,
                });
            }
            return Ok(());
        }
        _ => {}
    }
    if let Some(modifier) = name
        .strip_prefix("_include")
        .or_else(|| name.strip_prefix("_revinclude"))
    {
        let reverse = name.starts_with("_revinclude");
        let iterate = match modifier {
            "" => false,
            ":iterate" | ":recurse" => true,
            _ => return Err(ParamError::new(name, "the only modifier is :iterate")),
        };
        let include = parse_include(registry, name, value, iterate)?;
        if reverse {
            request.revincludes.push(include);
        } else {
            request.includes.push(include);
        }
        return Ok(());
    }
    let [rtype] = types else {
        // Several types: only the parameters common to all resources.
        if name == "_id"
            || name == "_lastUpdated"
            || ["_tag", "_profile", "_security", "_source"]
                .contains(&name.split(':').next().unwrap_or(name))
        {
            let clause = parse_clause(registry, ResourceType::Patient, name, value, 0)?;
            request.clauses.push(clause);
            return Ok(());
        }
        return Err(ParamError::unknown(
            name,
            "only parameters common to every resource type can be used with _type",
        ));
    };
    let clause = parse_clause(registry, *rtype, name, value, 0)?;
    request.clauses.push(clause);
    Ok(())
}

fn sort_kind(registry: &Registry, types: &[ResourceType], code: &str) -> Option<ParamType> {
    match code {
        "_id" => Some(ParamType::Token),
        "_lastUpdated" => Some(ParamType::Date),
        _ => {
            let mut kinds = types.iter().map(|t| registry.get(*t, code).map(|p| p.kind));
            let first = kinds.next()??;
            kinds.all(|k| k == Some(first)).then_some(first)
        }
    }
}

fn parse_include(
    registry: &Registry,
    name: &str,
    value: &str,
    iterate: bool,
) -> Result<Include, ParamError> {
    let parts: Vec<&str> = value.split(':').collect();
    let source = parts
        .first()
        .and_then(|t| ResourceType::parse(t))
        .ok_or_else(|| {
            ParamError::new(
                name,
                format!("'{value}' does not start with a supported resource type"),
            )
        })?;
    let param = match parts.get(1) {
        None | Some(&"*") => None,
        Some(code) => {
            let param = registry
                .get(source, code)
                .filter(|p| p.kind == ParamType::Reference)
                .ok_or_else(|| {
                    ParamError::new(
                        name,
                        format!("{code} is not a reference parameter of {source}"),
                    )
                })?;
            Some(param.code.clone())
        }
    };
    let target = match parts.get(2) {
        None => None,
        Some(t) => Some(ResourceType::parse(t).ok_or_else(|| {
            ParamError::new(name, format!("{t} is not a supported resource type"))
        })?),
    };
    if parts.len() > 3 {
        return Err(ParamError::new(name, "expected Type:param[:Target]"));
    }
    Ok(Include {
        source,
        param,
        target,
        iterate,
    })
}

/// One search parameter (possibly chained or reverse-chained) on `rtype`.
fn parse_clause(
    registry: &Registry,
    rtype: ResourceType,
    name: &str,
    value: &str,
    depth: usize,
) -> Result<Clause, ParamError> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(ParamError::new(
            name,
            format!("chains may be at most {MAX_CHAIN_DEPTH} deep"),
        ));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        // _has:Source:reference:parameter
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(reference), Some(inner)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(ParamError::new(
                name,
                "expected _has:Type:reference:parameter",
            ));
        };
        let source = ResourceType::parse(source).ok_or_else(|| {
            ParamError::new(name, format!("{source} is not a supported resource type"))
        })?;
        let param = registry
            .get(source, reference)
            .filter(|p| p.kind == ParamType::Reference)
            .ok_or_else(|| {
                ParamError::new(
                    name,
                    format!("{reference} is not a reference parameter of {source}"),
                )
            })?;
        let inner = parse_clause(registry, source, inner, value, depth + 1)?;
        return Ok(Clause::Has {
            source,
            param: param.code.clone(),
            inner: Box::new(inner),
        });
    }
    // Chains: ref.inner or ref:Type.inner
    if let Some((head, inner_name)) = name.split_once('.') {
        let (code, type_modifier) = match head.split_once(':') {
            Some((code, t)) => (code, Some(t)),
            None => (head, None),
        };
        let param = registry
            .get(rtype, code)
            .filter(|p| p.kind == ParamType::Reference)
            .ok_or_else(|| {
                ParamError::unknown(
                    name,
                    format!(
                        "{code} is not a reference parameter of {rtype}, so it cannot be chained"
                    ),
                )
            })?;
        let target = match type_modifier {
            Some(t) => ResourceType::parse(t).ok_or_else(|| {
                ParamError::new(name, format!("{t} is not a supported resource type"))
            })?,
            None => {
                let stored: Vec<ResourceType> = param
                    .targets
                    .iter()
                    .filter_map(|t| ResourceType::parse(t))
                    .collect();
                match stored.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(ParamError::new(
                            name,
                            format!("{code} can point at several types; name one, e.g. {code}:{}.{inner_name}", stored.first().map_or("Patient", |t| t.as_str())),
                        ))
                    }
                }
            }
        };
        let inner = parse_clause(registry, target, inner_name, value, depth + 1)?;
        return Ok(Clause::Chain {
            param: param.code.clone(),
            target,
            inner: Box::new(inner),
        });
    }
    let (code, modifier) = match name.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (name, None),
    };
    let param = registry.get(rtype, code).ok_or_else(|| {
        ParamError::unknown(
            name,
            format!("unknown search parameter '{code}' for {rtype}"),
        )
    })?;
    let values = split_values(value);
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(ParamError::new(name, ":missing takes true or false")),
        };
        if NATIVE.contains(&code) {
            // Every resource has an id and a lastUpdated.
            return Ok(if missing {
                Clause::Id(Vec::new())
            } else {
                Clause::LastUpdated(Vec::new())
            });
        }
        return Ok(Clause::Missing {
            param: param.code.clone(),
            kind: param.kind,
            missing,
        });
    }
    match code {
        "_id" => {
            if modifier.is_some() {
                return Err(ParamError::new(name, "_id takes no modifier here"));
            }
            return Ok(Clause::Id(values));
        }
        "_lastUpdated" => {
            if modifier.is_some() {
                return Err(ParamError::new(name, "_lastUpdated takes no modifier here"));
            }
            let any_of = values
                .iter()
                .map(|v| date_predicate(name, v))
                .collect::<Result<_, _>>()?;
            return Ok(Clause::LastUpdated(any_of));
        }
        _ => {}
    }
    let mut negate = false;
    let any_of: Vec<Predicate> = match param.kind {
        ParamType::String => {
            let mode = match modifier {
                None => StringMode::StartsWith,
                Some("exact") => StringMode::Exact,
                Some("contains") => StringMode::Contains,
                Some(m) => return Err(ParamError::new(name, format!("unknown modifier :{m} for a string parameter (use :exact, :contains or :missing)"))),
            };
            values
                .iter()
                .map(|v| Predicate::String {
                    mode,
                    value: if mode == StringMode::Exact {
                        v.clone()
                    } else {
                        fold(v)
                    },
                })
                .collect()
        }
        ParamType::Token => {
            let text = match modifier {
                None => false,
                Some("not") => {
                    negate = true;
                    false
                }
                Some("text") => true,
                Some("of-type") => {
                    return Ok(Clause::Param {
                        param: param.code.clone(),
                        kind: param.kind,
                        negate: false,
                        any_of: values.iter().map(|v| of_type(name, v)).collect::<Result<_, _>>()?,
                    })
                }
                Some(m) => return Err(ParamError::new(name, format!("unknown modifier :{m} for a token parameter (use :not, :text, :of-type or :missing)"))),
            };
            values
                .iter()
                .map(|v| {
                    if text {
                        Predicate::Token(TokenMatch::Text(fold(v)))
                    } else {
                        Predicate::Token(token(v))
                    }
                })
                .collect()
        }
        ParamType::Date => {
            if let Some(m) = modifier {
                return Err(ParamError::new(
                    name,
                    format!("unknown modifier :{m} for a date parameter (use :missing)"),
                ));
            }
            values
                .iter()
                .map(|v| date_predicate(name, v))
                .collect::<Result<_, _>>()?
        }
        ParamType::Reference => {
            let type_filter = match modifier {
                None => None,
                Some("identifier") => {
                    return Ok(Clause::Param {
                        param: param.code.clone(),
                        kind: param.kind,
                        negate: false,
                        any_of: values
                            .iter()
                            .map(|v| {
                                let (system, value) = match split_pipe(v) {
                                    (Some(s), value) => {
                                        let (s, value) = as_stored(s, value);
                                        (Some(s), value)
                                    }
                                    (None, value) => (None, value),
                                };
                                Predicate::Reference(ReferenceMatch::Identifier { system, value })
                            })
                            .collect(),
                    })
                }
                Some(t) => Some(
                    ResourceType::parse(t)
                        .map(|t| t.as_str().to_owned())
                        .ok_or_else(|| ParamError::new(name, format!("unknown modifier :{t} for a reference parameter (use a resource type, :identifier or :missing)")))?,
                ),
            };
            values
                .iter()
                .map(|v| reference(name, v, type_filter.as_deref()))
                .collect::<Result<_, _>>()?
        }
        ParamType::Quantity | ParamType::Number => {
            if let Some(m) = modifier {
                return Err(ParamError::new(
                    name,
                    format!(
                        "unknown modifier :{m} for a {} parameter (use :missing)",
                        param.kind.as_str()
                    ),
                ));
            }
            values
                .iter()
                .map(|v| quantity(name, v))
                .collect::<Result<_, _>>()?
        }
        ParamType::Uri => {
            let mode = match modifier {
                None => UriMode::Equals,
                Some("below") => UriMode::Below,
                Some("above") => UriMode::Above,
                Some(m) => return Err(ParamError::new(name, format!("unknown modifier :{m} for a uri parameter (use :below, :above or :missing)"))),
            };
            values
                .iter()
                .map(|v| Predicate::Uri {
                    mode,
                    value: v.clone(),
                })
                .collect()
        }
        ParamType::Composite | ParamType::Special => {
            return Err(ParamError::unknown(
                name,
                format!("{code} is not supported"),
            ));
        }
    };
    Ok(Clause::Param {
        param: param.code.clone(),
        kind: param.kind,
        negate,
        any_of,
    })
}

/// Splits on commas that are not escaped (`\,`), unescaping `\,`, `\|`, `\$` and `\\`.
fn split_values(value: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '$' | '\\')) => current.push(next),
                // An escaped pipe stays escaped for the token splitter.
                Some('|') => current.push_str("\\|"),
                Some(other) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            ',' => values.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    values.push(current);
    values
}

/// `a|b` → (Some(a), b); `b` → (None, b). An escaped `\|` is not a separator.
fn split_pipe(value: &str) -> (Option<String>, String) {
    let mut index = None;
    let bytes = value.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\') {
            index = Some(i);
            break;
        }
    }
    match index {
        Some(i) => (
            Some(value[..i].replace("\\|", "|")),
            value[i + 1..].replace("\\|", "|"),
        ),
        None => (None, value.replace("\\|", "|")),
    }
}

fn token(value: &str) -> TokenMatch {
    match split_pipe(value) {
        (None, code) => TokenMatch::Code { system: None, code },
        (Some(system), code) if code.is_empty() => TokenMatch::System(system),
        (Some(system), code) => {
            let (system, code) = as_stored(system, code);
            TokenMatch::Code {
                system: Some(system),
                code,
            }
        }
    }
}

/// An identifier as it is stored: NHS numbers are searched as people write them (spaces, the
/// legacy system) and stored without spaces under the current system.
fn as_stored(system: String, value: String) -> (String, String) {
    if !is_nhs_number_system(&system) {
        return (system, value);
    }
    let value = NhsNumber::parse_lenient(&value)
        .map(|n| n.to_string())
        .unwrap_or(value);
    (
        crate::validation::nhs_number::NHS_NUMBER_SYSTEM.to_owned(),
        value,
    )
}

fn of_type(name: &str, value: &str) -> Result<Predicate, ParamError> {
    let parts: Vec<&str> = value.splitn(3, '|').collect();
    match parts.as_slice() {
        [system, code, value] if !code.is_empty() && !value.is_empty() => {
            Ok(Predicate::Token(TokenMatch::OfType {
                system: (*system).to_owned(),
                code: (*code).to_owned(),
                value: (*value).to_owned(),
            }))
        }
        _ => Err(ParamError::new(
            name,
            ":of-type takes [type system]|[type code]|[value]",
        )),
    }
}

fn date_predicate(name: &str, value: &str) -> Result<Predicate, ParamError> {
    let (prefix, rest) = Prefix::split(value);
    let (low, high) = date_range(rest).ok_or_else(|| {
        ParamError::new(name, format!("'{value}' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff][Z|±hh:mm]), optionally after eq, ne, gt, lt, ge, le, sa, eb or ap"))
    })?;
    Ok(Predicate::Date { prefix, low, high })
}

fn quantity(name: &str, value: &str) -> Result<Predicate, ParamError> {
    let (prefix, rest) = Prefix::split(value);
    let mut parts = rest.splitn(3, '|');
    let number = parts.next().unwrap_or_default();
    let (low, high) = number_range(number).ok_or_else(|| {
        ParamError::new(
            name,
            format!("'{value}' is not a number, optionally with a prefix and |system|code"),
        )
    })?;
    let system = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let code = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(Predicate::Quantity {
        prefix,
        low,
        high,
        system,
        code,
    })
}

fn reference(name: &str, value: &str, type_filter: Option<&str>) -> Result<Predicate, ParamError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(Predicate::Reference(ReferenceMatch::Url(value.to_owned())));
    }
    let parts: Vec<&str> = value.split('/').collect();
    let (target_type, id) = match parts.as_slice() {
        [id] => (type_filter.map(str::to_owned), *id),
        [t, id] | [t, id, "_history", _] => {
            if type_filter.is_some_and(|f| f != *t) {
                return Err(ParamError::new(
                    name,
                    format!(
                        "'{value}' does not match the :{} modifier",
                        type_filter.unwrap_or_default()
                    ),
                ));
            }
            (Some((*t).to_owned()), *id)
        }
        _ => {
            return Err(ParamError::new(
                name,
                format!("'{value}' is not a reference (id, Type/id or an absolute URL)"),
            ))
        }
    };
    if crate::fhir::ResourceId::parse(id).is_none() {
        return Err(ParamError::new(name, format!("'{id}' is not a valid id")));
    }
    Ok(Predicate::Reference(ReferenceMatch::Local {
        target_type,
        id: id.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_and_unescape() {
        assert_eq!(split_values("a,b\\,c"), ["a", "b,c"]);
        assert_eq!(
            split_pipe("http://s|c"),
            (Some("http://s".into()), "c".into())
        );
        assert_eq!(split_pipe("|c"), (Some(String::new()), "c".into()));
        assert_eq!(split_pipe("a\\|b"), (None, "a|b".into()));
        assert_eq!(
            token("https://fhir.nhs.uk/Id/nhs-number|943 476 5919"),
            TokenMatch::Code {
                system: Some("https://fhir.nhs.uk/Id/nhs-number".into()),
                code: "9434765919".into()
            }
        );
        assert_eq!(Prefix::split("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(Prefix::split("2020"), (Prefix::Eq, "2020"));
    }
}
