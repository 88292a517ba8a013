//! Evaluation of a parsed expression over borrowed JSON.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value};

use super::ast::{Ast, BinOp, EnvVar, Func, Kind, Literal, TypeSpec};
use super::parser::compile_regex;
use super::temporal::{self, DateTimeValue, TimeValue};
use super::types::{choice_type, fhir_type_is, untyped_json_is};
use super::{EvalError, Item};

/// What `value` points at for a primitive that has only `_name` content (an extension but no
/// value): an item must borrow some JSON, and this one reads as "no value".
static NO_VALUE: Value = Value::Null;

type Result<T> = std::result::Result<T, EvalError>;

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(EvalError {
        message: message.into(),
    })
}

pub(crate) struct Env<'a> {
    pub resource: &'a Value,
    pub root_resource: &'a Value,
    pub context: Item<'a>,
}

/// What an expression is evaluated against: the collection its leading names navigate from
/// (`$this`), and `$index` inside an iteration.
#[derive(Clone, Copy)]
struct Scope<'s, 'a> {
    this: &'s [Item<'a>],
    index: Option<usize>,
}

pub(crate) fn evaluate<'a>(ast: &Ast, env: &Env<'a>) -> Result<Vec<Item<'a>>> {
    let focus = [env.context.clone()];
    let evaluator = Evaluator { env };
    evaluator.eval(
        ast,
        Scope {
            this: &focus,
            index: None,
        },
    )
}

pub(crate) fn resource_type(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) => member(map, "resourceType").and_then(Value::as_str),
        _ => None,
    }
}

/// Objects up to this many members are searched by comparing keys, not by hashing.
const SCAN_MEMBERS: usize = 16;

/// A member of a JSON object. Navigation looks up members of every node it passes (and
/// `resourceType` of every node it yields); serde_json's map hashes each key with SipHash,
/// which costs more than comparing the few keys of a FHIR element (length first).
fn member<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    if map.len() <= SCAN_MEMBERS {
        map.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

fn is_resource(value: &Value) -> bool {
    resource_type(value).is_some()
}

pub(crate) fn node_item(value: &Value) -> Item<'_> {
    Item::Node {
        value,
        fhir_type: resource_type(value),
        primitive_element: None,
    }
}

struct Evaluator<'e, 'a> {
    env: &'e Env<'a>,
}

