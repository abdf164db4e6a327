//! Printing terms in Erlang syntax, as `io_lib:format("~tp", [T])` does on
//! an OTP 25 node with the default printable range (`+pc latin1`), except
//! that the output is never wrapped over several lines.
//!
//! - Atoms are quoted when they would not read back as atoms (any
//!   character outside Latin-1 forces quotes).
//! - Lists of printable Latin-1 codes print as strings, `"hi"`.
//! - Binaries print as `<<"text">>` when printable, `<<"tëxt"/utf8>>` when
//!   printable UTF-8, else as `<<1,2,3>>`; bitstrings end in `Value:Bits`.
//! - Floats use the shortest text that reads back as the same float, in
//!   fixed or scientific notation, whichever is shorter (fixed on a tie,
//!   scientific from 2^53 up), always with a `.`: `1.0`, `0.1`, `1.0e300`.
//! - Identifiers show their node instead of OTP's local node index, since
//!   this crate has no node table: `<node@host.42.0>`,
//!   `#Ref<node@host.3.2.1>` (id words most significant first, as OTP
//!   prints them), `#Port<node@host.5>`, `#Fun<module.OldIndex.OldUniq>`,
//!   `fun m:f/1`.
//! - Native records print in EEP 79's syntax, `#module:name{a = 1,b = 2}`
//!   (the `exported` flag is not shown); [`parse`](crate::parse()) does
//!   not read them back.

use std::fmt::{self, Write};

use crate::term::{last_byte_mask, Term};

/// `term` in Erlang syntax; the same as `term.to_string()`.
pub fn format(term: &Term) -> String {
    term.to_string()
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_term(self, f)
    }
}

fn write_term(t: &Term, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match t {
        Term::Atom(a) => write_atom(a.as_str(), f),
        Term::Integer(i) => write!(f, "{i}"),
        Term::BigInt(b) => f.write_str(&b.to_decimal()),
        Term::Float(x) => f.write_str(&format_float(*x)),
        Term::Binary(b) => write_bits(b, 8, f),
        Term::BitBinary { bytes, bits } => write_bits(bytes, *bits, f),
        Term::Nil => f.write_str("[]"),
        Term::String(s) => {
            if s.is_empty() {
                f.write_str("[]")
            } else if s.iter().all(|&c| is_printable(u32::from(c))) {
                write_quoted(s.iter().map(|&c| char::from(c)), '"', f)
            } else {
                f.write_char('[')?;
                for (i, c) in s.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_char(']')
            }
        }
        Term::List(items) => {
            if let Some(chars) = printable_list(items) {
                write_quoted(chars.into_iter(), '"', f)
            } else {
                write_seq('[', items, None, ']', f)
            }
        }
        Term::ImproperList(items, tail) => write_seq('[', items, Some(tail), ']', f),
        Term::Tuple(items) => write_seq('{', items, None, '}', f),
        Term::Map(pairs) => {
            f.write_str("#{")?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    f.write_char(',')?;
                }
                write_term(k, f)?;
                f.write_str(" => ")?;
                write_term(v, f)?;
            }
            f.write_char('}')
        }
        Term::Pid(p) => {
            f.write_char('<')?;
            write_atom(p.node.as_str(), f)?;
            write!(f, ".{}.{}>", p.id, p.serial)
        }
        Term::Port(p) => {
            f.write_str("#Port<")?;
            write_atom(p.node.as_str(), f)?;
            write!(f, ".{}>", p.id)
        }
        Term::Reference(r) => {
            f.write_str("#Ref<")?;
            write_atom(r.node.as_str(), f)?;
            for id in r.ids.iter().rev() {
                write!(f, ".{id}")?;
            }
            f.write_char('>')
        }
        Term::Export(e) => {
            f.write_str("fun ")?;
            write_atom(e.module.as_str(), f)?;
            f.write_char(':')?;
            write_atom(e.function.as_str(), f)?;
            write!(f, "/{}", e.arity)
        }
        Term::Fun(fun) => {
            f.write_str("#Fun<")?;
            write_atom(fun.module.as_str(), f)?;
            write!(f, ".{}.{}>", fun.old_index, fun.old_uniq)
        }
        Term::Record(r) => {
            f.write_char('#')?;
            write_atom(r.module.as_str(), f)?;
            f.write_char(':')?;
            write_atom(r.name.as_str(), f)?;
            f.write_char('{')?;
            for (i, (k, v)) in r.fields.iter().enumerate() {
                if i > 0 {
                    f.write_char(',')?;
                }
                write_atom(k.as_str(), f)?;
                f.write_str(" = ")?;
                write_term(v, f)?;
            }
            f.write_char('}')
        }
    }
}

