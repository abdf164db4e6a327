//! Bounded printing of terms for logs.
//!
//! A term from a peer can be any size: a 64 KiB binary, a list of a million
//! elements, or a 4 MiB bignum whose decimal form takes minutes to compute
//! (the conversion is quadratic). [`Truncated`] prints at most a given
//! number of characters and stops walking the term once they are written;
//! integers that do not fit an `i128` are shown by size (`<bignum of N bits>`)
//! instead of being converted to decimal at all. Nothing it prints costs
//! more than a bounded amount of work beyond the characters shown.

use std::fmt::{self, Write};

use erl_term::Term;

/// The default bound on a logged term, in characters.
pub const MAX_LOGGED_CHARS: usize = 200;

/// Displays a term in Erlang syntax, cut to at most `max` characters (an
/// ellipsis `...` replaces the rest, within the bound).
#[derive(Debug, Clone, Copy)]
pub struct Truncated<'a> {
    /// The term.
    pub term: &'a Term,
    /// Most characters printed, ellipsis included.
    pub max: usize,
}

impl<'a> Truncated<'a> {
    /// `term` cut to [`MAX_LOGGED_CHARS`].
    pub fn new(term: &'a Term) -> Self {
        Self {
            term,
            max: MAX_LOGGED_CHARS,
        }
    }
}

/// A writer that accepts `room` characters, then fails (which stops the
/// formatting that feeds it).
struct Bounded<'s> {
    out: &'s mut String,
    room: usize,
    full: bool,
}

impl Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.room == 0 {
                self.full = true;
                return Err(fmt::Error);
            }
            self.out.push(c);
            self.room -= 1;
        }
        Ok(())
    }
}

/// Whether a list is all small integers: then the term's own printer
/// (which shows printable lists as strings) is cheap and bounded by the
/// writer.
fn plain_ints(items: &[Term]) -> bool {
    items.iter().all(|t| matches!(t, Term::Integer(_)))
}

fn write_seq(
    w: &mut Bounded<'_>,
    open: char,
    items: &[Term],
    tail: Option<&Term>,
    close: char,
) -> fmt::Result {
    w.write_char(open)?;
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            w.write_char(',')?;
        }
        write_term(w, t)?;
    }
    if let Some(t) = tail {
        w.write_char('|')?;
        write_term(w, t)?;
    }
    w.write_char(close)
}

fn write_term(w: &mut Bounded<'_>, t: &Term) -> fmt::Result {
    match t {
        Term::BigInt(b) => match b.to_i128() {
            Some(v) => write!(w, "{v}"),
            None => {
                let m = b.magnitude();
                let top = m.last().copied().unwrap_or(0);
                let bits = (m.len().saturating_sub(1)) * 8 + (8 - top.leading_zeros() as usize);
                let sign = if b.is_negative() { "-" } else { "" };
                write!(w, "<{sign}bignum of {bits} bits>")
            }
        },
        Term::List(items) if !plain_ints(items) => write_seq(w, '[', items, None, ']'),
        Term::ImproperList(items, tail) => write_seq(w, '[', items, Some(tail), ']'),
        Term::Tuple(items) => write_seq(w, '{', items, None, '}'),
        Term::Map(pairs) => {
            w.write_str("#{")?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    w.write_char(',')?;
                }
                write_term(w, k)?;
                w.write_str(" => ")?;
                write_term(w, v)?;
            }
            w.write_char('}')
        }
        // Values through the bounded printer (a field can be a bignum).
        Term::Record(r) => {
            write!(
                w,
                "#{}:{}{{",
                Term::Atom(r.module.clone()),
                Term::Atom(r.name.clone())
            )?;
            for (i, (k, v)) in r.fields.iter().enumerate() {
                if i > 0 {
                    w.write_char(',')?;
                }
                write!(w, "{} = ", Term::Atom(k.clone()))?;
                write_term(w, v)?;
            }
            w.write_char('}')
        }
        // Leaves (and lists of small integers): the term's own printer,
        // which writes as it goes, so the bounded writer stops it early.
        other => write!(w, "{other}"),
    }
}

impl fmt::Display for Truncated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ELLIPSIS: &str = "...";
        let mut out = String::new();
        let mut w = Bounded {
            out: &mut out,
            room: self.max,
            full: false,
        };
        let r = write_term(&mut w, self.term);
        if r.is_err() && w.full {
            // Make room for the ellipsis within the bound.
            let keep = self.max.saturating_sub(ELLIPSIS.len());
            let cut = out.char_indices().nth(keep).map_or(out.len(), |(i, _)| i);
            out.truncate(cut);
            out.push_str(&ELLIPSIS[..ELLIPSIS.len().min(self.max)]);
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erl_term::BigInt;
    use std::time::Instant;

    fn show(t: &Term, max: usize) -> String {
        Truncated { term: t, max }.to_string()
    }

    #[test]
    fn small_terms_print_as_erlang_does() {
        let t = erl_term::parse(r#"{hello, [1,2,3], <<"bin">>, "str", #{a => 1}}"#).unwrap();
        assert_eq!(show(&t, 200), t.to_string());
        assert_eq!(show(&Term::Integer(-5), 200), "-5");
    }

    #[test]
    fn long_terms_are_cut_to_the_bound() {
        let t = Term::binary(vec![b'x'; 64 * 1024]);
        let s = show(&t, 200);
        assert_eq!(s.chars().count(), 200);
        assert!(s.ends_with("..."));
        let t = Term::List((0..1_000_000).map(|_| Term::atom("a")).collect());
        let s = show(&t, 200);
        assert_eq!(s.chars().count(), 200);
        let t = Term::List((0..1_000_000).map(Term::Integer).collect());
        assert_eq!(show(&t, 50).chars().count(), 50);
        assert_eq!(show(&t, 2), "..");
    }

    #[test]
    fn a_4_mib_bignum_is_not_converted_to_decimal() {
        let mut mag = vec![0u8; 4 << 20];
        mag[(4 << 20) - 1] = 1;
        let t = Term::Tuple(vec![
            Term::atom("big"),
            Term::BigInt(BigInt::from_sign_magnitude(true, mag)),
        ]);
        let t0 = Instant::now();
        let s = show(&t, 200);
        // Decimal conversion would take minutes; this is a length lookup.
        assert!(t0.elapsed().as_secs() < 5, "{:?}", t0.elapsed());
        assert_eq!(s, "{big,<-bignum of 33554425 bits>}");
        // What fits an i128, the value itself; above, the size.
        let mut m = vec![0xff; 16];
        m[15] = 0x7f;
        let b = BigInt::from_sign_magnitude(false, m);
        assert_eq!(show(&Term::BigInt(b), 200), i128::MAX.to_string());
        let b = BigInt::from_sign_magnitude(false, vec![0xff; 16]);
        assert_eq!(show(&Term::BigInt(b), 200), "<bignum of 128 bits>");
    }
}
