//! Tokens of the FHIRPath grammar, with their byte offsets for error messages.

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// A plain or backtick-delimited identifier. Keywords (`and`, `is`, `true`...) are plain
    /// identifiers here: whether one is a keyword depends on where the parser meets it, and a
    /// delimited one never is.
    Ident {
        name: String,
        delimited: bool,
    },
    Str(String),
    /// The digits as written, so that the parser decides between Integer and Decimal.
    Number(String),
    /// `@...` without the `@`.
    DateTime(String),
    /// `%name`, `%'name'` or ``%`name` ``.
    Env(String),
    /// `$this`, `$index`, `$total` without the `$`.
    Special(String),
    Sym(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Longest symbols first so that `<=` is not read as `<` then `=`.
const SYMBOLS: [&str; 22] = [
    "<=", ">=", "!=", "!~", ".", "[", "]", "(", ")", "{", "}", ",", "+", "-", "*", "/", "&", "|",
    "<", ">", "=", "~",
];

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_trivia()?;
        let pos = lexer.pos;
        let Some(&b) = lexer.bytes.get(pos) else {
            tokens.push(Token { tok: Tok::Eof, pos });
            return Ok(tokens);
        };
        let tok = match b {
            b'\'' => Tok::Str(lexer.quoted(b'\'')?),
            b'`' => Tok::Ident {
                name: lexer.quoted(b'`')?,
                delimited: true,
            },
            b'0'..=b'9' => Tok::Number(lexer.number()),
            b'@' => {
                lexer.pos += 1;
                Tok::DateTime(lexer.date_time_literal(pos)?)
            }
            b'%' => {
                lexer.pos += 1;
                match lexer.bytes.get(lexer.pos) {
                    Some(b'\'') => Tok::Env(lexer.quoted(b'\'')?),
                    Some(b'`') => Tok::Env(lexer.quoted(b'`')?),
                    Some(c) if is_ident_start(*c) => Tok::Env(lexer.identifier().to_owned()),
                    _ => return Err(ParseError::new("expected a name after '%'", pos)),
                }
            }
            b'$' => {
                lexer.pos += 1;
                match lexer.bytes.get(lexer.pos) {
                    Some(c) if is_ident_start(*c) => Tok::Special(lexer.identifier().to_owned()),
                    _ => return Err(ParseError::new("expected a name after '$'", pos)),
                }
            }
            c if is_ident_start(c) => Tok::Ident {
                name: lexer.identifier().to_owned(),
                delimited: false,
            },
            _ => {
                let rest = &lexer.text[pos..];
                match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                    Some(sym) => {
                        lexer.pos += sym.len();
                        Tok::Sym(sym)
                    }
                    None => {
                        let shown = rest.chars().next().unwrap_or(' ');
                        return Err(ParseError::new(
                            format!("unexpected character '{shown}'"),
                            pos,
                        ));
                    }
                }
            }
        };
        tokens.push(Token { tok, pos });
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

struct Lexer<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