impl<'a> Evaluator<'_, 'a> {
    /// Kept to a dispatch with few locals: each level of the tree puts one of these frames
    /// on the stack, and debug builds give every local of every arm its own slot.
    fn eval(&self, ast: &Ast, scope: Scope<'_, 'a>) -> Result<Vec<Item<'a>>> {
        match &ast.kind {
            Kind::Member {
                base: Some(base),
                name,
                underscore,
            } => {
                let input = self.eval(base, scope)?;
                Ok(navigate_all(&input, name, underscore))
            }
            Kind::Member {
                base: None,
                name,
                underscore,
            } => Ok(navigate_term(scope.this, name, underscore)),
            Kind::Call {
                base: Some(base),
                func,
                args,
            } => {
                let input = self.eval(base, scope)?;
                self.call(func, args, &input, scope)
            }
            Kind::Call {
                base: None,
                func,
                args,
            } => self.call(func, args, scope.this, scope),
            Kind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, scope),
            Kind::Indexer { base, index } => {
                let input = self.eval(base, scope)?;
                let index = self.eval(index, scope)?;
                index_into(input, &index)
            }
            Kind::Negate(operand) => negate(&self.eval(operand, scope)?),
            Kind::Is(operand, spec) => is_single(&self.eval(operand, scope)?, spec),
            // Like the as() function, a filter: R4 search parameters apply it to repeating
            // elements (`useContext.value as Quantity`), where a strict singleton check fails.
            Kind::As(operand, spec) => {
                let mut items = self.eval(operand, scope)?;
                items.retain(|item| item_is(item, spec));
                Ok(items)
            }
            Kind::Empty => Ok(Vec::new()),
            Kind::Literal(literal) => Ok(vec![literal_item(literal)]),
            Kind::This => Ok(scope.this.to_vec()),
            Kind::Index => index_variable(scope.index),
            Kind::Env(var) => Ok(vec![self.env_var(var)]),
        }
    }

    fn env_var(&self, var: &EnvVar) -> Item<'a> {
        match var {
            EnvVar::Resource => node_item(self.env.resource),
            EnvVar::RootResource => node_item(self.env.root_resource),
            EnvVar::Context => self.env.context.clone(),
            EnvVar::Constant(s) => Item::String(s.clone()),
        }
    }

    fn truth(&self, ast: &Ast, scope: Scope<'_, 'a>) -> Result<Option<bool>> {
        to_bool(&self.eval(ast, scope)?)
    }

    /// An operand of a comparison: a literal is used in place, without building an item.
    fn operand<'x>(&self, ast: &'x Ast, scope: Scope<'_, 'a>) -> Result<Operand<'x, 'a>> {
        Ok(match &ast.kind {
            Kind::Literal(literal) => Operand::Literal(literal),
            _ => Operand::Items(self.eval(ast, scope)?),
        })
    }

    /// A small dispatcher, so that the operator table (`apply_binary`) is not on the
    /// recursion path: long operator chains nest as deep as the tree is tall.
    fn binary(
        &self,
        op: BinOp,
        lhs: &Ast,
        rhs: &Ast,
        scope: Scope<'_, 'a>,
    ) -> Result<Vec<Item<'a>>> {
        match op {
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                let truth = self.logic(op, lhs, rhs, scope)?;
                Ok(truth.map(Item::Boolean).into_iter().collect())
            }
            BinOp::Union => {
                let mut items = self.eval(lhs, scope)?;
                items.extend(self.eval(rhs, scope)?);
                Ok(dedup(items))
            }
            _ => {
                let l = self.operand(lhs, scope)?;
                let r = self.operand(rhs, scope)?;
                apply_binary(op, &l, &r)
            }
        }
    }

    /// Three-valued logic, skipping the right operand when the left one decides.
    fn logic(&self, op: BinOp, lhs: &Ast, rhs: &Ast, scope: Scope<'_, 'a>) -> Result<Option<bool>> {
        let l = self.truth(lhs, scope)?;
        let decided = match op {
            BinOp::And | BinOp::Implies => l == Some(false),
            BinOp::Or => l == Some(true),
            _ => false,
        };
        if decided {
            // false and x = false; true or x = true; false implies x = true.
            return Ok(Some(op != BinOp::And));
        }
        let r = self.truth(rhs, scope)?;
        Ok(match op {
            BinOp::And => match (l, r) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            BinOp::Or => match (l, r) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            BinOp::Xor => l.zip(r).map(|(a, b)| a != b),
            _ => match (l, r) {
                (Some(true), r) => r,
                (_, Some(true)) => Some(true),
                _ => None,
            },
        })
    }

    /// Evaluates a lambda argument with `$this` bound to `input[i]`.
    fn lambda(&self, ast: &Ast, input: &[Item<'a>], i: usize) -> Result<Vec<Item<'a>>> {
        let this = input.get(i..=i).unwrap_or_default();
        self.eval(
            ast,
            Scope {
                this,
                index: Some(i),
            },
        )
    }

    fn lambda_truth(&self, ast: &Ast, input: &[Item<'a>], i: usize) -> Result<Option<bool>> {
        to_bool(&self.lambda(ast, input, i)?)
    }

    /// Calls a function. Lambda arguments are evaluated per input item; the others once, up
    /// front, so that the large function table in `apply` is not on the recursion path (its
    /// frame is big in debug builds, and nesting depth multiplies it).
    fn call(
        &self,
        func: &Func,
        args: &[Ast],
        input: &[Item<'a>],
        scope: Scope<'_, 'a>,
    ) -> Result<Vec<Item<'a>>> {
        match func {
            Func::Exists | Func::Where | Func::Select | Func::All => {
                self.iterate(func, args, input)
            }
            Func::Iif => self.iif(args, input, scope),
            Func::Trace => {
                if log::log_enabled!(log::Level::Trace) {
                    let name = match args.first().map(|a| &a.kind) {
                        Some(Kind::Literal(Literal::Str(s))) => s.as_str(),
                        _ => "?",
                    };
                    log::trace!("fhirpath trace '{name}': {} item(s)", input.len());
                }
                Ok(input.to_vec())
            }
            _ => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.operand(arg, scope)?);
                }
                self.apply(func, input, &values)
            }
        }
    }

    /// `exists(criteria)`, `where`, `select` and `all`.
    fn iterate(&self, func: &Func, args: &[Ast], input: &[Item<'a>]) -> Result<Vec<Item<'a>>> {
        let Some(lambda) = args.first() else {
            // Only exists() may come without an argument.
            return Ok(vec![Item::Boolean(!input.is_empty())]);
        };
        let mut out = Vec::new();
        for i in 0..input.len() {
            if let Func::Select = func {
                out.extend(self.lambda(lambda, input, i)?);
                continue;
            }
            let holds = self.lambda_truth(lambda, input, i)? == Some(true);
            match func {
                Func::Exists if holds => return Ok(vec![Item::Boolean(true)]),
                Func::All if !holds => return Ok(vec![Item::Boolean(false)]),
                Func::Where if holds => out.extend(input.get(i).cloned()),
                _ => {}
            }
        }
        Ok(match func {
            Func::Exists => vec![Item::Boolean(false)],
            Func::All => vec![Item::Boolean(true)],
            _ => out,
        })
    }

    /// `iif(criterion, then [, else])`: only the branch taken is evaluated, with `$this` the
    /// (at most single) input.
    fn iif(&self, args: &[Ast], input: &[Item<'a>], scope: Scope<'_, 'a>) -> Result<Vec<Item<'a>>> {
        if input.len() > 1 {
            return fail("iif() cannot be called on a collection of more than one item");
        }
        let inner = Scope {
            this: input,
            index: scope.index,
        };
        let branch = match args.first() {
            Some(criterion) if self.truth(criterion, inner)? == Some(true) => args.get(1),
            _ => args.get(2),
        };
        match branch {
            Some(branch) => self.eval(branch, inner),
            None => Ok(Vec::new()),
        }
    }

    /// The functions whose arguments are plain values, already evaluated into `args`
    /// (literals stay borrowed from the expression).
    fn apply(
        &self,
        func: &Func,
        input: &[Item<'a>],
        args: &[Operand<'_, 'a>],
    ) -> Result<Vec<Item<'a>>> {
        let boolean = |b: bool| Ok(vec![Item::Boolean(b)]);
        let arg = |n: usize| args.get(n);
        let other = || operand_items(arg(0));
        match func {
            Func::Empty => boolean(input.is_empty()),
            Func::Count => Ok(vec![Item::Integer(
                i64::try_from(input.len()).unwrap_or(i64::MAX),
            )]),
            Func::First => Ok(input.first().cloned().into_iter().collect()),
            Func::Last => Ok(input.last().cloned().into_iter().collect()),
            Func::Tail => Ok(input.iter().skip(1).cloned().collect()),
            Func::Skip | Func::Take => {
                let n = integer_operand(arg(0), "skip()/take() argument")?.unwrap_or(0);
                let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
                Ok(match func {
                    Func::Skip => input.iter().skip(n).cloned().collect(),
                    _ => input.iter().take(n).cloned().collect(),
                })
            }
            Func::Single => Ok(singleton(input, "single()")?.cloned().into_iter().collect()),
            Func::Not => Ok(to_bool(input)?
                .map(|b| Item::Boolean(!b))
                .into_iter()
                .collect()),
            Func::HasValue => boolean(matches!(input, [item] if has_value(item))),
            Func::Children => {
                let mut out = Vec::new();
                for item in input {
                    children(item, &mut out);
                }
                Ok(out)
            }
            Func::Descendants => Ok(descendants(input)),
            Func::Resolve => Ok(input
                .iter()
                .filter_map(|item| self.resolve(item))
                .map(|resource_type| Item::Resolved { resource_type })
                .collect()),
            Func::OfType(spec) | Func::As(spec) => Ok(input
                .iter()
                .filter(|item| item_is(item, spec))
                .cloned()
                .collect()),
            Func::Is(spec) => Ok(singleton(input, "is()")?
                .map(|item| Item::Boolean(item_is(item, spec)))
                .into_iter()
                .collect()),
            Func::Distinct => Ok(dedup(input.to_vec())),
            Func::IsDistinct => boolean(dedup(input.to_vec()).len() == input.len()),
            Func::Union => Ok(dedup([input, &other()].concat())),
            Func::Combine => Ok([input, &other()].concat()),
            Func::Intersect => {
                let mut items = dedup(input.to_vec());
                let other = other();
                items.retain(|item| contains_item(&other, item));
                Ok(items)
            }
            Func::Exclude => {
                let other = other();
                Ok(input
                    .iter()
                    .filter(|item| !contains_item(&other, item))
                    .cloned()
                    .collect())
            }
            Func::SubsetOf => {
                let other = other();
                boolean(input.iter().all(|item| contains_item(&other, item)))
            }
            Func::SupersetOf => boolean(other().iter().all(|item| contains_item(input, item))),
            Func::AllTrue => boolean(input.iter().all(|i| item_bool(i) == Some(true))),
            Func::AnyTrue => boolean(input.iter().any(|i| item_bool(i) == Some(true))),
            Func::AllFalse => boolean(input.iter().all(|i| item_bool(i) == Some(false))),
            Func::AnyFalse => boolean(input.iter().any(|i| item_bool(i) == Some(false))),
            Func::Extension => {
                let Some(url) = string_arg(arg(0))? else {
                    return Ok(Vec::new());
                };
                let mut extensions = Vec::new();
                for item in input {
                    navigate(item, "extension", "_extension", &mut extensions);
                }
                extensions.retain(|e| match e {
                    Item::Node { value, .. } => {
                        value.get("url").and_then(Value::as_str) == Some(url)
                    }
                    _ => false,
                });
                Ok(extensions)
            }
            // Terminology is checked outside FHIRPath, and an unknown answer is empty.
            Func::MemberOf => Ok(Vec::new()),
            // Narrative safety and profile conformance are checked natively elsewhere.
            Func::HtmlChecks | Func::ConformsTo => boolean(true),
            Func::Now => Ok(vec![Item::DateTime(
                chrono::Utc::now()
                    .format("%Y-%m-%dT%H:%M:%S%.3f+00:00")
                    .to_string(),
            )]),
            Func::Today => Ok(vec![Item::Date(
                chrono::Utc::now().format("%Y-%m-%d").to_string(),
            )]),
            Func::ToString => Ok(singleton(input, "toString()")?
                .and_then(to_text)
                .map(Item::String)
                .into_iter()
                .collect()),
            Func::ToInteger => Ok(singleton(input, "toInteger()")?
                .and_then(to_integer)
                .map(Item::Integer)
                .into_iter()
                .collect()),
            Func::ToDecimal => Ok(singleton(input, "toDecimal()")?
                .and_then(to_decimal)
                .map(Item::Decimal)
                .into_iter()
                .collect()),
            _ => string_function(func, input, args),
        }
    }

    /// The target type of a reference, as far as it can be told without fetching anything.
    fn resolve(&self, item: &Item<'a>) -> Option<String> {
        let Item::Node { value, .. } = item else {
            return None;
        };
        let (reference, declared) = match value {
            Value::Object(map) => (
                map.get("reference").and_then(Value::as_str),
                map.get("type").and_then(Value::as_str),
            ),
            Value::String(s) => (Some(s.as_str()), None),
            _ => return None,
        };
        let reference = reference?;
        if let Some(local) = reference.strip_prefix('#') {
            let resource = self.env.resource;
            if local.is_empty() {
                return resource_type(resource).map(str::to_owned);
            }
            return resource
                .get("contained")
                .and_then(Value::as_array)?
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(local))
                .and_then(resource_type)
                .map(str::to_owned);
        }
        // A urn:uuid: or other opaque reference says nothing of its type but `type` may.
        type_in_reference(reference).or(declared).map(str::to_owned)
    }
}

/// The operators other than logic and union, on evaluated operands.
fn apply_binary<'a>(op: BinOp, l: &Operand<'_, 'a>, r: &Operand<'_, 'a>) -> Result<Vec<Item<'a>>> {
    let boolean = |b: Option<bool>| b.map(Item::Boolean).into_iter().collect::<Vec<_>>();
    match op {
        BinOp::Eq => Ok(boolean(collection_eq(l, r))),
        BinOp::Ne => Ok(boolean(collection_eq(l, r).map(|b| !b))),
        BinOp::Equiv => Ok(boolean(Some(collection_equiv(l, r)))),
        BinOp::NotEquiv => Ok(boolean(Some(!collection_equiv(l, r)))),
        BinOp::In => Ok(boolean(membership(l, r, "in")?)),
        BinOp::Contains => Ok(boolean(membership(r, l, "contains")?)),
        BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
            let (Some(a), Some(b)) = (l.single("comparison")?, r.single("comparison")?) else {
                return Ok(Vec::new());
            };
            let ordering = prim_cmp(a, b)?;
            Ok(boolean(ordering.map(|o| match op {
                BinOp::Lt => o == Ordering::Less,
                BinOp::Gt => o == Ordering::Greater,
                BinOp::Le => o != Ordering::Greater,
                _ => o != Ordering::Less,
            })))
        }
        BinOp::Concat => {
            // `&` treats an empty operand as the empty string.
            let text = |p: Option<Prim<'_>>| -> Result<String> {
                match p {
                    None | Some(Prim::Absent) => Ok(String::new()),
                    Some(Prim::Str(s)) => Ok(s.to_owned()),
                    Some(other) => fail(format!("& needs strings, got {}", other.kind())),
                }
            };
            let mut joined = text(l.single("&")?)?;
            joined.push_str(&text(r.single("&")?)?);
            Ok(vec![Item::String(joined)])
        }
        _ => {
            let (Some(a), Some(b)) = (l.single("arithmetic")?, r.single("arithmetic")?) else {
                return Ok(Vec::new());
            };
            Ok(arithmetic(op, a, b)?.into_iter().collect())
        }
    }
}

