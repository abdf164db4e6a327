//! Reading terms written in Erlang syntax, for command lines and tests:
//! `{echo, [1, 2, <<"hi">>], #{a => 1.5}}`.
//!
//! Supported: atoms (bare and quoted), integers of any size (with `_`
//! separators and `Base#Digits`), floats, `$c` characters, strings
//! (adjacent literals concatenate), lists (with `| Tail`), tuples, maps,
//! binaries and bitstrings (`<<1, 2:4, "abc", "é"/utf8, -1:16/little>>`)
//! and `fun M:F/A`. Escapes are Erlang's: `\n`, `\x{41}`, `\101`, `\^A`, ….
//! A trailing `.` is allowed, as are `%` comments.
//!
//! Not supported: pids, ports, references and closures (they have no
//! literal syntax), variables, expressions and records.
//!
//! A string whose characters all fit in a byte becomes [`Term::String`];
//! one with wider characters becomes a [`Term::List`] of code points.

use bytes::Bytes;

use crate::format::is_atom_char;
use crate::term::{Atom, BigInt, Export, Term};

/// How deeply the parser lets brackets nest. Terms typed by hand are
/// shallow; the limit keeps the recursive parser far from the end of a
/// thread's stack (it uses about 0.5 KiB per level in release builds).
pub const MAX_PARSE_DEPTH: usize = 256;