fn write_seq(
    open: char,
    items: &[Term],
    tail: Option<&Term>,
    close: char,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    f.write_char(open)?;
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            f.write_char(',')?;
        }
        write_term(t, f)?;
    }
    if let Some(tail) = tail {
        // A tail that is itself a list continues the same brackets, as in
        // Erlang where [1|[2]] is [1,2].
        match tail {
            Term::Nil => {}
            Term::List(more) if !items.is_empty() => {
                for t in more {
                    f.write_char(',')?;
                    write_term(t, f)?;
                }
            }
            _ => {
                f.write_char('|')?;
                write_term(tail, f)?;
            }
        }
    }
    f.write_char(close)
}

/// The characters of a list that `~p` would print as a string.
fn printable_list(items: &[Term]) -> Option<Vec<char>> {
    items
        .iter()
        .map(|t| match t {
            Term::Integer(i) => u32::try_from(*i)
                .ok()
                .filter(|&c| is_printable(c))
                .and_then(char::from_u32),
            _ => None,
        })
        .collect()
}

/// OTP's `io_lib:printable_latin1_list` character set.
fn is_printable(c: u32) -> bool {
    matches!(c, 32..=126 | 160..=255 | 8..=13 | 27)
}

fn write_bits(bytes: &[u8], bits: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let partial = !bytes.is_empty() && bits != 0 && bits < 8;
    if !partial {
        if bytes.is_empty() {
            return f.write_str("<<>>");
        }
        if !bytes.is_ascii() {
            if let Ok(s) = std::str::from_utf8(bytes) {
                if s.chars().all(|c| is_printable(u32::from(c))) {
                    f.write_str("<<")?;
                    write_quoted(s.chars(), '"', f)?;
                    return f.write_str("/utf8>>");
                }
            }
        }
        if bytes.iter().all(|&c| is_printable(u32::from(c))) {
            f.write_str("<<")?;
            write_quoted(bytes.iter().map(|&c| char::from(c)), '"', f)?;
            return f.write_str(">>");
        }
    }
    f.write_str("<<")?;
    let whole = if partial {
        &bytes[..bytes.len() - 1]
    } else {
        bytes
    };
    for (i, b) in whole.iter().enumerate() {
        if i > 0 {
            f.write_char(',')?;
        }
        write!(f, "{b}")?;
    }
    if partial {
        if !whole.is_empty() {
            f.write_char(',')?;
        }
        let last = bytes[bytes.len() - 1] & last_byte_mask(bits);
        write!(f, "{}:{}", last >> (8 - bits), bits)?;
    }
    f.write_str(">>")
}

/// Prints `chars` between `quote`s with OTP's escapes (`io_lib:write_string`).
fn write_quoted(
    chars: impl Iterator<Item = char>,
    quote: char,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    f.write_char(quote)?;
    for c in chars {
        match c {
            _ if c == quote => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            '\\' => f.write_str("\\\\")?,
            ' '..='~' | '\u{a0}'..='\u{ff}' => f.write_char(c)?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{b}' => f.write_str("\\v")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            '\u{1b}' => f.write_str("\\e")?,
            '\u{7f}' => f.write_str("\\d")?,
            _ if u32::from(c) < 256 => write!(f, "\\{:03o}", u32::from(c))?,
            // Only atoms reach here with wider characters (lists and
            // binaries holding them do not print as text); `~tp` writes
            // them as they are.
            _ => f.write_char(c)?,
        }
    }
    f.write_char(quote)
}

/// Words that must be quoted to be read as atoms (OTP 25's `erl_scan`
/// reserved words; `maybe` and `else` only became reserved later).
const RESERVED: &[&str] = &[
    "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
    "catch", "cond", "div", "end", "fun", "if", "let", "not", "of", "or", "orelse", "receive",
    "rem", "try", "when", "xor",
];

fn is_atom_start(c: char) -> bool {
    c.is_ascii_lowercase() || (('\u{df}'..='\u{ff}').contains(&c) && c != '\u{f7}')
}

pub(crate) fn is_atom_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || c == '_'
        || c == '@'
        || (('\u{c0}'..='\u{ff}').contains(&c) && c != '\u{d7}' && c != '\u{f7}')
}

