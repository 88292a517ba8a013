//! Precedence-climbing parser over the tokens of [`super::lexer`].

use regex::Regex;

use super::ast::{signature, Ast, BinOp, EnvVar, Func, Kind, Literal, TypeSpec};
use super::lexer::{tokenize, Tok, Token};
use super::temporal;
use super::ParseError;

/// Parentheses, function arguments, indexers and unary signs nested deeper than this are
/// refused: the parser recurses on each.
pub(crate) const MAX_NESTING: usize = 64;
/// Trees taller than this are refused: evaluation and drop recurse on each level, and long
/// operator or path chains grow the tree without nesting.
pub(crate) const MAX_HEIGHT: usize = 160;

pub(crate) fn parse(text: &str) -> Result<Ast, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        nesting: 0,
    };
    let ast = parser.expression()?;
    let token = parser.peek();
    if token.tok != Tok::Eof {
        return Err(ParseError::new(
            format!("unexpected {}", describe(&token.tok)),
            token.pos,
        ));
    }
    Ok(ast)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    nesting: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident { name, .. } => format!("'{name}'"),
        Tok::Str(_) => "string literal".to_owned(),
        Tok::Number(n) => format!("number {n}"),
        Tok::DateTime(d) => format!("date/time literal @{d}"),
        Tok::Env(e) => format!("'%{e}'"),
        Tok::Special(s) => format!("'${s}'"),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Eof => "end of expression".to_owned(),
    }
}

/// A word that is an operator between two expressions, never a name there.
fn binary_keyword(name: &str) -> Option<BinOp> {
    Some(match name {
        "div" => BinOp::IntDiv,
        "mod" => BinOp::Mod,
        "in" => BinOp::In,
        "contains" => BinOp::Contains,
        "and" => BinOp::And,
        "or" => BinOp::Or,
        "xor" => BinOp::Xor,
        "implies" => BinOp::Implies,
        _ => return None,
    })
}

