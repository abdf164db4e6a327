//! Fuzzing entry point for the term codec, shared by the cargo-fuzz target
//! `etf_decode` in `fuzz/` (which needs a nightly compiler) and the stable
//! test that replays the committed corpus (`tests/corpus_replay.rs`). Both
//! include this file with `#[path]`; it uses only erl-term's public API.
//!
//! The input is decoded every way the crate offers: [`decode`] (a whole
//! standalone term), [`decode_used`] (a standalone term at the front),
//! [`decode_term`] (no version byte, as after a distribution header),
//! [`decode_with_cache`] (with an atom cache) and [`DecodeOptions`] with a
//! small depth limit. The entry points must agree with each other, and
//! whatever decodes must:
//! - re-encode to `1 + encoded_len` bytes that decode to an equal term and
//!   that are a fixed point (a decoded term is canonical: encoding it,
//!   decoding and encoding again gives the same bytes); the compressed
//!   encoding must decode to an equal term too;
//! - print (`format`) without panicking, and, when it holds no pid, port,
//!   reference or closure (which have no Erlang syntax) and is not nested
//!   deeper than the parser allows, read back with `parse` as an equal term.

#![allow(dead_code)]

use erl_term::{
    decode, decode_term, decode_used, decode_with_cache, encode, encode_compressed, encode_to,
    encoded_len, format, parse, Atom, DecodeError, DecodeOptions, Term,
};

/// Nesting the parser accepts (`erl_term::parse::MAX_PARSE_DEPTH` is 256),
/// with a margin.
const PARSE_DEPTH: usize = 250;

/// Terms up to this encoded size are also put through compression.
const COMPRESS_LIMIT: usize = 1 << 16;

/// The atom cache used for ATOM_CACHE_REF: even indexes hit.
fn cache(i: u8) -> Option<Atom> {
    i.is_multiple_of(2)
        .then(|| Atom::new(&format!("cached{i}")).expect("short atom"))
}

/// The fuzz target's entry point.
pub(crate) fn fuzz_etf_decode(data: &[u8]) {
    // A standalone term filling the input.
    let whole = decode(data);
    if let Ok(t) = &whole {
        check_term(t);
    }

    // A standalone term at the front.
    match decode_used(data) {
        Ok((t, used)) => {
            assert!(used <= data.len() && used >= 2, "used {used}");
            // The bytes it used are a term of their own.
            assert_eq!(decode(&data[..used]).as_ref(), Ok(&t), "prefix decode");
            match &whole {
                Ok(w) => {
                    assert_eq!(used, data.len());
                    assert_eq!(w, &t);
                }
                Err(DecodeError::TrailingBytes(n)) => assert_eq!(*n, data.len() - used),
                Err(e) => panic!("decode failed with {e:?} where decode_used succeeded"),
            }
            if whole.is_err() {
                check_term(&t);
            }
        }
        Err(e) => assert!(whole.is_err(), "decode_used failed ({e:?}), decode did not"),
    }

    // A term without a version byte; with the atom cache, and with depth
    // limits.
    let bare = decode_term(data);
    if let Ok((t, used)) = &bare {
        assert!(*used >= 1 && *used <= data.len());
        assert_eq!(encoded_len(t) + 1, encode(t).len());
        let mut out = Vec::new();
        encode_to(t, &mut out);
        let (back, n) = decode_term(&out).expect("re-encoded bare term decodes");
        assert_eq!(n, out.len());
        assert_eq!(&back, t, "bare re-encode");
        if data.first() != Some(&erl_term::tag::VERSION) {
            check_term(t);
        }
    }
    match decode_with_cache(data, &cache) {
        Ok((t, used)) => {
            if let Ok((t0, used0)) = &bare {
                assert_eq!(
                    (t0, *used0),
                    (&t, used),
                    "the cache changed a cache-free term"
                );
            }
            // Cached atoms are written out in full.
            let mut out = Vec::new();
            encode_to(&t, &mut out);
            assert_eq!(decode_term(&out), Ok((t, out.len())), "cached re-encode");
        }
        Err(DecodeError::AtomCacheMiss(i)) => assert!(cache(i).is_none()),
        Err(e) => {
            if let Ok(ok) = &bare {
                panic!("decode_with_cache failed ({e:?}) where decode_term gave {ok:?}");
            }
        }
    }
    for depth in [0, 1, 4] {
        let limited = DecodeOptions::new().max_depth(depth);
        match limited.decode_term(data) {
            Ok(r) => assert_eq!(Ok(&r), bare.as_ref(), "depth {depth}"),
            Err(DecodeError::TooDeep(d)) => assert_eq!(d, depth),
            Err(e) => {
                // A depth limit can only add TooDeep; other errors are
                // shared with the unlimited decoder (possibly another one
                // found earlier, so only failure is compared).
                assert!(
                    bare.is_err(),
                    "depth {depth}: {e:?} but unlimited decode succeeded"
                );
            }
        }
    }
    // A small inflation cap only adds refusals.
    if let Ok(t) = DecodeOptions::new().max_inflated(64).decode(data) {
        assert_eq!(Ok(t), whole);
    }
}

/// What must hold of every decoded term.
fn check_term(t: &Term) {
    let bytes = encode(t);
    assert_eq!(bytes.len(), 1 + encoded_len(t), "encoded_len");
    let back = decode(&bytes).unwrap_or_else(|e| panic!("re-encoding of {t:?} fails: {e}"));
    assert_eq!(&back, t, "re-encode round trip");
    assert_eq!(encode(&back), bytes, "re-encoding is not a fixed point");
    if bytes.len() <= COMPRESS_LIMIT {
        let packed = encode_compressed(t, 6);
        assert_eq!(decode(&packed).as_ref(), Ok(t), "compressed round trip");
    }

    let text = format(t);
    assert_eq!(text, t.to_string());
    if parseable(t, 0) {
        match parse(&text) {
            Ok(p) => assert_eq!(&p, t, "parse(format(t)) for {text}"),
            Err(e) => panic!("cannot parse the printed term {text}: {e}"),
        }
    }
}

/// No pid, port, reference or closure anywhere, and nested at most
/// [`PARSE_DEPTH`] brackets deep.
fn parseable(t: &Term, depth: usize) -> bool {
    match t {
        Term::Pid(_) | Term::Port(_) | Term::Reference(_) | Term::Fun(_) => false,
        Term::Tuple(v) | Term::List(v) => {
            depth < PARSE_DEPTH && v.iter().all(|e| parseable(e, depth + 1))
        }
        Term::ImproperList(v, tail) => {
            depth < PARSE_DEPTH
                && v.iter().all(|e| parseable(e, depth + 1))
                && parseable(tail, depth + 1)
        }
        Term::Map(m) => {
            depth < PARSE_DEPTH
                && m.iter()
                    .all(|(k, v)| parseable(k, depth + 1) && parseable(v, depth + 1))
        }
        _ => true,
    }
}