/// Why text could not be read as a term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at byte {offset}")]
#[non_exhaustive]
pub struct ParseError {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

/// Reads one term in Erlang syntax.
///
/// ```
/// let t = erl_term::parse("{echo, [1,2,<<\"hi\">>], #{a => 1.5}}").unwrap();
/// assert_eq!(t.to_string(), "{echo,[1,2,<<\"hi\">>],#{a => 1.5}}");
/// ```
pub fn parse(text: &str) -> Result<Term, ParseError> {
    let mut p = Parser {
        src: text,
        pos: 0,
        depth: 0,
    };
    let t = p.term()?;
    p.skip_ws();
    if p.peek() == Some('.') {
        p.pos += 1;
        p.skip_ws();
    }
    if p.pos != text.len() {
        return Err(p.err("unexpected text after the term"));
    }
    Ok(t)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.pos += c.len_utf8();
                }
                Some('%') => {
                    let end = self
                        .rest()
                        .find('\n')
                        .map_or(self.src.len(), |i| self.pos + i);
                    self.pos = end;
                }
                _ => return,
            }
        }
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Result<(), ParseError> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{s}`")))
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return Err(self.err("terms nested too deeply"));
        }
        Ok(())
    }

    fn term(&mut self) -> Result<Term, ParseError> {
        self.skip_ws();
        let c = self.peek().ok_or_else(|| self.err("expected a term"))?;
        match c {
            '{' => {
                self.enter()?;
                self.pos += 1;
                let items = self.seq('}')?;
                self.depth -= 1;
                Ok(Term::Tuple(items))
            }
            '[' => {
                self.enter()?;
                self.pos += 1;
                let t = self.list()?;
                self.depth -= 1;
                Ok(t)
            }
            '#' => {
                self.enter()?;
                self.pos += 1;
                self.expect("{")?;
                let t = self.map()?;
                self.depth -= 1;
                Ok(t)
            }
            '<' if self.peek2() == Some('<') => {
                self.pos += 2;
                self.binary()
            }
            '"' => {
                let chars = self.strings()?;
                Ok(chars_to_term(chars))
            }
            '\'' => {
                self.pos += 1;
                let chars = self.quoted('\'')?;
                let name: String = chars.into_iter().collect();
                self.atom(&name)
            }
            '$' => {
                self.pos += 1;
                let ch = self.char_literal()?;
                Ok(Term::Integer(i64::from(u32::from(ch))))
            }
            '-' | '+' => {
                self.pos += 1;
                self.skip_ws();
                if !self.peek().is_some_and(|c| c.is_ascii_digit() || c == '$') {
                    return Err(self.err("expected a number after the sign"));
                }
                let t = self.term()?;
                if c == '+' {
                    return Ok(t);
                }
                negate(t).ok_or_else(|| self.err("expected a number after the sign"))
            }
            '0'..='9' => self.number(),
            c if c.is_ascii_lowercase()
                || (('\u{df}'..='\u{ff}').contains(&c) && c != '\u{f7}') =>
            {
                let start = self.pos;
                while self.peek().is_some_and(is_atom_char) {
                    self.bump();
                }
                let word = &self.src[start..self.pos];
                if word == "fun" {
                    return self.export();
                }
                self.atom(word)
            }
            c if c.is_uppercase() || c == '_' => Err(self.err("variables are not terms")),
            _ => Err(self.err(format!("unexpected `{c}`"))),
        }
    }

    fn atom(&self, name: &str) -> Result<Term, ParseError> {
        Atom::new(name)
            .map(Term::Atom)
            .map_err(|e| self.err(e.to_string()))
    }

    /// Comma-separated terms up to `close`; the opening bracket is consumed.
    fn seq(&mut self, close: char) -> Result<Vec<Term>, ParseError> {
        let mut items = Vec::new();
        let mut close_buf = [0u8; 4];
        let close: &str = close.encode_utf8(&mut close_buf);
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.term()?);
            if self.eat(",") {
                continue;
            }
            self.expect(close)?;
            return Ok(items);
        }
    }

    fn list(&mut self) -> Result<Term, ParseError> {
        let mut items = Vec::new();
        if self.eat("]") {
            return Ok(Term::Nil);
        }
        loop {
            items.push(self.term()?);
            if self.eat(",") {
                continue;
            }
            if self.eat("|") {
                let tail = self.term()?;
                self.expect("]")?;
                return Ok(cons(items, tail));
            }
            self.expect("]")?;
            return Ok(Term::List(items));
        }
    }

    fn map(&mut self) -> Result<Term, ParseError> {
        let mut pairs = Vec::new();
        if self.eat("}") {
            return Ok(Term::Map(pairs));
        }
        loop {
            let k = self.term()?;
            self.expect("=>")?;
            let v = self.term()?;
            pairs.push((k, v));
            if self.eat(",") {
                continue;
            }
            self.expect("}")?;
            return Ok(Term::Map(pairs));
        }
    }

    fn export(&mut self) -> Result<Term, ParseError> {
        let module = self.atom_only()?;
        self.expect(":")?;
        let function = self.atom_only()?;
        self.expect("/")?;
        self.skip_ws();
        let arity = match self.number()? {
            Term::Integer(a) => u8::try_from(a).map_err(|_| self.err("arity out of range"))?,
            _ => return Err(self.err("expected an arity")),
        };
        Ok(Term::Export(Box::new(Export {
            module,
            function,
            arity,
        })))
    }

    fn atom_only(&mut self) -> Result<Atom, ParseError> {
        match self.term()? {
            Term::Atom(a) => Ok(a),
            _ => Err(self.err("expected an atom")),
        }
    }

    fn digits(&mut self, radix: u32) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_digit(radix) {
                s.push(c);
            } else if c == '_' && self.peek2().is_some_and(|d| d.is_digit(radix)) && !s.is_empty() {
                // Digit separators, as in 1_000_000.
            } else {
                break;
            }
            self.pos += 1;
        }
        s
    }

    fn number(&mut self) -> Result<Term, ParseError> {
        let start = self.pos;
        let int = self.digits(10);
        if int.is_empty() {
            return Err(self.err("expected a number"));
        }
        if self.peek() == Some('#') {
            self.pos += 1;
            let radix: u32 = int
                .parse()
                .ok()
                .filter(|r| (2..=36).contains(r))
                .ok_or_else(|| self.err("radix must be 2..36"))?;
            let digits = self.digits(radix);
            if digits.is_empty() {
                return Err(self.err("expected digits after `#`"));
            }
            return BigInt::from_str_radix(&digits, radix)
                .map(Term::from)
                .ok_or_else(|| self.err("bad integer"));
        }
        if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            let frac = self.digits(10);
            let mut text = format!("{int}.{frac}");
            if matches!(self.peek(), Some('e' | 'E')) {
                let save = self.pos;
                self.pos += 1;
                let mut exp = String::from("e");
                if let Some(s @ ('+' | '-')) = self.peek() {
                    exp.push(s);
                    self.pos += 1;
                }
                let d = self.digits(10);
                if d.is_empty() {
                    self.pos = save;
                } else {
                    exp.push_str(&d);
                    text.push_str(&exp);
                }
            }
            let f: f64 = text.parse().map_err(|_| ParseError {
                offset: start,
                message: "bad float".into(),
            })?;
            if !f.is_finite() {
                return Err(ParseError {
                    offset: start,
                    message: "float out of range".into(),
                });
            }
            return Ok(Term::Float(f));
        }
        match int.parse::<i64>() {
            Ok(i) => Ok(Term::Integer(i)),
            Err(_) => BigInt::from_str_radix(&int, 10)
                .map(Term::from)
                .ok_or_else(|| self.err("bad integer")),
        }
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> Result<Vec<char>, ParseError> {
        let mut chars = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() != Some('"') {
                return Ok(chars);
            }
            self.pos += 1;
            chars.extend(self.quoted('"')?);
        }
    }

    /// The body of a quoted string or atom; the opening quote is consumed.
    fn quoted(&mut self, quote: char) -> Result<Vec<char>, ParseError> {
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return Err(self.err("unterminated quoted text")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => out.push(self.escape()?),
                Some(c) => out.push(c),
            }
        }
    }

    fn char_literal(&mut self) -> Result<char, ParseError> {
        match self.bump() {
            None => Err(self.err("expected a character after `$`")),
            Some('\\') => self.escape(),
            Some(c) => Ok(c),
        }
    }

    /// An escape sequence; the backslash is consumed.
    fn escape(&mut self) -> Result<char, ParseError> {
        let c = self.bump().ok_or_else(|| self.err("unterminated escape"))?;
        let code = match c {
            'b' => 8,
            'd' => 127,
            'e' => 27,
            'f' => 12,
            'n' => 10,
            'r' => 13,
            's' => 32,
            't' => 9,
            'v' => 11,
            '0'..='7' => {
                let mut v = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                v
            }
            'x' => {
                if self.peek() == Some('{') {
                    self.pos += 1;
                    let hex = self.digits(16);
                    self.expect("}")?;
                    u32::from_str_radix(&hex, 16).map_err(|_| self.err("bad \\x{...} escape"))?
                } else {
                    let start = self.pos;
                    for _ in 0..2 {
                        if self.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                            self.pos += 1;
                        }
                    }
                    u32::from_str_radix(&self.src[start..self.pos], 16)
                        .map_err(|_| self.err("bad \\x escape"))?
                }
            }
            '^' => {
                let ctl = self.bump().ok_or_else(|| self.err("unterminated escape"))?;
                u32::from(ctl) & 0x1f
            }
            other => u32::from(other),
        };
        char::from_u32(code).ok_or_else(|| self.err("escape is not a character"))
    }

    fn binary(&mut self) -> Result<Term, ParseError> {
        let mut bits = BitWriter::default();
        if self.eat(">>") {
            return Ok(Term::Binary(Bytes::new()));
        }
        loop {
            self.segment(&mut bits)?;
            if self.eat(",") {
                continue;
            }
            self.expect(">>")?;
            return Ok(bits.finish());
        }
    }

    fn segment(&mut self, out: &mut BitWriter) -> Result<(), ParseError> {
        self.skip_ws();
        let start = self.pos;
        enum Value {
            Int(i128),
            Chars(Vec<char>),
        }
        let value = if self.peek() == Some('"') {
            Value::Chars(self.strings()?)
        } else {
            let t = self.term()?;
            match t {
                Term::Integer(i) => Value::Int(i128::from(i)),
                Term::BigInt(b) => Value::Int(
                    b.to_i128()
                        .ok_or_else(|| self.err("integer too large for a segment"))?,
                ),
                _ => {
                    return Err(ParseError {
                        offset: start,
                        message: "binary segments must be integers or strings".into(),
                    })
                }
            }
        };
        let mut size: Option<u32> = None;
        if self.eat(":") {
            self.skip_ws();
            size = match self.number()? {
                Term::Integer(n) if (0..=128).contains(&n) => Some(n as u32),
                _ => return Err(self.err("segment size must be 0..128 bits")),
            };
        }
        let (mut utf8, mut little) = (false, false);
        if self.eat("/") {
            loop {
                self.skip_ws();
                let s = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                    self.pos += 1;
                }
                match &self.src[s..self.pos] {
                    "utf8" => utf8 = true,
                    "little" => little = true,
                    "big" | "integer" | "signed" | "unsigned" => {}
                    other => return Err(self.err(format!("unsupported segment type `{other}`"))),
                }
                if !self.eat("-") {
                    break;
                }
            }
        }
        if utf8 && size.is_some() {
            return Err(self.err("utf8 segments take no size"));
        }
        let size = size.unwrap_or(8);
        if little && !size.is_multiple_of(8) {
            return Err(self.err("little-endian segments need a whole number of bytes"));
        }
        let put = |out: &mut BitWriter, v: i128| {
            if little {
                let le = (v as u128).to_le_bytes();
                for b in &le[..(size / 8) as usize] {
                    out.push(u128::from(*b), 8);
                }
            } else {
                out.push(v as u128, size);
            }
        };
        match value {
            Value::Int(v) if utf8 => {
                let c = u32::try_from(v)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| self.err("not a Unicode code point"))?;
                out.extend(c.encode_utf8(&mut [0u8; 4]).as_bytes());
            }
            Value::Int(v) => put(out, v),
            Value::Chars(chars) if utf8 => {
                let s: String = chars.into_iter().collect();
                out.extend(s.as_bytes());
            }
            Value::Chars(chars) => {
                for c in chars {
                    if size == 8 && u32::from(c) > 255 {
                        return Err(ParseError {
                            offset: start,
                            message: "character above 255 in a binary string; add /utf8".into(),
                        });
                    }
                    put(out, i128::from(u32::from(c)));
                }
            }
        }
        Ok(())
    }
}