enum Infix {
    Binary(BinOp),
    Is,
    As,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `at` never passes it.
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.at.min(last)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.at += 1;
        }
        token
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(&self.peek().tok, Tok::Sym(s) if *s == sym)
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), ParseError> {
        if self.is_sym(sym) {
            self.advance();
            Ok(())
        } else {
            let token = self.peek();
            Err(ParseError::new(
                format!("expected '{sym}', found {}", describe(&token.tok)),
                token.pos,
            ))
        }
    }

    fn build(&self, kind: Kind, pos: usize) -> Result<Ast, ParseError> {
        let ast = Ast::new(kind);
        if ast.height > MAX_HEIGHT {
            return Err(ParseError::new(
                format!("expression is too deeply nested (more than {MAX_HEIGHT} levels)"),
                pos,
            ));
        }
        Ok(ast)
    }

    fn enter(&mut self, pos: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ParseError::new(
                format!("expression nests more than {MAX_NESTING} levels"),
                pos,
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    /// A whole expression inside some bracket: counts as one level of nesting.
    fn nested_expression(&mut self) -> Result<Ast, ParseError> {
        let pos = self.peek().pos;
        self.enter(pos)?;
        let result = self.expression();
        self.leave();
        result
    }

    fn expression(&mut self) -> Result<Ast, ParseError> {
        self.binary(1)
    }

    fn peek_infix(&self) -> Option<Infix> {
        Some(match &self.peek().tok {
            Tok::Sym(s) => Infix::Binary(match *s {
                "*" => BinOp::Mul,
                "/" => BinOp::Div,
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                "&" => BinOp::Concat,
                "|" => BinOp::Union,
                "<" => BinOp::Lt,
                ">" => BinOp::Gt,
                "<=" => BinOp::Le,
                ">=" => BinOp::Ge,
                "=" => BinOp::Eq,
                "!=" => BinOp::Ne,
                "~" => BinOp::Equiv,
                "!~" => BinOp::NotEquiv,
                _ => return None,
            }),
            Tok::Ident {
                name,
                delimited: false,
            } => match name.as_str() {
                "is" => Infix::Is,
                "as" => Infix::As,
                other => Infix::Binary(binary_keyword(other)?),
            },
            _ => return None,
        })
    }

    fn binary(&mut self, min_precedence: u8) -> Result<Ast, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(infix) = self.peek_infix() {
            let precedence = match &infix {
                Infix::Binary(op) => op.precedence(),
                Infix::Is | Infix::As => super::ast::TYPE_OP_PRECEDENCE,
            };
            if precedence < min_precedence {
                break;
            }
            let pos = self.advance().pos;
            let kind = match infix {
                Infix::Is => Kind::Is(Box::new(lhs), self.type_specifier()?),
                Infix::As => Kind::As(Box::new(lhs), self.type_specifier()?),
                Infix::Binary(op) => {
                    // Left associative: the right operand binds only tighter operators.
                    let rhs = self.binary(precedence + 1)?;
                    Kind::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    }
                }
            };
            lhs = self.build(kind, pos)?;
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Ast, ParseError> {
        let token = self.peek().clone();
        let negate = match token.tok {
            Tok::Sym("-") => true,
            Tok::Sym("+") => false,
            _ => return self.postfix(),
        };
        self.advance();
        self.enter(token.pos)?;
        let operand = self.unary();
        self.leave();
        let operand = operand?;
        if !negate {
            return Ok(operand);
        }
        // Fold the sign into a number so that `-1` is a literal, as in the grammar's intent.
        match operand.kind {
            Kind::Literal(Literal::Int(i)) => match i.checked_neg() {
                Some(n) => self.build(Kind::Literal(Literal::Int(n)), token.pos),
                None => Err(ParseError::new("integer literal out of range", token.pos)),
            },
            Kind::Literal(Literal::Dec(d)) => {
                self.build(Kind::Literal(Literal::Dec(-d)), token.pos)
            }
            _ => self.build(Kind::Negate(Box::new(operand)), token.pos),
        }
    }

    fn postfix(&mut self) -> Result<Ast, ParseError> {
        let mut ast = self.term()?;
        loop {
            let pos = self.peek().pos;
            if self.is_sym(".") {
                self.advance();
                let name_token = self.advance();
                let Tok::Ident { name, .. } = name_token.tok else {
                    return Err(ParseError::new(
                        format!(
                            "expected a name after '.', found {}",
                            describe(&name_token.tok)
                        ),
                        name_token.pos,
                    ));
                };
                let kind = if self.is_sym("(") {
                    self.call(Some(Box::new(ast)), &name, name_token.pos)?
                } else {
                    member(Some(Box::new(ast)), name)
                };
                ast = self.build(kind, pos)?;
            } else if self.is_sym("[") {
                self.advance();
                let index = self.nested_expression()?;
                self.expect_sym("]")?;
                let kind = Kind::Indexer {
                    base: Box::new(ast),
                    index: Box::new(index),
                };
                ast = self.build(kind, pos)?;
            } else {
                return Ok(ast);
            }
        }
    }

    fn term(&mut self) -> Result<Ast, ParseError> {
        let token = self.advance();
        let pos = token.pos;
        let kind = match token.tok {
            Tok::Str(s) => Kind::Literal(Literal::Str(s)),
            Tok::Number(n) => Kind::Literal(number(&n, pos)?),
            Tok::DateTime(text) => Kind::Literal(date_time(text, pos)?),
            Tok::Env(name) => Kind::Env(env_var(&name, pos)?),
            Tok::Special(name) => match name.as_str() {
                "this" => Kind::This,
                "index" => Kind::Index,
                _ => {
                    return Err(ParseError::new(
                        format!("unsupported variable ${name}"),
                        pos,
                    ))
                }
            },
            Tok::Sym("(") => {
                let inner = self.nested_expression()?;
                self.expect_sym(")")?;
                return Ok(inner);
            }
            Tok::Sym("{") => {
                self.expect_sym("}")?;
                Kind::Empty
            }
            Tok::Ident { name, delimited } => {
                if !delimited {
                    match name.as_str() {
                        "true" => return self.build(Kind::Literal(Literal::Bool(true)), pos),
                        "false" => return self.build(Kind::Literal(Literal::Bool(false)), pos),
                        // `contains`, `in`, `is` and `as` are names too in the grammar, so
                        // `as(canonical)` at the start of an expression is a call.
                        "div" | "mod" | "and" | "or" | "xor" | "implies" => {
                            return Err(ParseError::new(
                                format!("unexpected keyword '{name}'"),
                                pos,
                            ))
                        }
                        _ => {}
                    }
                }
                if self.is_sym("(") {
                    self.call(None, &name, pos)?
                } else {
                    member(None, name)
                }
            }
            other => {
                return Err(ParseError::new(
                    format!("unexpected {}", describe(&other)),
                    pos,
                ))
            }
        };
        self.build(kind, pos)
    }

    /// Parses `(args)` after a function name.
    fn call(&mut self, base: Option<Box<Ast>>, name: &str, pos: usize) -> Result<Kind, ParseError> {
        let Some(sig) = signature(name) else {
            return Err(ParseError::new(
                format!("unknown or unsupported function '{name}'"),
                pos,
            ));
        };
        self.expect_sym("(")?;
        let mut args = Vec::new();
        if !self.is_sym(")") {
            loop {
                args.push(self.nested_expression()?);
                if self.is_sym(",") {
                    self.advance();
                } else {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        if args.len() < sig.min || args.len() > sig.max {
            let expected = if sig.min == sig.max {
                sig.min.to_string()
            } else {
                format!("{} to {}", sig.min, sig.max)
            };
            return Err(ParseError::new(
                format!(
                    "{name}() takes {expected} argument(s), {} given",
                    args.len()
                ),
                pos,
            ));
        }
        let func = match sig.func {
            Func::OfType(_) | Func::As(_) | Func::Is(_) => {
                let spec = args
                    .first()
                    .and_then(type_from_ast)
                    .ok_or_else(|| ParseError::new(format!("{name}() takes a type name"), pos))?;
                args.clear();
                match sig.func {
                    Func::OfType(_) => Func::OfType(spec),
                    Func::As(_) => Func::As(spec),
                    _ => Func::Is(spec),
                }
            }
            Func::Matches(_) => Func::Matches(literal_regex(args.first(), pos)?),
            Func::ReplaceMatches(_) => Func::ReplaceMatches(literal_regex(args.first(), pos)?),
            other => other,
        };
        Ok(Kind::Call { base, func, args })
    }

    fn type_specifier(&mut self) -> Result<TypeSpec, ParseError> {
        let token = self.advance();
        let Tok::Ident { name: first, .. } = token.tok else {
            return Err(ParseError::new(
                format!("expected a type name, found {}", describe(&token.tok)),
                token.pos,
            ));
        };
        let qualified = self.is_sym(".")
            && matches!(
                self.tokens.get(self.at + 1).map(|t| &t.tok),
                Some(Tok::Ident { .. })
            );
        if qualified {
            self.advance();
            if let Tok::Ident { name, .. } = self.advance().tok {
                return Ok(TypeSpec {
                    namespace: Some(first),
                    name,
                });
            }
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }
}

fn member(base: Option<Box<Ast>>, name: String) -> Kind {
    let underscore = format!("_{name}");
    Kind::Member {
        base,
        name,
        underscore,
    }
}

/// The argument of `is(T)` / `as(T)` / `ofType(T)`, parsed as a path: `T` or `NS.T`.
fn type_from_ast(ast: &Ast) -> Option<TypeSpec> {
    match &ast.kind {
        Kind::Member {
            base: None, name, ..
        } => Some(TypeSpec {
            namespace: None,
            name: name.clone(),
        }),
        Kind::Member {
            base: Some(base),
            name,
            ..
        } => match &base.kind {
            Kind::Member {
                base: None,
                name: namespace,
                ..
            } => Some(TypeSpec {
                namespace: Some(namespace.clone()),
                name: name.clone(),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// FHIRPath regexes are single-line mode: `.` also matches a newline.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))
}

fn literal_regex(arg: Option<&Ast>, pos: usize) -> Result<Option<Regex>, ParseError> {
    match arg.map(|a| &a.kind) {
        Some(Kind::Literal(Literal::Str(pattern))) => compile_regex(pattern)
            .map(Some)
            .map_err(|message| ParseError::new(message, pos)),
        _ => Ok(None),
    }
}

fn number(text: &str, pos: usize) -> Result<Literal, ParseError> {
    if text.contains('.') {
        text.parse::<f64>()
            .map(Literal::Dec)
            .map_err(|_| ParseError::new("invalid decimal literal", pos))
    } else {
        text.parse::<i64>()
            .map(Literal::Int)
            .map_err(|_| ParseError::new("integer literal out of range", pos))
    }
}

fn date_time(text: String, pos: usize) -> Result<Literal, ParseError> {
    let invalid = || ParseError::new(format!("invalid date/time literal @{text}"), pos);
    if let Some(time) = text.strip_prefix('T') {
        temporal::parse_time(time).ok_or_else(invalid)?;
        return Ok(Literal::Time(time.to_owned()));
    }
    if text.contains('T') {
        // `@2020-01-01T` is a dateTime with day precision.
        let trimmed = text.trim_end_matches('T');
        temporal::parse_date_time(trimmed).ok_or_else(invalid)?;
        return Ok(Literal::DateTime(trimmed.to_owned()));
    }
    temporal::parse_date_time(&text).ok_or_else(invalid)?;
    Ok(Literal::Date(text))
}

fn env_var(name: &str, pos: usize) -> Result<EnvVar, ParseError> {
    Ok(match name {
        "resource" => EnvVar::Resource,
        "rootResource" => EnvVar::RootResource,
        "context" => EnvVar::Context,
        "ucum" => EnvVar::Constant("http://unitsofmeasure.org".to_owned()),
        "sct" => EnvVar::Constant("http://snomed.info/sct".to_owned()),
        "loinc" => EnvVar::Constant("http://loinc.org".to_owned()),
        other => {
            if let Some(vs) = other.strip_prefix("vs-") {
                EnvVar::Constant(format!("http://hl7.org/fhir/ValueSet/{vs}"))
            } else if let Some(ext) = other.strip_prefix("ext-") {
                EnvVar::Constant(format!("http://hl7.org/fhir/StructureDefinition/{ext}"))
            } else {
                return Err(ParseError::new(
                    format!("unknown environment variable %{other}"),
                    pos,
                ));
            }
        }
    })
}