impl<'t> Lexer<'t> {
    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek_at(0), self.peek_at(1)) {
                (Some(c), _) if c.is_ascii_whitespace() => self.pos += 1,
                (Some(b'/'), Some(b'/')) => {
                    while let Some(c) = self.peek_at(0) {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.pos;
                    match self.text[self.pos + 2..].find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => return Err(ParseError::new("unterminated comment", start)),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn identifier(&mut self) -> &'t str {
        let start = self.pos;
        while self.peek_at(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn number(&mut self) -> String {
        let start = self.pos;
        while self.peek_at(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        // A '.' not followed by a digit is an invocation (`5.toString()`), not a fraction.
        if self.peek_at(0) == Some(b'.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            while self.peek_at(0).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        self.text[start..self.pos].to_owned()
    }

    /// A `'string'` or `` `identifier` `` with FHIRPath escapes.
    fn quoted(&mut self, quote: u8) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(ParseError::new("unterminated string", start));
            };
            self.pos += c.len_utf8();
            if c as u32 == u32::from(quote) {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escape_pos = self.pos - 1;
            let Some(e) = self.text[self.pos..].chars().next() else {
                return Err(ParseError::new("unterminated string", start));
            };
            self.pos += e.len_utf8();
            match e {
                '\'' | '"' | '`' | '\\' | '/' => out.push(e),
                'f' => out.push('\u{0c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => out.push(self.unicode_escape(escape_pos)?),
                // The grammar allows no other escape, but regular expressions written for
                // matches() often carry `\d` or `\s`: keeping the backslash preserves their
                // meaning instead of rejecting the whole expression.
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }

    fn hex4(&mut self, escape_pos: usize) -> Result<u32, ParseError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ParseError::new("\\u must be followed by 4 hex digits", escape_pos))?;
        self.pos += 4;
        u32::from_str_radix(digits, 16)
            .map_err(|_| ParseError::new("invalid \\u escape", escape_pos))
    }

    fn unicode_escape(&mut self, escape_pos: usize) -> Result<char, ParseError> {
        let first = self.hex4(escape_pos)?;
        let code = if (0xD800..0xDC00).contains(&first) {
            // A UTF-16 surrogate pair written as two escapes.
            if self.text[self.pos..].starts_with("\\u") {
                self.pos += 2;
                let second = self.hex4(escape_pos)?;
                if !(0xDC00..0xE000).contains(&second) {
                    return Err(ParseError::new(
                        "unpaired surrogate in \\u escape",
                        escape_pos,
                    ));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            } else {
                return Err(ParseError::new(
                    "unpaired surrogate in \\u escape",
                    escape_pos,
                ));
            }
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| ParseError::new("invalid \\u escape", escape_pos))
    }

    fn digits(&mut self, n: usize) -> bool {
        let ok = (0..n).all(|i| self.peek_at(i).is_some_and(|c| c.is_ascii_digit()));
        if ok {
            self.pos += n;
        }
        ok
    }

    /// The text of `@2020-01-01T10:00:00Z`, `@2020`, `@T10:30` and the like (after the `@`).
    /// The shape is checked here; the ranges of the parts are checked by the parser.
    fn date_time_literal(&mut self, at: usize) -> Result<String, ParseError> {
        let start = self.pos;
        let bad = || ParseError::new("malformed date/time literal", at);
        if self.peek_at(0) == Some(b'T') {
            self.pos += 1;
            if !self.time_part() {
                return Err(bad());
            }
            return Ok(self.text[start..self.pos].to_owned());
        }
        if !self.digits(4) {
            return Err(bad());
        }
        if self.peek_at(0) == Some(b'-') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            if !self.digits(2) {
                return Err(bad());
            }
            if self.peek_at(0) == Some(b'-') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit())
            {
                self.pos += 1;
                if !self.digits(2) {
                    return Err(bad());
                }
            }
        }
        if self.peek_at(0) == Some(b'T') {
            self.pos += 1;
            if self.peek_at(0).is_some_and(|c| c.is_ascii_digit()) {
                if !self.time_part() {
                    return Err(bad());
                }
                self.time_zone();
            }
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn time_part(&mut self) -> bool {
        if !self.digits(2) {
            return false;
        }
        for _ in 0..2 {
            if self.peek_at(0) == Some(b':') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit())
            {
                self.pos += 1;
                if !self.digits(2) {
                    return false;
                }
            } else {
                return true;
            }
        }
        if self.peek_at(0) == Some(b'.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            while self.peek_at(0).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        true
    }

    fn time_zone(&mut self) {
        match self.peek_at(0) {
            Some(b'Z') => self.pos += 1,
            Some(b'+' | b'-') => {
                // Only an exact `hh:mm` makes it an offset; otherwise it is an operator.
                let shape = [true, true, false, true, true];
                let is_offset = shape.iter().enumerate().all(|(i, digit)| {
                    self.peek_at(1 + i).is_some_and(|c| {
                        if *digit {
                            c.is_ascii_digit()
                        } else {
                            c == b':'
                        }
                    })
                });
                if is_offset {
                    self.pos += 6;
                }
            }
            _ => {}
        }
    }
}