fn navigate_all<'a>(input: &[Item<'a>], name: &str, underscore: &str) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    for item in input {
        navigate(item, name, underscore, &mut out);
    }
    out
}

/// A name at the start of an expression (or of a lambda): a type name matching the focus
/// selects the focus itself.
fn navigate_term<'a>(this: &[Item<'a>], name: &str, underscore: &str) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    for item in this {
        if names_own_type(item, name) {
            out.push(item.clone());
        } else {
            navigate(item, name, underscore, &mut out);
        }
    }
    out
}

fn index_into<'a>(input: Vec<Item<'a>>, index: &[Item<'_>]) -> Result<Vec<Item<'a>>> {
    let Some(index) = integer_arg(index, "indexer")? else {
        return Ok(Vec::new());
    };
    Ok(usize::try_from(index)
        .ok()
        .and_then(|i| input.into_iter().nth(i))
        .into_iter()
        .collect())
}

fn index_variable<'a>(index: Option<usize>) -> Result<Vec<Item<'a>>> {
    match index {
        Some(i) => Ok(vec![Item::Integer(i64::try_from(i).unwrap_or(i64::MAX))]),
        None => fail("$index is only defined inside where(), select(), all() or exists()"),
    }
}

fn negate<'a>(operand: &[Item<'_>]) -> Result<Vec<Item<'a>>> {
    let Some(item) = singleton(operand, "unary -")? else {
        return Ok(Vec::new());
    };
    Ok(match prim(item) {
        Prim::Int(i) => match i.checked_neg() {
            Some(n) => vec![Item::Integer(n)],
            None => return fail("integer overflow"),
        },
        Prim::Dec(d) => vec![Item::Decimal(-d)],
        Prim::Absent => Vec::new(),
        other => return fail(format!("cannot negate {}", other.kind())),
    })
}