/// `[items | tail]`, keeping the tail of an improper list a non-list.
fn cons(mut items: Vec<Term>, tail: Term) -> Term {
    match tail {
        Term::Nil => Term::List(items),
        Term::List(more) => {
            items.extend(more);
            Term::List(items)
        }
        Term::String(s) => {
            items.extend(s.into_iter().map(|b| Term::Integer(i64::from(b))));
            Term::List(items)
        }
        Term::ImproperList(more, t) => {
            items.extend(more);
            Term::ImproperList(items, t)
        }
        t => Term::ImproperList(items, Box::new(t)),
    }
}

fn negate(t: Term) -> Option<Term> {
    match t {
        Term::Integer(i) => Some(match i.checked_neg() {
            Some(n) => Term::Integer(n),
            None => Term::from(-i128::from(i)),
        }),
        Term::BigInt(b) => Some(Term::from(BigInt::from_sign_magnitude(
            !b.is_negative(),
            b.magnitude().to_vec(),
        ))),
        Term::Float(f) => Some(Term::Float(-f)),
        _ => None,
    }
}

fn chars_to_term(chars: Vec<char>) -> Term {
    if chars.is_empty() {
        Term::Nil
    } else if chars.iter().all(|&c| u32::from(c) <= 255) {
        Term::String(chars.into_iter().map(|c| u32::from(c) as u8).collect())
    } else {
        Term::List(
            chars
                .into_iter()
                .map(|c| Term::Integer(i64::from(u32::from(c))))
                .collect(),
        )
    }
}

