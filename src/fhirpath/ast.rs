//! The parsed form of an expression. Every node records its height so that the parser can
//! refuse trees deep enough to exhaust the stack when they are evaluated or dropped.

use regex::Regex;

#[derive(Clone, Debug)]
pub(crate) struct Ast {
    pub kind: Kind,
    pub height: usize,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// `{}`
    Empty,
    Literal(Literal),
    This,
    Index,
    Env(EnvVar),
    /// A name navigated from `base`, or from `$this` when there is no base (where a type name
    /// matching the focus selects the focus itself).
    Member {
        base: Option<Box<Ast>>,
        name: String,
        /// `_name`, where FHIR JSON keeps a primitive's id and extensions; built once here so
        /// that navigation does not allocate.
        underscore: String,
    },
    Call {
        base: Option<Box<Ast>>,
        func: Func,
        args: Vec<Ast>,
    },
    Indexer {
        base: Box<Ast>,
        index: Box<Ast>,
    },
    Negate(Box<Ast>),
    Binary {
        op: BinOp,
        lhs: Box<Ast>,
        rhs: Box<Ast>,
    },
    Is(Box<Ast>, TypeSpec),
    As(Box<Ast>, TypeSpec),
}

impl Ast {
    pub fn new(kind: Kind) -> Ast {
        let child = |a: &Ast| a.height;
        let below = match &kind {
            Kind::Empty | Kind::Literal(_) | Kind::This | Kind::Index | Kind::Env(_) => 0,
            Kind::Member { base, .. } => base.as_deref().map_or(0, child),
            Kind::Call { base, args, .. } => base
                .as_deref()
                .map_or(0, child)
                .max(args.iter().map(child).max().unwrap_or(0)),
            Kind::Indexer { base, index } => child(base).max(child(index)),
            Kind::Negate(a) | Kind::Is(a, _) | Kind::As(a, _) => child(a),
            Kind::Binary { lhs, rhs, .. } => child(lhs).max(child(rhs)),
        };
        Ast {
            kind,
            height: below + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(String),
    Date(String),
    DateTime(String),
    Time(String),
}

#[derive(Clone, Debug)]
pub(crate) enum EnvVar {
    Resource,
    RootResource,
    Context,
    /// `%ucum`, `%sct`, `%loinc`, `%vs-x`, `%ext-x`: constants known at parse time.
    Constant(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

impl BinOp {
    /// FHIRPath precedence, higher binds tighter; `is`/`as` sit at 8, between `+` and `|`.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Mul | BinOp::Div | BinOp::IntDiv | BinOp::Mod => 10,
            BinOp::Add | BinOp::Sub | BinOp::Concat => 9,
            BinOp::Union => 7,
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => 6,
            BinOp::Eq | BinOp::Ne | BinOp::Equiv | BinOp::NotEquiv => 5,
            BinOp::In | BinOp::Contains => 4,
            BinOp::And => 3,
            BinOp::Or | BinOp::Xor => 2,
            BinOp::Implies => 1,
        }
    }
}

pub(crate) const TYPE_OP_PRECEDENCE: u8 = 8;

/// A type name as written, `FHIR.` / `System.` qualifier split off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Clone, Debug)]
pub(crate) enum Func {
    Exists,
    Empty,
    Count,
    Where,
    Select,
    All,
    First,
    Last,
    Tail,
    Skip,
    Take,
    Single,
    Not,
    HasValue,
    Children,
    Descendants,
    Resolve,
    OfType(TypeSpec),
    As(TypeSpec),
    Is(TypeSpec),
    Iif,
    Distinct,
    IsDistinct,
    Union,
    Combine,
    Intersect,
    Exclude,
    SubsetOf,
    SupersetOf,
    AllTrue,
    AnyTrue,
    AllFalse,
    AnyFalse,
    Contains,
    StartsWith,
    EndsWith,
    /// The regex is compiled at parse time when the pattern is a literal.
    Matches(Option<Regex>),
    ReplaceMatches(Option<Regex>),
    Length,
    Substring,
    Upper,
    Lower,
    Trim,
    IndexOf,
    Replace,
    ToString,
    ToInteger,
    ToDecimal,
    Trace,
    Extension,
    MemberOf,
    HtmlChecks,
    ConformsTo,
    Now,
    Today,
}

pub(crate) struct Signature {
    pub func: Func,
    pub min: usize,
    pub max: usize,
}

/// The functions this evaluator knows, by name; `None` for an unknown (or unsupported) one.
pub(crate) fn signature(name: &str) -> Option<Signature> {
    let sig = |func, min, max| Some(Signature { func, min, max });
    let any_type = TypeSpec {
        namespace: None,
        name: String::new(),
    };
    match name {
        "exists" => sig(Func::Exists, 0, 1),
        "empty" => sig(Func::Empty, 0, 0),
        "count" => sig(Func::Count, 0, 0),
        "where" => sig(Func::Where, 1, 1),
        "select" => sig(Func::Select, 1, 1),
        "all" => sig(Func::All, 1, 1),
        "first" => sig(Func::First, 0, 0),
        "last" => sig(Func::Last, 0, 0),
        "tail" => sig(Func::Tail, 0, 0),
        "skip" => sig(Func::Skip, 1, 1),
        "take" => sig(Func::Take, 1, 1),
        "single" => sig(Func::Single, 0, 0),
        "not" => sig(Func::Not, 0, 0),
        "hasValue" => sig(Func::HasValue, 0, 0),
        "children" => sig(Func::Children, 0, 0),
        "descendants" => sig(Func::Descendants, 0, 0),
        "resolve" => sig(Func::Resolve, 0, 0),
        "ofType" => sig(Func::OfType(any_type), 1, 1),
        "as" => sig(Func::As(any_type), 1, 1),
        "is" => sig(Func::Is(any_type), 1, 1),
        "iif" => sig(Func::Iif, 2, 3),
        "distinct" => sig(Func::Distinct, 0, 0),
        "isDistinct" => sig(Func::IsDistinct, 0, 0),
        "union" => sig(Func::Union, 1, 1),
        "combine" => sig(Func::Combine, 1, 1),
        "intersect" => sig(Func::Intersect, 1, 1),
        "exclude" => sig(Func::Exclude, 1, 1),
        "subsetOf" => sig(Func::SubsetOf, 1, 1),
        "supersetOf" => sig(Func::SupersetOf, 1, 1),
        "allTrue" => sig(Func::AllTrue, 0, 0),
        "anyTrue" => sig(Func::AnyTrue, 0, 0),
        "allFalse" => sig(Func::AllFalse, 0, 0),
        "anyFalse" => sig(Func::AnyFalse, 0, 0),
        "contains" => sig(Func::Contains, 1, 1),
        "startsWith" => sig(Func::StartsWith, 1, 1),
        "endsWith" => sig(Func::EndsWith, 1, 1),
        "matches" => sig(Func::Matches(None), 1, 1),
        "replaceMatches" => sig(Func::ReplaceMatches(None), 2, 2),
        "length" => sig(Func::Length, 0, 0),
        "substring" => sig(Func::Substring, 1, 2),
        "upper" => sig(Func::Upper, 0, 0),
        "lower" => sig(Func::Lower, 0, 0),
        "trim" => sig(Func::Trim, 0, 0),
        "indexOf" => sig(Func::IndexOf, 1, 1),
        "replace" => sig(Func::Replace, 2, 2),
        "toString" => sig(Func::ToString, 0, 0),
        "toInteger" => sig(Func::ToInteger, 0, 0),
        "toDecimal" => sig(Func::ToDecimal, 0, 0),
        "trace" => sig(Func::Trace, 1, 2),
        "extension" => sig(Func::Extension, 1, 1),
        "memberOf" => sig(Func::MemberOf, 1, 1),
        "htmlChecks" => sig(Func::HtmlChecks, 0, 0),
        "conformsTo" => sig(Func::ConformsTo, 1, 1),
        "now" => sig(Func::Now, 0, 0),
        "today" => sig(Func::Today, 0, 0),
        _ => None,
    }
}