fn is_single<'a>(operand: &[Item<'_>], spec: &TypeSpec) -> Result<Vec<Item<'a>>> {
    Ok(singleton(operand, "is")?
        .map(|item| Item::Boolean(item_is(item, spec)))
        .into_iter()
        .collect())
}

fn operand_items<'v, 'a>(arg: Option<&'v Operand<'_, 'a>>) -> Cow<'v, [Item<'a>]> {
    match arg {
        Some(Operand::Items(items)) => Cow::Borrowed(items),
        Some(Operand::Literal(literal)) => Cow::Owned(vec![literal_item(literal)]),
        None => Cow::Borrowed(&[]),
    }
}

/// A string argument; `None` when it is empty.
fn string_arg<'v>(arg: Option<&'v Operand<'_, '_>>) -> Result<Option<&'v str>> {
    let Some(arg) = arg else {
        return Ok(None);
    };
    match arg.single("string argument")? {
        None | Some(Prim::Absent) => Ok(None),
        Some(Prim::Str(s)) => Ok(Some(s)),
        Some(other) => fail(format!("expected a string argument, got {}", other.kind())),
    }
}

fn integer_operand(arg: Option<&Operand<'_, '_>>, what: &str) -> Result<Option<i64>> {
    let Some(arg) = arg else {
        return Ok(None);
    };
    match arg.single(what)? {
        None | Some(Prim::Absent) => Ok(None),
        Some(Prim::Int(i)) => Ok(Some(i)),
        Some(other) => fail(format!("{what} must be an integer, got {}", other.kind())),
    }
}

fn regex_arg<'r>(
    cached: Option<&'r regex::Regex>,
    pattern: Option<&Operand<'_, '_>>,
) -> Result<Option<Cow<'r, regex::Regex>>> {
    if let Some(regex) = cached {
        return Ok(Some(Cow::Borrowed(regex)));
    }
    match string_arg(pattern)? {
        None => Ok(None),
        Some(pattern) => compile_regex(pattern)
            .map(|r| Some(Cow::Owned(r)))
            .map_err(|message| EvalError { message }),
    }
}

/// The functions defined on a single string; an empty input or argument gives empty.
fn string_function<'a>(
    func: &Func,
    input: &[Item<'a>],
    args: &[Operand<'_, 'a>],
) -> Result<Vec<Item<'a>>> {
    let Some(item) = singleton(input, "string function")? else {
        return Ok(Vec::new());
    };
    let s = match prim(item) {
        Prim::Str(s) => s,
        Prim::Absent => return Ok(Vec::new()),
        other => {
            return fail(format!(
                "string function called on {}, not a string",
                other.kind()
            ))
        }
    };
    let arg = |n: usize| args.get(n);
    let out = match func {
        Func::Length => Some(Item::Integer(
            i64::try_from(s.chars().count()).unwrap_or(i64::MAX),
        )),
        Func::Upper => Some(Item::String(s.to_uppercase())),
        Func::Lower => Some(Item::String(s.to_lowercase())),
        Func::Trim => Some(Item::String(s.trim().to_owned())),
        Func::Contains => string_arg(arg(0))?.map(|sub| Item::Boolean(s.contains(sub))),
        Func::StartsWith => string_arg(arg(0))?.map(|p| Item::Boolean(s.starts_with(p))),
        Func::EndsWith => string_arg(arg(0))?.map(|p| Item::Boolean(s.ends_with(p))),
        Func::IndexOf => string_arg(arg(0))?.map(|sub| {
            Item::Integer(s.find(sub).map_or(-1, |byte| {
                i64::try_from(s[..byte].chars().count()).unwrap_or(i64::MAX)
            }))
        }),
        Func::Substring => {
            let Some(start) = integer_operand(arg(0), "substring() start")? else {
                return Ok(Vec::new());
            };
            let length = integer_operand(arg(1), "substring() length")?;
            let count = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
            if start < 0 || start >= count {
                None
            } else {
                let skip = usize::try_from(start).unwrap_or(usize::MAX);
                let take = length.map_or(usize::MAX, |l| usize::try_from(l.max(0)).unwrap_or(0));
                Some(Item::String(s.chars().skip(skip).take(take).collect()))
            }
        }
        Func::Replace => match (string_arg(arg(0))?, string_arg(arg(1))?) {
            (Some(pattern), Some(with)) => Some(Item::String(s.replace(pattern, with))),
            _ => None,
        },
        Func::Matches(cached) => {
            regex_arg(cached.as_ref(), arg(0))?.map(|regex| Item::Boolean(regex.is_match(s)))
        }
        Func::ReplaceMatches(cached) => {
            match (regex_arg(cached.as_ref(), arg(0))?, string_arg(arg(1))?) {
                (Some(regex), Some(with)) => {
                    Some(Item::String(regex.replace_all(s, with).into_owned()))
                }
                _ => None,
            }
        }
        other => return fail(format!("internal: {other:?} is not a string function")),
    };
    Ok(out.into_iter().collect())
}

/// `Patient/1`, `Patient/1/_history/2`, `https://host/fhir/Patient/1` → `Patient`.
fn type_in_reference(reference: &str) -> Option<&str> {
    let path = reference.split(['?', '#']).next()?;
    let mut segments = path.rsplit('/');
    let last = segments.next()?;
    let mut candidate = segments.next()?;
    let mut id = last;
    if candidate == "_history" {
        id = segments.next()?;
        candidate = segments.next()?;
    }
    let looks_like_type = candidate.len() > 1
        && candidate.starts_with(|c: char| c.is_ascii_uppercase())
        && candidate.chars().all(|c| c.is_ascii_alphanumeric());
    (looks_like_type && !id.is_empty()).then_some(candidate)
}

/// Whether a leading name is the type of the focus (`Patient.name` on a Patient), so it
/// selects the focus instead of a child.
fn names_own_type(item: &Item<'_>, name: &str) -> bool {
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return false;
    }
    match item {
        Item::Node {
            value,
            fhir_type: Some(t),
            ..
        } if is_resource(value) => fhir_type_is(t, name, true),
        _ => false,
    }
}