/// Accumulates bits most significant first, as Erlang's bit syntax does.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte, 0 when it is full (or there is none).
    partial: u32,
}

impl BitWriter {
    /// Appends the low `n` bits of `v`.
    fn push(&mut self, v: u128, n: u32) {
        for i in (0..n).rev() {
            let bit = ((v >> i) & 1) as u8;
            if self.partial == 0 {
                self.bytes.push(0);
            }
            let last = self.bytes.len() - 1;
            self.bytes[last] |= bit << (7 - self.partial);
            self.partial = (self.partial + 1) % 8;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.partial == 0 {
            self.bytes.extend_from_slice(bytes);
        } else {
            for &b in bytes {
                self.push(u128::from(b), 8);
            }
        }
    }

    fn finish(self) -> Term {
        if self.partial == 0 {
            Term::Binary(self.bytes.into())
        } else {
            Term::BitBinary {
                bytes: self.bytes.into(),
                bits: self.partial as u8,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Term {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_issue_example() {
        let t = p("{echo, [1,2,<<\"hi\">>], #{a => 1.5}}");
        assert_eq!(
            t,
            Term::tuple([
                Term::atom("echo"),
                Term::List(vec![
                    Term::Integer(1),
                    Term::Integer(2),
                    Term::binary(&b"hi"[..])
                ]),
                Term::Map(vec![(Term::atom("a"), Term::Float(1.5))]),
            ])
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(p("ok"), Term::atom("ok"));
        assert_eq!(p("'hello world'"), Term::atom("hello world"));
        assert_eq!(p("'a\\'b'"), Term::atom("a'b"));
        assert_eq!(p("node@host"), Term::atom("node@host"));
        assert_eq!(p("héllo"), Term::atom("héllo"));
        assert_eq!(p("42"), Term::Integer(42));
        assert_eq!(p("-42"), Term::Integer(-42));
        assert_eq!(p("- 42"), Term::Integer(-42));
        assert_eq!(p("1_000_000"), Term::Integer(1_000_000));
        assert_eq!(p("16#FF"), Term::Integer(255));
        assert_eq!(p("-16#ff"), Term::Integer(-255));
        assert_eq!(p("2#101"), Term::Integer(5));
        assert_eq!(p("18446744073709551616"), Term::from(1i128 << 64));
        assert_eq!(p("-9223372036854775808"), Term::Integer(i64::MIN));
        assert_eq!(p("1.5"), Term::Float(1.5));
        assert_eq!(p("-0.0"), Term::Float(-0.0));
        assert_eq!(p("1.0e300"), Term::Float(1.0e300));
        assert_eq!(p("2.5E-3"), Term::Float(2.5e-3));
        assert_eq!(p("$a"), Term::Integer(97));
        assert_eq!(p("$\\n"), Term::Integer(10));
        assert_eq!(p("$\\x{436}"), Term::Integer(0x436));
        assert_eq!(p("$\\^A"), Term::Integer(1));
        assert_eq!(p("$\\101"), Term::Integer(65));
        assert_eq!(p("true."), Term::atom("true"));
        assert_eq!(p("  ok % a comment\n"), Term::atom("ok"));
    }

    #[test]
    fn strings_and_lists() {
        assert_eq!(p("\"hi\""), Term::String(b"hi".to_vec()));
        assert_eq!(p("\"hi\" \" there\""), Term::String(b"hi there".to_vec()));
        assert_eq!(p("\"\""), Term::Nil);
        assert_eq!(p("\"a\\nb\\\"\""), Term::String(b"a\nb\"".to_vec()));
        assert_eq!(
            p("\"жук\""),
            Term::List(vec![
                Term::Integer(0x436),
                Term::Integer(0x443),
                Term::Integer(0x43a)
            ])
        );
        assert_eq!(p("[]"), Term::Nil);
        assert_eq!(
            p("[a | b]"),
            Term::ImproperList(vec![Term::atom("a")], Box::new(Term::atom("b")))
        );
        assert_eq!(p("[1 | [2, 3]]"), p("[1,2,3]"));
        assert_eq!(p("[1, 2 | \"ab\"]"), p("[1,2,97,98]"));
        assert_eq!(p("{}"), Term::Tuple(vec![]));
        assert_eq!(p("#{}"), Term::Map(vec![]));
        assert_eq!(
            p("# { a => #{} }"),
            Term::Map(vec![(Term::atom("a"), Term::Map(vec![]))])
        );
        assert_eq!(
            p("fun erlang:abs/1"),
            Term::Export(Box::new(Export {
                module: Atom::new("erlang").unwrap(),
                function: Atom::new("abs").unwrap(),
                arity: 1,
            }))
        );
    }

    #[test]
    fn binaries() {
        assert_eq!(p("<<>>"), Term::binary(vec![]));
        assert_eq!(p("<<1,2,3>>"), Term::binary(vec![1, 2, 3]));
        assert_eq!(p("<<\"hi\", 0>>"), Term::binary(b"hi\0".to_vec()));
        assert_eq!(p("<<\"é\"/utf8>>"), Term::binary("é".as_bytes().to_vec()));
        assert_eq!(p("<<\"é\">>"), Term::binary(vec![0xe9]));
        assert_eq!(p("<<-1>>"), Term::binary(vec![255]));
        assert_eq!(p("<<256:16>>"), Term::binary(vec![1, 0]));
        assert_eq!(p("<<256:16/little>>"), Term::binary(vec![0, 1]));
        assert_eq!(
            p("<<1,2,3:5>>"),
            Term::BitBinary {
                bytes: vec![1, 2, 3 << 3].into(),
                bits: 5
            }
        );
        assert_eq!(
            p("<<1:1>>"),
            Term::BitBinary {
                bytes: vec![0x80].into(),
                bits: 1
            }
        );
        assert_eq!(p("<<1:4, 15:4>>"), Term::binary(vec![0x1f]));
        assert_eq!(
            p("<<$a, 1078/utf8>>"),
            Term::binary("aж".as_bytes().to_vec())
        );
        assert!(parse("<<\"жук\">>").is_err());
        assert!(parse("<<a>>").is_err());
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "{",
            "[1,",
            "X",
            "_",
            "{a b}",
            "#{a}",
            "'abc",
            "\"abc",
            "1.5e",
            "ok ok",
            "<<1:200>>",
            "-a",
            "16#",
            "37#1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse(&"[".repeat(100_000)).is_err());
        assert!(parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn format_then_parse() {
        for s in [
            "{echo,[1,2,<<\"hi\">>],#{a => 1.5}}",
            "[a,'B',\"str\",[],{},<<1,2,3:5>>,-1.0e-10,123456789012345678901234567890]",
            "#{<<\"k\">> => [1|2],{x} => 'hello world'}",
            "fun lists:map/2",
            "<<\"héllo\"/utf8>>",
        ] {
            let t = p(s);
            assert_eq!(t.to_string(), s);
            assert_eq!(p(&t.to_string()), t);
        }
    }
}
