//! A FHIRPath evaluator for the subset of the language that R4 search parameters and
//! invariants use, over `serde_json::Value` in FHIR JSON form.
//!
//! Expressions are parsed once ([`Expression::parse`], typically at start-up) and evaluated
//! many times; evaluation borrows the resource and allocates only the result collection and
//! any strings it computes.
//!
//! # Supported
//! - Paths with `.`, indexers `[n]`, backtick-delimited names (`` text.`div` ``). A leading
//!   type name that is the focus's `resourceType`, `Resource` or `DomainResource` selects the
//!   focus; any other leading name is a child, so `Practitioner.name` is empty on a Patient.
//! - FHIR JSON: arrays flatten, `null`s in arrays are skipped, choice elements (`deceased` finds
//!   `deceasedDateTime` and types the item `dateTime`; an exact key wins), primitive extensions
//!   (`_birthDate`, `_given` paired by index) reachable through `.extension` / `.id` and
//!   `children()`.
//! - Literals: strings with escapes, integers, decimals, `true`/`false`, `{}`, `@2020-01-01`,
//!   `@2020-01-01T10:00:00Z`, `@T10:00`; `$this`, `$index`, `%resource`, `%rootResource`,
//!   `%context`, `%ucum`, `%sct`, `%loinc`, `%vs-name`, `%ext-name`; comments.
//! - Operators with FHIRPath precedence: unary `+ -`; `* / div mod`; `+ - &`; `is as`; `|`;
//!   `< > <= >=`; `= != ~ !~`; `in contains`; `and`; `or xor`; `implies`, with three-valued
//!   logic on empty operands. `=` compares collections item by item, `~` ignores order.
//!   Comparisons order numbers, strings, and dates/dateTimes/instants/times with partial
//!   precision (different precisions with an equal common prefix give empty), normalising
//!   time zones; two JSON strings that both read as dates compare as dates. Quantities
//!   (Range bounds) compare when their unit is the same, and are unordered otherwise.
//! - Functions: `exists empty count where select all first last tail skip take single not
//!   hasValue children descendants resolve ofType as is iif distinct isDistinct union combine
//!   intersect exclude subsetOf supersetOf allTrue anyTrue allFalse anyFalse contains
//!   startsWith endsWith matches replaceMatches length substring upper lower trim indexOf
//!   replace toString toInteger toDecimal trace extension memberOf htmlChecks conformsTo now
//!   today`. Regexes use the `regex` crate (no look-around or back-references) in single-line
//!   mode, and a literal pattern is compiled at parse time.
//!
//! # Choices made where FHIRPath leaves room or the server decides
//! - `resolve()` fetches nothing: it yields [`Item::Resolved`] with the target type taken from
//!   a relative or absolute reference (`Patient/1`, `https://x/fhir/Patient/1/_history/2`),
//!   from the `contained` resource a `#id` names in `%resource`, or else from `Reference.type`.
//! - `as` (operator and function) filters rather than failing on several items, as R4 search
//!   parameters such as `useContext.value as Quantity` need; `is` requires a single item.
//! - Types: a node's type is known from a choice suffix or a `resourceType`. A JSON string of
//!   unknown type is taken to be any string-valued primitive (`string code id markdown uri url
//!   canonical oid uuid base64Binary`) and a `date`/`dateTime`/`instant`/`time` when its text
//!   has that form; specialisations hold (`code` is a `string`, `Age` a `Quantity`, a Patient a
//!   `DomainResource`). Namespaces (`FHIR.`, `System.`) are accepted and ignored.
//! - `memberOf()` is empty (terminology is checked elsewhere); `htmlChecks()` and
//!   `conformsTo()` are true (checked natively elsewhere); `trace()` returns its input and
//!   logs at trace level.
//! - A date or time without a time zone is taken to be in UTC when compared with one that has.
//! - String escapes the grammar does not know (`\d`) keep their backslash, for regexes.
//!
//! # Not supported (a [`ParseError`] where it can be told from the text)
//! Quantity literals (`4 'mg'`, `2 days`) and date arithmetic; `aggregate`, `repeat`,
//! `$total`, `type()`, math functions, `split`/`join`/`encode`, `lowBoundary` and friends,
//! UCUM conversion, `%vs`/`%ext` lookups beyond building their URLs; any other function name.
//! Recursion is bounded: more than 64 levels of brackets/arguments, or a tree taller than 160,
//! is a parse error, and the deepest expression accepted evaluates in under 1 MiB of stack even
//! in a debug build. `descendants()` walks iteratively, whatever the depth of the resource.

mod ast;
mod eval;
mod lexer;
mod parser;
mod temporal;
mod types;