/// The object navigation reads: a complex value, or the `_name` content of a primitive
/// (so that `.extension` and `.id` reach a primitive's extensions).
fn object_of<'a>(item: &Item<'a>) -> Option<&'a Map<String, Value>> {
    match item {
        Item::Node {
            value: Value::Object(map),
            ..
        } => Some(map),
        Item::Node {
            primitive_element: Some(Value::Object(map)),
            ..
        } => Some(map),
        _ => None,
    }
}

fn navigate<'a>(item: &Item<'a>, name: &str, underscore: &str, out: &mut Vec<Item<'a>>) {
    let Some(map) = object_of(item) else {
        return;
    };
    let (value, element) = if map.len() <= SCAN_MEMBERS {
        // One pass for both keys.
        let (mut value, mut element) = (None, None);
        for (key, v) in map {
            if key.as_str() == name {
                value = Some(v);
            } else if key.as_str() == underscore {
                element = Some(v);
            }
        }
        (value, element)
    } else {
        (map.get(name), map.get(underscore))
    };
    if value.is_some() || element.is_some() {
        push_values(value, element, None, out);
        return;
    }
    // Choice elements are lower-camel names; an exact key was not found above, so look for
    // `name` + a type suffix (or only its `_` part, for an extension-only value).
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return;
    }
    let mut element_only = None;
    for (key, value) in map {
        if let Some(suffix) = key.strip_prefix(name) {
            if let Some(ty) = choice_type(suffix) {
                let element = map.get(&format!("_{key}"));
                push_values(Some(value), element, Some(ty), out);
                return;
            }
        } else if let Some(suffix) = key.strip_prefix('_').and_then(|k| k.strip_prefix(name)) {
            if let Some(ty) = choice_type(suffix) {
                element_only = Some((value, ty));
            }
        }
    }
    if let Some((element, ty)) = element_only {
        push_values(None, Some(element), Some(ty), out);
    }
}

/// Items for one JSON member and its `_` sibling, flattening arrays (which pair up by index).
fn push_values<'a>(
    value: Option<&'a Value>,
    element: Option<&'a Value>,
    fhir_type: Option<&'static str>,
    out: &mut Vec<Item<'a>>,
) {
    match (value, element) {
        (Some(Value::Array(values)), element) => {
            let elements = element.and_then(Value::as_array);
            let n = values.len().max(elements.map_or(0, Vec::len));
            for i in 0..n {
                push_one(
                    values.get(i),
                    elements.and_then(|e| e.get(i)),
                    fhir_type,
                    out,
                );
            }
        }
        (None | Some(Value::Null), Some(Value::Array(elements))) => {
            for element in elements {
                push_one(None, Some(element), fhir_type, out);
            }
        }
        (value, element) => push_one(value, element, fhir_type, out),
    }
}

fn push_one<'a>(
    value: Option<&'a Value>,
    element: Option<&'a Value>,
    fhir_type: Option<&'static str>,
    out: &mut Vec<Item<'a>>,
) {
    let value = value.filter(|v| !v.is_null());
    let element = element.filter(|e| e.is_object());
    if value.is_none() && element.is_none() {
        return;
    }
    let value = value.unwrap_or(&NO_VALUE);
    out.push(Item::Node {
        value,
        fhir_type: fhir_type.or_else(|| resource_type(value)),
        primitive_element: element,
    });
}

fn children<'a>(item: &Item<'a>, out: &mut Vec<Item<'a>>) {
    let Some(map) = object_of(item) else {
        return;
    };
    let has_elements = map.keys().any(|k| k.starts_with('_'));
    for (key, value) in map {
        if key == "resourceType" {
            continue;
        }
        if let Some(base) = key.strip_prefix('_') {
            // Paired with its value below, unless the value is absent.
            if !map.contains_key(base) {
                push_values(None, Some(value), None, out);
            }
            continue;
        }
        let element = if has_elements {
            map.get(&format!("_{key}"))
        } else {
            None
        };
        push_values(Some(value), element, None, out);
    }
}

/// Breadth first, without recursion: resources can be deep.
fn descendants<'a>(input: &[Item<'a>]) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    let mut level = Vec::new();
    for item in input {
        children(item, &mut level);
    }
    while !level.is_empty() {
        let mut next = Vec::new();
        for item in &level {
            children(item, &mut next);
        }
        out.append(&mut level);
        level = next;
    }
    out
}

fn has_value(item: &Item<'_>) -> bool {
    match item {
        Item::Node { value, .. } => {
            matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
        }
        Item::Resolved { .. } => false,
        _ => true,
    }
}

fn literal_item(literal: &Literal) -> Item<'static> {
    match literal {
        Literal::Bool(b) => Item::Boolean(*b),
        Literal::Int(i) => Item::Integer(*i),
        Literal::Dec(d) => Item::Decimal(*d),
        Literal::Str(s) => Item::String(s.clone()),
        Literal::Date(s) => Item::Date(s.clone()),
        Literal::DateTime(s) => Item::DateTime(s.clone()),
        Literal::Time(s) => Item::Time(s.clone()),
    }
}

fn item_is(item: &Item<'_>, spec: &TypeSpec) -> bool {
    let wanted = spec.name.as_str();
    match item {
        Item::Boolean(_) => matches!(wanted, "Boolean" | "boolean"),
        Item::Integer(_) => matches!(wanted, "Integer" | "integer"),
        Item::Decimal(_) => matches!(wanted, "Decimal" | "decimal"),
        Item::String(_) => matches!(wanted, "String" | "string"),
        Item::Date(_) => matches!(wanted, "Date" | "date"),
        Item::DateTime(_) => matches!(wanted, "DateTime" | "dateTime"),
        Item::Time(_) => matches!(wanted, "Time" | "time"),
        Item::Resolved { resource_type } => fhir_type_is(resource_type, wanted, true),
        Item::Node {
            value,
            fhir_type: Some(t),
            ..
        } => fhir_type_is(t, wanted, is_resource(value)),
        Item::Node {
            value,
            fhir_type: None,
            ..
        } => untyped_json_is(value, wanted),
    }
}

