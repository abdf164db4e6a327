//! OTP 29's native records (RECORD_EXT, tag 67) on hand-built vectors.
//!
//! No OTP 29 is installable here, so the vectors are built by hand from the
//! layout erts itself writes and reads (`erts/emulator/beam/external.c`,
//! `enc_term_int`'s `RECORD_DEF` case and `dec_term`'s `RECORD_EXT` case, at
//! garazdawi/otp@40b45c1359afcb09d4757029cb07fc8b559ddb4d; see
//! `erl_term::tag::RECORD_EXT`): `67`, `u32` field count N, flags byte
//! (0 or 1: exported), module atom, name atom, N field-name atoms, N values.

use erl_term::{
    decode, encode, encoded_len, Atom, DecodeError, DecodeOptions, Record, Term, DEFAULT_MAX_DEPTH,
};

fn atom(s: &str) -> Atom {
    Atom::new(s).unwrap()
}

fn record(module: &str, name: &str, exported: bool, fields: Vec<(&str, Term)>) -> Term {
    Term::Record(Box::new(Record {
        module: atom(module),
        name: atom(name),
        exported,
        fields: fields.into_iter().map(|(k, v)| (atom(k), v)).collect(),
    }))
}

/// `SMALL_ATOM_UTF8_EXT` bytes of `s`.
fn a(s: &str) -> Vec<u8> {
    let mut v = vec![119, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// RECORD_EXT header: tag, count, flags, module, name, field names.
fn header(n: u32, flags: u8, module: &str, name: &str, fields: &[&str]) -> Vec<u8> {
    let mut v = vec![131, 67];
    v.extend_from_slice(&n.to_be_bytes());
    v.push(flags);
    v.extend(a(module));
    v.extend(a(name));
    for f in fields {
        v.extend(a(f));
    }
    v
}

/// (bytes, the term they hold): decoded to the term, re-encoded to the same
/// bytes, and `encoded_len` agrees.
fn vectors() -> Vec<(Vec<u8>, Term)> {
    let mut out = Vec::new();

    // #m:r{a = 1, b = <<"x">>}, exported.
    let mut b = header(2, 1, "m", "r", &["a", "b"]);
    b.extend([97, 1]);
    b.extend([109, 0, 0, 0, 1, b'x']);
    out.push((
        b,
        record(
            "m",
            "r",
            true,
            vec![("a", Term::Integer(1)), ("b", Term::binary(&b"x"[..]))],
        ),
    ));

    // A record with no fields, not exported.
    out.push((
        header(0, 0, "shapes", "empty", &[]),
        record("shapes", "empty", false, vec![]),
    ));

    // Field order is the definition's, not alphabetical: z before a.
    let mut b = header(2, 0, "m", "point", &["z", "a"]);
    b.extend([98, 255, 255, 255, 255]); // -1
    b.extend([106]); // []
    out.push((
        b,
        record(
            "m",
            "point",
            false,
            vec![("z", Term::Integer(-1)), ("a", Term::Nil)],
        ),
    ));

    // Nested: {ok, #m:outer{inner = #m:inner{v = 'héllo'}, list = [1, 2]}},
    // and a UTF-8 field name.
    let mut b = vec![131, 104, 2];
    b.extend(a("ok"));
    b.extend(&header(2, 1, "m", "outer", &["inner", "list"])[1..]);
    b.extend(&header(1, 0, "m", "inner", &["vä"])[1..]);
    b.extend(a("héllo"));
    b.extend([107, 0, 2, 1, 2]); // STRING_EXT [1,2]
    let inner = record("m", "inner", false, vec![("vä", Term::atom("héllo"))]);
    out.push((
        b,
        Term::tuple([
            Term::atom("ok"),
            record(
                "m",
                "outer",
                true,
                vec![("inner", inner), ("list", Term::String(vec![1, 2]))],
            ),
        ]),
    ));
    out
}

#[test]
fn vectors_decode_and_reencode_byte_exact() {
    for (bytes, term) in vectors() {
        let got = decode(&bytes).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
        assert_eq!(got, term, "{bytes:?}");
        assert_eq!(encode(&got), bytes, "re-encoding {got}");
        assert_eq!(encode(&term), bytes, "encoding {term}");
        assert_eq!(encoded_len(&term) + 1, bytes.len(), "{term}");
    }
}

#[test]
fn records_print_in_eep79_syntax() {
    let v = vectors();
    assert_eq!(v[0].1.to_string(), "#m:r{a = 1,b = <<\"x\">>}");
    assert_eq!(v[1].1.to_string(), "#shapes:empty{}");
    assert_eq!(
        v[3].1.to_string(),
        "{ok,#m:outer{inner = #m:inner{vä = héllo},list = [1,2]}}"
    );
}

#[test]
fn equality_is_by_module_name_flag_and_ordered_fields() {
    let v = vectors();
    let r = &v[0].1;
    assert_eq!(r, &r.clone());
    let other_module = record(
        "n",
        "r",
        true,
        vec![("a", Term::Integer(1)), ("b", Term::binary(&b"x"[..]))],
    );
    assert_ne!(r, &other_module);
    let not_exported = record(
        "m",
        "r",
        false,
        vec![("a", Term::Integer(1)), ("b", Term::binary(&b"x"[..]))],
    );
    assert_ne!(r, &not_exported);
    let swapped = record(
        "m",
        "r",
        true,
        vec![("b", Term::binary(&b"x"[..])), ("a", Term::Integer(1))],
    );
    assert_ne!(r, &swapped);
    assert_ne!(r, &Term::tuple([Term::atom("r"), Term::Integer(1)]));
}

#[test]
fn names_may_be_atom_cache_refs_and_legacy_atoms() {
    // erts encodes record atoms through the atom cache (erlang/otp#10676):
    // module, name and field names as ATOM_CACHE_REF, after a dist header.
    let cache = |i: u8| match i {
        0 => Some(atom("m")),
        1 => Some(atom("r")),
        2 => Some(atom("a")),
        _ => None,
    };
    let bytes = [67, 0, 0, 0, 1, 0, 82, 0, 82, 1, 82, 2, 97, 7];
    let (t, used) = DecodeOptions::new()
        .atom_cache(&cache)
        .decode_term(&bytes)
        .unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(t, record("m", "r", false, vec![("a", Term::Integer(7))]));
    // Latin-1 ATOM_EXT / SMALL_ATOM_EXT names, as binary_to_term reads.
    let bytes = [
        131, 67, 0, 0, 0, 1, 0, 100, 0, 1, b'm', 115, 1, b'r', 115, 1, 0xe9, 106,
    ];
    assert_eq!(
        decode(&bytes).unwrap(),
        record("m", "r", false, vec![("é", Term::Nil)])
    );
}

#[test]
fn malformed_records_are_refused_as_erts_refuses_them() {
    // Reserved flag bits (erts: "must be set to zero").
    for flags in [2u8, 3, 0x80, 0xff] {
        let b = header(0, flags, "m", "r", &[]);
        assert_eq!(
            decode(&b),
            Err(DecodeError::BadRecord("reserved flag bits set")),
            "flags {flags}"
        );
    }
    // A field name twice (erlang/otp#11398, refused since #11410), with few
    // fields and with many.
    let mut b = header(2, 1, "m", "r", &["a", "a"]);
    b.extend([97, 1, 97, 2]);
    assert_eq!(
        decode(&b),
        Err(DecodeError::BadRecord("a field name appears twice"))
    );
    let names: Vec<String> = (0..40)
        .map(|i| format!("f{i}"))
        .chain(["f7".into()])
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut b = header(refs.len() as u32, 0, "m", "r", &refs);
    b.extend(std::iter::repeat_n(106, refs.len()));
    assert_eq!(
        decode(&b),
        Err(DecodeError::BadRecord("a field name appears twice"))
    );
    // A non-atom where a name belongs.
    let mut b = vec![131, 67, 0, 0, 0, 0, 0, 97, 1];
    b.extend(a("r"));
    assert!(matches!(
        decode(&b),
        Err(DecodeError::UnexpectedTag {
            expected: "atom",
            found: 97
        })
    ));
    // Field counts the input cannot hold, and every truncation of a valid
    // vector: errors, never a panic or a large allocation.
    let mut b = header(u32::MAX, 0, "m", "r", &[]);
    b.extend([119, 1, b'a', 106]);
    assert_eq!(decode(&b), Err(DecodeError::Truncated));
    for (bytes, _) in vectors() {
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "{:?}", &bytes[..cut]);
        }
    }
}

#[test]
fn nesting_and_memory_are_bounded() {
    // Records nested in their only field, deeper than the limit (on a big
    // stack: a debug build takes a few KiB per level).
    let depth = DEFAULT_MAX_DEPTH + 1;
    let mut b = vec![131];
    for _ in 0..depth {
        b.extend(&header(1, 0, "m", "r", &["f"])[1..]);
    }
    b.push(106);
    let r = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || decode(&b))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(r, Err(DecodeError::TooDeep(DEFAULT_MAX_DEPTH)));
    // A wide record is charged per field against the budget.
    let names: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut b = header(refs.len() as u32, 0, "m", "r", &refs);
    b.extend(std::iter::repeat_n(106, refs.len()));
    assert!(decode(&b).is_ok());
    assert!(matches!(
        DecodeOptions::new().max_memory(16 << 10).decode(&b),
        Err(DecodeError::OverBudget(_))
    ));
}