fn atom_needs_quotes(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if is_atom_start(c) => {}
        _ => return true,
    }
    !chars.all(is_atom_char) || RESERVED.contains(&name)
}

fn write_atom(name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if atom_needs_quotes(name) {
        write_quoted(name.chars(), '\'', f)
    } else {
        f.write_str(name)
    }
}

/// Erlang's shortest round-trip float text (`io_lib_format:fwrite_g/1`).
pub fn format_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    if !x.is_finite() {
        // Not an Erlang value; printed so that nothing panics.
        return format!("{x}");
    }
    let sign = if x < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the shortest digits that round-trip.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let scientific = if digits.len() == 1 {
        format!("{digits}.0e{exp}")
    } else {
        format!("{}.{}e{exp}", &digits[..1], &digits[1..])
    };
    // From 2^53 up not every integer is representable, so OTP always uses
    // scientific notation there to avoid suggesting false precision.
    if x.abs() >= 9_007_199_254_740_992.0 {
        return format!("{sign}{scientific}");
    }
    let fixed = if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    };
    if fixed.len() <= scientific.len() {
        format!("{sign}{fixed}")
    } else {
        format!("{sign}{scientific}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{Atom, BigInt, Export, Pid, Reference};

    #[test]
    fn floats_match_otp() {
        // Expected strings printed by OTP 25.2.3 (`~p`).
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (120.0, "120.0"),
            (1000.0, "1.0e3"),
            (1200.0, "1.2e3"),
            (1234.5, "1234.5"),
            (123456789.0, "123456789.0"),
            (1.0e15, "1.0e15"),
            (1.0e16, "1.0e16"),
            (1.0e21, "1.0e21"),
            (1.2345e21, "1.2345e21"),
            (123456789012345680000.0, "1.2345678901234568e20"),
            (1.0e300, "1.0e300"),
            (0.001, "0.001"),
            (0.0001, "0.0001"),
            (0.0005, "0.0005"),
            (0.00005, "5.0e-5"),
            (1.0e-5, "1.0e-5"),
            (0.00012345, "1.2345e-4"),
            (1.25e-4, "1.25e-4"),
            (5.0e-324, "5.0e-324"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
            (2.5e-10, "2.5e-10"),
            (-3.75, "-3.75"),
            (9007199254740993.0, "9.007199254740992e15"),
            (4.0e15, "4.0e15"),
            (12345.678, "12345.678"),
            (1234567890123456.0, "1234567890123456.0"),
            (12345678901234567.0, "1.2345678901234568e16"),
            (0.012, "0.012"),
            (1.23e12, "1.23e12"),
        ];
        for &(x, want) in cases {
            assert_eq!(format_float(x), want, "{x:e}");
        }
    }

    fn a(s: &str) -> Term {
        Term::atom(s)
    }

    #[test]
    fn atoms_match_otp() {
        let cases: &[(&str, &str)] = &[
            ("ok", "ok"),
            ("Ok", "'Ok'"),
            ("_x", "'_x'"),
            ("a b", "'a b'"),
            ("a@b", "a@b"),
            ("a.b", "'a.b'"),
            ("", "''"),
            ("héllo", "héllo"),
            ("жук", "'жук'"),
            ("and", "'and'"),
            ("maybe", "maybe"),
            ("end", "'end'"),
            ("a'b", "'a\\'b'"),
            ("a\\b", "'a\\\\b'"),
            ("a\nb", "'a\\nb'"),
            ("ÿ", "ÿ"),
            ("ß", "ß"),
            ("Ä", "'Ä'"),
            ("a÷", "'a÷'"),
            ("aB9_@", "aB9_@"),
            ("x-y", "'x-y'"),
            ("a\u{0}", "'a\\000'"),
            ("a\u{7f}", "'a\\d'"),
            ("a\u{1}b", "'a\\001b'"),
        ];
        for &(name, want) in cases {
            assert_eq!(a(name).to_string(), want, "{name:?}");
        }
    }

    #[test]
    fn lists_and_strings() {
        let s = |b: &[u8]| Term::String(b.to_vec());
        assert_eq!(s(b"hi").to_string(), "\"hi\"");
        assert_eq!(
            s(b"a\"b\\c\n\t\r\x1b\x0b\x08\x0c").to_string(),
            r#""a\"b\\c\n\t\r\e\v\b\f""#
        );
        assert_eq!(s(&[7]).to_string(), "[7]");
        assert_eq!(s(&[0]).to_string(), "[0]");
        assert_eq!(s(&[160, 255]).to_string(), "\"\u{a0}ÿ\"");
        assert_eq!(s(&[127]).to_string(), "[127]");
        assert_eq!(s(&[128]).to_string(), "[128]");
        let l = |v: &[i64]| Term::List(v.iter().map(|&i| Term::Integer(i)).collect());
        assert_eq!(l(&[1046]).to_string(), "[1046]");
        assert_eq!(l(&[104, 233, 108, 108, 111]).to_string(), "\"héllo\"");
        assert_eq!(l(&[1, 2, 3]).to_string(), "[1,2,3]");
        assert_eq!(l(&[97, 300]).to_string(), "[97,300]");
        assert_eq!(
            Term::ImproperList(vec![Term::Integer(97)], Box::new(a("b"))).to_string(),
            "[97|b]"
        );
        assert_eq!(Term::Nil.to_string(), "[]");
        let nested = Term::List(vec![l(&[1, 2]), Term::Nil]);
        assert_eq!(nested.to_string(), "[[1,2],[]]");
    }

    #[test]
    fn binaries() {
        let b = |v: &[u8]| Term::binary(v.to_vec());
        assert_eq!(b(b"").to_string(), "<<>>");
        assert_eq!(b(b"hi").to_string(), "<<\"hi\">>");
        assert_eq!(b(&[1, 2, 3]).to_string(), "<<1,2,3>>");
        assert_eq!(b("héllo".as_bytes()).to_string(), "<<\"héllo\"/utf8>>");
        assert_eq!(b(&[104, 233]).to_string(), "<<\"hé\">>");
        assert_eq!(b(b"a\nb").to_string(), "<<\"a\\nb\">>");
        assert_eq!(
            b("жук".as_bytes()).to_string(),
            "<<208,182,209,131,208,186>>"
        );
        assert_eq!(b(b"\"").to_string(), "<<\"\\\"\">>");
        assert_eq!(b(&[7]).to_string(), "<<7>>");
        assert_eq!(b(&[120, 0]).to_string(), "<<120,0>>");
        let bits = |v: &[u8], n| Term::BitBinary {
            bytes: v.to_vec().into(),
            bits: n,
        };
        assert_eq!(bits(&[1, 2, 3 << 3], 5).to_string(), "<<1,2,3:5>>");
        assert_eq!(bits(&[97, 98, 3 << 6], 2).to_string(), "<<97,98,3:2>>");
        assert_eq!(bits(&[0x80], 1).to_string(), "<<1:1>>");
    }

    #[test]
    fn containers_and_identifiers() {
        let m = Term::Map(vec![
            (a("a"), Term::Integer(1)),
            (Term::Map(vec![]), Term::Map(vec![(a("x"), a("y"))])),
            (
                Term::binary(&b"k"[..]),
                Term::List(vec![Term::Float(1.5), Term::Tuple(vec![])]),
            ),
        ]);
        assert_eq!(
            m.to_string(),
            "#{a => 1,#{} => #{x => y},<<\"k\">> => [1.5,{}]}"
        );
        let t = Term::tuple([
            a("a"),
            Term::String(b"b".to_vec()),
            Term::Nil,
            Term::binary(vec![]),
        ]);
        assert_eq!(t.to_string(), "{a,\"b\",[],<<>>}");
        let node = Atom::new("nonode@nohost").unwrap();
        let pid = Term::Pid(Pid {
            node: node.clone(),
            id: 9,
            serial: 0,
            creation: 0,
        });
        assert_eq!(pid.to_string(), "<nonode@nohost.9.0>");
        let r = Term::Reference(Reference {
            node,
            creation: 0,
            ids: vec![1, 2, 3],
        });
        assert_eq!(r.to_string(), "#Ref<nonode@nohost.3.2.1>");
        let e = Term::Export(Box::new(Export {
            module: Atom::new("erlang").unwrap(),
            function: Atom::new("abs").unwrap(),
            arity: 1,
        }));
        assert_eq!(e.to_string(), "fun erlang:abs/1");
        let big =
            Term::from(BigInt::from_str_radix("1267650600228229401496703205376", 10).unwrap());
        assert_eq!(big.to_string(), "1267650600228229401496703205376");
        assert_eq!(
            Term::from(-(1i128 << 70)).to_string(),
            "-1180591620717411303424"
        );
    }
}