/// FHIRPath's singleton evaluation of a collection as a Boolean.
fn to_bool(items: &[Item<'_>]) -> Result<Option<bool>> {
    match items {
        [] => Ok(None),
        [item] => Ok(match prim(item) {
            Prim::Bool(b) => Some(b),
            Prim::Absent => None,
            // A single non-Boolean item counts as true.
            _ => Some(true),
        }),
        _ => fail(format!(
            "expected a single Boolean, got a collection of {} items",
            items.len()
        )),
    }
}

fn item_bool(item: &Item<'_>) -> Option<bool> {
    match prim(item) {
        Prim::Bool(b) => Some(b),
        _ => None,
    }
}

fn singleton<'i, 'a>(items: &'i [Item<'a>], what: &str) -> Result<Option<&'i Item<'a>>> {
    match items {
        [] => Ok(None),
        [item] => Ok(Some(item)),
        _ => fail(format!(
            "{what} needs a single item, got a collection of {}",
            items.len()
        )),
    }
}

fn integer_arg(items: &[Item<'_>], what: &str) -> Result<Option<i64>> {
    match singleton(items, what)?.map(prim) {
        None | Some(Prim::Absent) => Ok(None),
        Some(Prim::Int(i)) => Ok(Some(i)),
        Some(other) => fail(format!("{what} must be an integer, got {}", other.kind())),
    }
}

fn to_text(item: &Item<'_>) -> Option<String> {
    Some(match prim(item) {
        Prim::Bool(b) => b.to_string(),
        Prim::Int(i) => i.to_string(),
        Prim::Dec(d) => format_decimal(d),
        Prim::Str(s) | Prim::Date(s) | Prim::DateTime(s) | Prim::Time(s) => s.to_owned(),
        Prim::Json(_) | Prim::Resolved(_) | Prim::Absent => return None,
    })
}

fn format_decimal(d: f64) -> String {
    // Keep a decimal recognisable as one: 1.0 prints "1.0", not "1".
    if d.is_finite() && d.fract() == 0.0 {
        format!("{d:.1}")
    } else {
        d.to_string()
    }
}

fn to_integer(item: &Item<'_>) -> Option<i64> {
    match prim(item) {
        Prim::Int(i) => Some(i),
        Prim::Bool(b) => Some(i64::from(b)),
        Prim::Str(s) => {
            let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        _ => None,
    }
}

fn to_decimal(item: &Item<'_>) -> Option<f64> {
    match prim(item) {
        Prim::Int(i) => Some(i as f64),
        Prim::Dec(d) => Some(d),
        Prim::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
        Prim::Str(s) => {
            let body = s.strip_prefix(['+', '-']).unwrap_or(s);
            let (whole, fraction) = body.split_once('.').unwrap_or((body, "0"));
            let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            if digits(whole) && digits(fraction) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A borrowed view of an item for operators.
#[derive(Clone, Copy, Debug)]
enum Prim<'x> {
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(&'x str),
    Date(&'x str),
    DateTime(&'x str),
    Time(&'x str),
    /// An object or array node.
    Json(&'x Value),
    Resolved(&'x str),
    /// A primitive with only `_name` content: it exists, but has no value to compare.
    Absent,
}

impl Prim<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Prim::Bool(_) => "a Boolean",
            Prim::Int(_) => "an Integer",
            Prim::Dec(_) => "a Decimal",
            Prim::Str(_) => "a String",
            Prim::Date(_) => "a Date",
            Prim::DateTime(_) => "a DateTime",
            Prim::Time(_) => "a Time",
            Prim::Json(_) => "a complex element",
            Prim::Resolved(_) => "a resolved reference",
            Prim::Absent => "an element without a value",
        }
    }
}

fn prim<'x>(item: &'x Item<'_>) -> Prim<'x> {
    match item {
        Item::Boolean(b) => Prim::Bool(*b),
        Item::Integer(i) => Prim::Int(*i),
        Item::Decimal(d) => Prim::Dec(*d),
        Item::String(s) => Prim::Str(s),
        Item::Date(s) => Prim::Date(s),
        Item::DateTime(s) => Prim::DateTime(s),
        Item::Time(s) => Prim::Time(s),
        Item::Resolved { resource_type } => Prim::Resolved(resource_type),
        Item::Node { value, .. } => json_prim(value),
    }
}

fn json_prim(value: &Value) -> Prim<'_> {
    match value {
        Value::Null => Prim::Absent,
        Value::Bool(b) => Prim::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Prim::Int(i),
            None => Prim::Dec(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Prim::Str(s),
        Value::Array(_) | Value::Object(_) => Prim::Json(value),
    }
}

fn literal_prim(literal: &Literal) -> Prim<'_> {
    match literal {
        Literal::Bool(b) => Prim::Bool(*b),
        Literal::Int(i) => Prim::Int(*i),
        Literal::Dec(d) => Prim::Dec(*d),
        Literal::Str(s) => Prim::Str(s),
        Literal::Date(s) => Prim::Date(s),
        Literal::DateTime(s) => Prim::DateTime(s),
        Literal::Time(s) => Prim::Time(s),
    }
}

enum Operand<'x, 'a> {
    Items(Vec<Item<'a>>),
    Literal(&'x Literal),
}

impl Operand<'_, '_> {
    fn len(&self) -> usize {
        match self {
            Operand::Items(items) => items.len(),
            Operand::Literal(_) => 1,
        }
    }

    fn get(&self, i: usize) -> Option<Prim<'_>> {
        match self {
            Operand::Items(items) => items.get(i).map(prim),
            Operand::Literal(literal) => (i == 0).then(|| literal_prim(literal)),
        }
    }

    fn prims(&self) -> impl Iterator<Item = Prim<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    fn single(&self, what: &str) -> Result<Option<Prim<'_>>> {
        match self.len() {
            0 => Ok(None),
            1 => Ok(self.get(0)),
            n => fail(format!(
                "{what} needs a single item, got a collection of {n}"
            )),
        }
    }
}

fn as_f64(p: Prim<'_>) -> Option<f64> {
    match p {
        Prim::Int(i) => Some(i as f64),
        Prim::Dec(d) => Some(d),
        _ => None,
    }
}

fn temporal_of(p: Prim<'_>) -> Option<DateTimeValue> {
    match p {
        Prim::Str(s) | Prim::Date(s) | Prim::DateTime(s) => temporal::parse_date_time(s),
        _ => None,
    }
}

fn time_of(p: Prim<'_>) -> Option<TimeValue> {
    match p {
        Prim::Str(s) | Prim::Time(s) => temporal::parse_time(s),
        _ => None,
    }
}

/// `=` on single values; `None` is FHIRPath's empty result.
fn prim_eq(a: Prim<'_>, b: Prim<'_>) -> Option<bool> {
    let ordering_eq = |o: Option<Ordering>| o.map(|o| o == Ordering::Equal);
    match (a, b) {
        (Prim::Absent, _) | (_, Prim::Absent) => None,
        (Prim::Bool(x), Prim::Bool(y)) => Some(x == y),
        (Prim::Int(x), Prim::Int(y)) => Some(x == y),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => Some(as_f64(a) == as_f64(b)),
        (Prim::Str(x), Prim::Str(y)) => Some(x == y),
        (Prim::Date(_) | Prim::DateTime(_), Prim::Str(_) | Prim::Date(_) | Prim::DateTime(_))
        | (Prim::Str(_), Prim::Date(_) | Prim::DateTime(_)) => {
            match (temporal_of(a), temporal_of(b)) {
                (Some(x), Some(y)) => ordering_eq(temporal::compare_date_times(&x, &y)),
                _ => Some(false),
            }
        }
        (Prim::Time(_), Prim::Str(_) | Prim::Time(_)) | (Prim::Str(_), Prim::Time(_)) => {
            match (time_of(a), time_of(b)) {
                (Some(x), Some(y)) => ordering_eq(temporal::compare_times(&x, &y)),
                _ => Some(false),
            }
        }
        (Prim::Json(x), Prim::Json(y)) => Some(x == y),
        (Prim::Resolved(x), Prim::Resolved(y)) => Some(x == y),
        _ => Some(false),
    }
}

/// Digits after the point as a decimal prints (1.0 has one), 0 for an integer.
fn decimal_places(p: Prim<'_>) -> i32 {
    match p {
        Prim::Dec(d) => format_decimal(d)
            .split_once('.')
            .map_or(0, |(_, f)| i32::try_from(f.len()).unwrap_or(0)),
        _ => 0,
    }
}

/// `~` on single values: strings ignore case and runs of whitespace, decimals compare at the
/// coarser precision, and differing date precisions are simply not equivalent.
fn prim_equiv(a: Prim<'_>, b: Prim<'_>) -> bool {
    match (a, b) {
        (Prim::Absent, Prim::Absent) => true,
        (Prim::Str(x), Prim::Str(y)) => {
            let words = |s: &str| {
                s.split_whitespace()
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
            };
            words(x) == words(y)
        }
        (Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) | (Prim::Int(_), Prim::Dec(_)) => {
            let (Some(x), Some(y)) = (as_f64(a), as_f64(b)) else {
                return false;
            };
            let places = decimal_places(a).min(decimal_places(b)).min(15);
            let scale = 10f64.powi(places);
            (x * scale).round() == (y * scale).round()
        }
        _ => {
            if matches!(a, Prim::Date(_) | Prim::DateTime(_))
                || matches!(b, Prim::Date(_) | Prim::DateTime(_))
            {
                return match (temporal_of(a), temporal_of(b)) {
                    (Some(x), Some(y)) => {
                        temporal::same_precision_date_times(&x, &y)
                            && temporal::compare_date_times(&x, &y) == Some(Ordering::Equal)
                    }
                    _ => false,
                };
            }
            if matches!(a, Prim::Time(_)) || matches!(b, Prim::Time(_)) {
                return match (time_of(a), time_of(b)) {
                    (Some(x), Some(y)) => {
                        temporal::same_precision_times(&x, &y)
                            && temporal::compare_times(&x, &y) == Some(Ordering::Equal)
                    }
                    _ => false,
                };
            }
            prim_eq(a, b) == Some(true)
        }
    }
}

fn collection_eq(a: &Operand<'_, '_>, b: &Operand<'_, '_>) -> Option<bool> {
    if a.len() == 0 || b.len() == 0 {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut result = Some(true);
    for (x, y) in a.prims().zip(b.prims()) {
        match prim_eq(x, y) {
            Some(false) => return Some(false),
            None => result = None,
            Some(true) => {}
        }
    }
    result
}

fn collection_equiv(a: &Operand<'_, '_>, b: &Operand<'_, '_>) -> bool {
    a.len() == b.len() && a.prims().all(|x| b.prims().any(|y| prim_equiv(x, y)))
}

fn membership(
    item: &Operand<'_, '_>,
    collection: &Operand<'_, '_>,
    op: &str,
) -> Result<Option<bool>> {
    let Some(needle) = item.single(op)? else {
        return Ok(None);
    };
    Ok(Some(
        collection.prims().any(|p| prim_eq(needle, p) == Some(true)),
    ))
}

fn contains_item(collection: &[Item<'_>], item: &Item<'_>) -> bool {
    let needle = prim(item);
    collection
        .iter()
        .any(|other| prim_eq(needle, prim(other)) == Some(true))
}

/// A Quantity's value and unit, for comparing Ranges' and Durations' bounds.
struct QuantityView<'v> {
    value: f64,
    system: Option<&'v Value>,
    code: Option<&'v Value>,
    unit: Option<&'v Value>,
}

fn quantity(value: &Value) -> Option<QuantityView<'_>> {
    let map = value.as_object()?;
    Some(QuantityView {
        value: map.get("value")?.as_f64()?,
        system: map.get("system"),
        code: map.get("code"),
        unit: map.get("unit"),
    })
}

fn prim_cmp(a: Prim<'_>, b: Prim<'_>) -> Result<Option<Ordering>> {
    let cannot = || fail(format!("cannot compare {} with {}", a.kind(), b.kind()));
    match (a, b) {
        (Prim::Absent, _) | (_, Prim::Absent) => Ok(None),
        (Prim::Int(x), Prim::Int(y)) => Ok(Some(x.cmp(&y))),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => Ok(as_f64(a)
            .zip(as_f64(b))
            .and_then(|(x, y)| x.partial_cmp(&y))),
        (Prim::Str(x), Prim::Str(y)) => {
            // Periods and other date-valued elements carry no type in JSON: strings that are
            // both dates compare as dates, with FHIRPath's partial-precision rule.
            if let (Some(dx), Some(dy)) =
                (temporal::parse_date_time(x), temporal::parse_date_time(y))
            {
                return Ok(temporal::compare_date_times(&dx, &dy));
            }
            if let (Some(tx), Some(ty)) = (temporal::parse_time(x), temporal::parse_time(y)) {
                return Ok(temporal::compare_times(&tx, &ty));
            }
            Ok(Some(x.cmp(y)))
        }
        (Prim::Date(_) | Prim::DateTime(_), Prim::Str(_) | Prim::Date(_) | Prim::DateTime(_))
        | (Prim::Str(_), Prim::Date(_) | Prim::DateTime(_)) => {
            match (temporal_of(a), temporal_of(b)) {
                (Some(x), Some(y)) => Ok(temporal::compare_date_times(&x, &y)),
                _ => cannot(),
            }
        }
        (Prim::Time(_), Prim::Str(_) | Prim::Time(_)) | (Prim::Str(_), Prim::Time(_)) => {
            match (time_of(a), time_of(b)) {
                (Some(x), Some(y)) => Ok(temporal::compare_times(&x, &y)),
                _ => cannot(),
            }
        }
        (Prim::Json(x), Prim::Json(y)) => match (quantity(x), quantity(y)) {
            (Some(x), Some(y)) => {
                let same_unit = if x.code.is_some() || y.code.is_some() {
                    x.system == y.system && x.code == y.code
                } else {
                    x.unit == y.unit
                };
                // Without UCUM conversion, quantities in different units have no order.
                Ok(if same_unit {
                    x.value.partial_cmp(&y.value)
                } else {
                    None
                })
            }
            _ => cannot(),
        },
        _ => cannot(),
    }
}

fn arithmetic<'a>(op: BinOp, a: Prim<'_>, b: Prim<'_>) -> Result<Option<Item<'a>>> {
    let overflow = || fail("integer overflow");
    if matches!(a, Prim::Absent) || matches!(b, Prim::Absent) {
        return Ok(None);
    }
    if let (BinOp::Add, Prim::Str(x), Prim::Str(y)) = (op, a, b) {
        return Ok(Some(Item::String(format!("{x}{y}"))));
    }
    if let (Prim::Int(x), Prim::Int(y)) = (a, b) {
        let result = match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::IntDiv | BinOp::Mod if y == 0 => return Ok(None),
            BinOp::IntDiv => x.checked_div(y),
            BinOp::Mod => x.checked_rem(y),
            BinOp::Div if y == 0 => return Ok(None),
            BinOp::Div => return Ok(Some(Item::Decimal(x as f64 / y as f64))),
            _ => return fail(format!("{op:?} is not arithmetic")),
        };
        return match result {
            Some(n) => Ok(Some(Item::Integer(n))),
            None => overflow(),
        };
    }
    let (Some(x), Some(y)) = (as_f64(a), as_f64(b)) else {
        return fail(format!(
            "cannot apply {op:?} to {} and {}",
            a.kind(),
            b.kind()
        ));
    };
    Ok(match op {
        BinOp::Add => Some(Item::Decimal(x + y)),
        BinOp::Sub => Some(Item::Decimal(x - y)),
        BinOp::Mul => Some(Item::Decimal(x * y)),
        _ if y == 0.0 => None,
        BinOp::Div => Some(Item::Decimal(x / y)),
        BinOp::Mod => Some(Item::Decimal(x % y)),
        BinOp::IntDiv => {
            let q = (x / y).trunc();
            if q.is_finite() && q.abs() < 9.0e18 {
                Some(Item::Integer(q as i64))
            } else {
                return overflow();
            }
        }
        _ => return fail(format!("{op:?} is not arithmetic")),
    })
}

/// Union's duplicate removal, hashed so that `descendants()` unions stay linear.
fn dedup<'a>(items: Vec<Item<'a>>) -> Vec<Item<'a>> {
    if items.len() < 2 {
        return items;
    }
    let mut out: Vec<Item<'a>> = Vec::with_capacity(items.len());
    let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
    for item in items {
        let bucket = buckets.entry(item_hash(&item)).or_default();
        if bucket
            .iter()
            .any(|&i| out.get(i).is_some_and(|seen| same_item(seen, &item)))
        {
            continue;
        }
        bucket.push(out.len());
        out.push(item);
    }
    out
}

/// Which items can be equal to each other for duplicate removal.
fn category(p: Prim<'_>) -> u8 {
    match p {
        Prim::Bool(_) => 1,
        Prim::Int(_) | Prim::Dec(_) => 2,
        Prim::Str(_) => 3,
        Prim::Date(_) | Prim::DateTime(_) => 4,
        Prim::Time(_) => 5,
        Prim::Json(_) => 6,
        Prim::Resolved(_) => 7,
        Prim::Absent => 8,
    }
}

fn same_item(a: &Item<'_>, b: &Item<'_>) -> bool {
    let (pa, pb) = (prim(a), prim(b));
    if category(pa) != category(pb) {
        return false;
    }
    match (a, b) {
        (
            Item::Node {
                value: Value::Null,
                primitive_element: ea,
                ..
            },
            Item::Node {
                value: Value::Null,
                primitive_element: eb,
                ..
            },
        ) => ea == eb,
        _ => prim_eq(pa, pb) == Some(true),
    }
}

fn item_hash(item: &Item<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    let p = prim(item);
    category(p).hash(&mut h);
    match p {
        Prim::Bool(b) => b.hash(&mut h),
        Prim::Int(_) | Prim::Dec(_) => {
            // Integer 1 and Decimal 1.0 are equal, and so must hash alike.
            let x = as_f64(p).unwrap_or(0.0);
            let x = if x == 0.0 { 0.0 } else { x };
            x.to_bits().hash(&mut h);
        }
        Prim::Str(s) | Prim::Resolved(s) => s.hash(&mut h),
        // Equal instants may be written in different zones: only the kind is hashed.
        Prim::Date(_) | Prim::DateTime(_) | Prim::Time(_) => {}
        Prim::Json(v) => hash_json(v, &mut h, 0),
        Prim::Absent => {
            if let Item::Node {
                primitive_element: Some(e),
                ..
            } = item
            {
                hash_json(e, &mut h, 0);
            }
        }
    }
    h.finish()
}

/// Consistent with `Value`'s equality, which ignores object key order.
fn hash_json(value: &Value, h: &mut DefaultHasher, depth: usize) {
    match value {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => b.hash(h),
        Value::Number(n) => n.as_f64().unwrap_or(0.0).to_bits().hash(h),
        Value::String(s) => s.hash(h),
        Value::Array(items) => {
            items.len().hash(h);
            if depth < 16 {
                for item in items {
                    hash_json(item, h, depth + 1);
                }
            }
        }
        Value::Object(map) => {
            map.len().hash(h);
            if depth < 16 {
                let mut sum = 0u64;
                for (k, v) in map {
                    let mut entry = DefaultHasher::new();
                    k.hash(&mut entry);
                    hash_json(v, &mut entry, depth + 1);
                    sum = sum.wrapping_add(entry.finish());
                }
                sum.hash(h);
            }
        }
    }
}