#[cfg(test)]
mod tests;

use serde_json::Value;

/// A parsed FHIRPath expression: parse once, evaluate often, share between threads.
#[derive(Clone, Debug)]
pub struct Expression {
    ast: ast::Ast,
    text: String,
}

/// One item of a result collection.
#[derive(Clone, Debug, PartialEq)]
pub enum Item<'a> {
    /// A node of the JSON tree.
    Node {
        /// The JSON value; `null` for a primitive that has only extensions (`_name` content).
        value: &'a Value,
        /// The FHIR type when it is known: from a choice-element suffix (`deceasedDateTime`
        /// → `dateTime`, `occurrencePeriod` → `Period`) or the `resourceType` of a resource.
        /// A `&str` rather than a `Cow`: the type names are static and a `resourceType` is
        /// borrowed from the resource, so neither needs an allocation.
        fhir_type: Option<&'a str>,
        /// The `_name` sibling of a primitive, holding its `id` and `extension`.
        primitive_element: Option<&'a Value>,
    },
    Boolean(bool),
    Integer(i64),
    Decimal(f64),
    String(String),
    /// A date as written, without the `@` (`2020-01`).
    Date(String),
    DateTime(String),
    /// A time as written, without `@T` (`10:30:00`).
    Time(String),
    /// The result of `resolve()` on a reference: only the target's type is known.
    Resolved {
        resource_type: String,
    },
}

impl<'a> Item<'a> {
    /// A node for `value`, typed by its `resourceType` if it is a resource.
    pub fn from_json(value: &'a Value) -> Item<'a> {
        eval::node_item(value)
    }

    /// The JSON node, for a [`Item::Node`].
    pub fn as_json(&self) -> Option<&'a Value> {
        match self {
            Item::Node { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The text of a string literal or result, or of a JSON string node.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Item::String(s) => Some(s),
            Item::Node { value, .. } => value.as_str(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Boolean(b) => Some(*b),
            Item::Node { value, .. } => value.as_bool(),
            _ => None,
        }
    }

    /// The FHIR type of a node when known, or the target type of a resolved reference.
    pub fn fhir_type(&self) -> Option<&str> {
        match self {
            Item::Node { fhir_type, .. } => *fhir_type,
            Item::Resolved { resource_type } => Some(resource_type),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at offset {position})")]
pub struct ParseError {
    pub message: String,
    /// Byte offset in the expression text.
    pub position: usize,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>, position: usize) -> ParseError {
        ParseError {
            message: message.into(),
            position,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

impl Expression {
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        Ok(Expression {
            ast: parser::parse(text)?,
            text: text.to_owned(),
        })
    }

    /// The text the expression was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates with `resource` as the focus, `%context`, `%resource` and `%rootResource`.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Result<Vec<Item<'a>>, EvalError> {
        self.evaluate_on(resource, resource)
    }

    /// Evaluates with `focus` (e.g. the element an invariant is declared on) as the focus and
    /// `%context`, and `resource` as `%resource` and `%rootResource`.
    pub fn evaluate_on<'a>(
        &self,
        focus: &'a Value,
        resource: &'a Value,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        self.evaluate_in(Item::from_json(focus), resource, resource)
    }

    /// The general form: the focus as an item (so that a primitive can carry its `_name`
    /// extensions, or a node its known type), and `%rootResource` apart from `%resource` for
    /// a contained resource.
    pub fn evaluate_in<'a>(
        &self,
        focus: Item<'a>,
        resource: &'a Value,
        root_resource: &'a Value,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        let env = eval::Env {
            resource,
            root_resource,
            context: focus,
        };
        eval::evaluate(&self.ast, &env)
    }

    /// For invariants: `Some(b)` when the result is a single Boolean `b` (a JSON boolean node
    /// counts), `None` when it is empty, and an error for anything else. The caller decides
    /// what empty means; FHIR says an invariant whose result is empty passes, so a validator
    /// should treat only `Some(false)` as a failure.
    pub fn evaluate_bool<'a>(
        &self,
        focus: &'a Value,
        resource: &'a Value,
    ) -> Result<Option<bool>, EvalError> {
        let result = self.evaluate_on(focus, resource)?;
        match result.as_slice() {
            [] => Ok(None),
            [item] => item.as_bool().map(Some).ok_or_else(|| EvalError {
                message: format!("expected a Boolean result, got {item:?}"),
            }),
            items => Err(EvalError {
                message: format!(
                    "expected a single Boolean result, got {} items",
                    items.len()
                ),
            }),
        }
    }
}

impl std::str::FromStr for Expression {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Expression, ParseError> {
        Expression::parse(text)
    }
}
