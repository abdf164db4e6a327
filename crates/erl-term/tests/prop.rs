//! Property tests: encode → decode round trips, print → parse round trips,
//! and no panic on any input.

use erl_term::{
    decode, decode_bytes, decode_term, decode_used, encode, encode_chunks_to, encode_to,
    encoded_len, parse, Atom, BigInt, Bytes, Chunks, Export, Fun, Pid, Port, Record, Reference,
    Term, CHUNK_MIN, SHARE_MIN,
};
use proptest::prelude::*;

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        "[a-z][a-zA-Z0-9_@]{0,12}",
        "[A-Z_][a-z]{0,5}",
        "\\PC{0,20}",
        ".{0,8}",
        Just("ok".to_owned()),
        Just("".to_owned()),
    ]
    .prop_map(|s| Atom::new(&s).unwrap())
}

fn node() -> impl Strategy<Value = Atom> {
    prop_oneof!["[a-z]{1,8}@[a-z]{1,8}", Just("nonode@nohost".to_owned())]
        .prop_map(|s| Atom::new(&s).unwrap())
}

fn pid() -> impl Strategy<Value = Pid> {
    (node(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(node, id, serial, creation)| {
        Pid {
            node,
            id,
            serial,
            creation,
        }
    })
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        (-1000i32..1000).prop_map(|i| f64::from(i) / 8.0),
    ]
}

/// Terms without identifiers or closures, which have no Erlang syntax.
fn plain_leaf() -> BoxedStrategy<Term> {
    prop_oneof![
        atom().prop_map(Term::Atom),
        any::<i64>().prop_map(Term::Integer),
        (0i64..300).prop_map(Term::Integer),
        (any::<bool>(), prop::collection::vec(any::<u8>(), 8..40))
            .prop_map(|(neg, mag)| Term::from(BigInt::from_sign_magnitude(neg, mag))),
        float().prop_map(Term::Float),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Term::binary),
        "\\PC{0,10}".prop_map(|s| Term::binary(s.into_bytes())),
        (prop::collection::vec(any::<u8>(), 1..10), 1u8..8).prop_map(|(mut bytes, bits)| {
            let last = bytes.len() - 1;
            bytes[last] &= 0xffu8 << (8 - bits);
            Term::BitBinary {
                bytes: bytes.into(),
                bits,
            }
        }),
        Just(Term::Nil),
        prop::collection::vec(any::<u8>(), 1..30).prop_map(Term::String),
        "[ -~]{1,20}".prop_map(|s| Term::String(s.into_bytes())),
        (atom(), atom(), any::<u8>()).prop_map(|(module, function, arity)| {
            Term::Export(Box::new(Export {
                module,
                function,
                arity,
            }))
        }),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Term> {
    prop_oneof![
        4 => plain_leaf(),
        1 => pid().prop_map(Term::Pid),
        1 => (node(), any::<u64>(), any::<u32>()).prop_map(|(node, id, creation)| {
            Term::Port(Port { node, id, creation })
        }),
        1 => (node(), any::<u32>(), prop::collection::vec(any::<u32>(), 0..6)).prop_map(
            |(node, creation, ids)| Term::Reference(Reference { node, creation, ids })
        ),
    ]
    .boxed()
}

/// A tail that makes a list improper: anything but a list.
fn non_list(t: Term) -> Term {
    if t.is_list() {
        Term::atom("tail")
    } else {
        t
    }
}

fn nest(leaf: BoxedStrategy<Term>, funs: bool) -> impl Strategy<Value = Term> {
    leaf.prop_recursive(5, 64, 6, move |inner| {
        let mut options = vec![
            prop::collection::vec(inner.clone(), 1..6)
                .prop_map(Term::List)
                .boxed(),
            (prop::collection::vec(inner.clone(), 1..4), inner.clone())
                .prop_map(|(items, tail)| Term::ImproperList(items, Box::new(non_list(tail))))
                .boxed(),
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(Term::Tuple)
                .boxed(),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4)
                .prop_map(Term::Map)
                .boxed(),
        ];
        if funs {
            // Native records with distinct field names (the decoder
            // refuses duplicates, as erts does).
            options.push(
                (
                    atom(),
                    atom(),
                    any::<bool>(),
                    prop::collection::vec(inner.clone(), 0..4),
                )
                    .prop_map(|(module, name, exported, values)| {
                        let fields = values
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Atom::new(&format!("f{i}")).unwrap(), v))
                            .collect();
                        Term::Record(Box::new(Record {
                            module,
                            name,
                            exported,
                            fields,
                        }))
                    })
                    .boxed(),
            );
            options.push(
                (
                    atom(),
                    any::<u8>(),
                    any::<[u8; 16]>(),
                    any::<(u32, u32, u32)>(),
                    pid(),
                    prop::collection::vec(inner, 0..3),
                )
                    .prop_map(
                        |(module, arity, uniq, (index, old_index, old_uniq), pid, free_vars)| {
                            Term::Fun(Box::new(Fun {
                                module,
                                arity,
                                uniq,
                                index,
                                old_index,
                                old_uniq,
                                pid,
                                free_vars,
                            }))
                        },
                    )
                    .boxed(),
            );
        }
        prop::strategy::Union::new(options)
    })
}

fn any_term() -> impl Strategy<Value = Term> {
    nest(leaf(), true)
}

fn plain_term() -> impl Strategy<Value = Term> {
    nest(plain_leaf(), false)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_decode_round_trip(t in any_term()) {
        let bytes = encode(&t);
        prop_assert_eq!(bytes.len(), 1 + encoded_len(&t));
        let back = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &t);
        // Decoded terms are canonical: encoding them again is stable.
        prop_assert_eq!(encode(&back), bytes.clone());
        prop_assert_eq!(decode_term(&bytes[1..]).unwrap(), (back, bytes.len() - 1));
    }

    /// The zero-copy paths give the same bytes and terms as the copying
    /// ones, with binaries around both thresholds, partial bitstrings and
    /// other terms between them: `decode_bytes` slices binaries of
    /// SHARE_MIN bytes or more out of its input, `encode_chunks_to` leaves
    /// binaries of CHUNK_MIN or more uncopied.
    #[test]
    fn shared_binaries_round_trip(
        t in any_term(),
        sizes in prop::collection::vec(
            prop_oneof![0..SHARE_MIN + 2, CHUNK_MIN - 2..CHUNK_MIN + 2, 60_000usize..70_000],
            0..6,
        ),
        bits in 1u8..8,
    ) {
        let mut items = vec![t];
        for (i, n) in sizes.iter().enumerate() {
            let bin: Vec<u8> = (0..*n).map(|j| (i * 7 + j) as u8).collect();
            items.push(Term::binary(bin));
            if *n > 0 && i % 2 == 1 {
                let mut b: Vec<u8> = vec![0xff; *n];
                let last = b.len() - 1;
                b[last] &= 0xffu8 << (8 - bits);
                items.push(Term::BitBinary { bytes: b.into(), bits });
            }
            items.push(Term::Integer(i as i64));
        }
        let term = Term::Tuple(items);
        let mut flat = vec![131];
        encode_to(&term, &mut flat);
        let mut chunks = Chunks::from(vec![131]);
        encode_chunks_to(&term, &mut chunks);
        prop_assert_eq!(chunks.len(), flat.len());
        prop_assert_eq!(chunks.to_vec(), flat.clone());
        let large = sizes.iter().filter(|n| **n >= CHUNK_MIN).count();
        prop_assert!(chunks.slices().count() <= 2 * large + 1);
        let wire = Bytes::from(flat);
        let back = decode_bytes(&wire).unwrap();
        prop_assert_eq!(&back, &term);
        let range = wire.as_ptr_range();
        if let Term::Tuple(items) = &back {
            for it in items {
                if let Term::Binary(b) = it {
                    let inside = range.contains(&b.as_ptr());
                    prop_assert_eq!(inside, b.len() >= SHARE_MIN, "{} bytes", b.len());
                }
            }
        }
    }

    #[test]
    fn format_parse_round_trip(t in plain_term()) {
        let text = t.to_string();
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back, t, "{}", text);
    }

    #[test]
    fn hash_agrees_with_eq(t in any_term()) {
        use std::hash::{Hash, Hasher};
        let h = |t: &Term| {
            let mut s = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut s);
            s.finish()
        };
        let back = decode(&encode(&t)).unwrap();
        prop_assert_eq!(h(&back), h(&t));
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
        let _ = decode_term(&bytes);
        let mut v = vec![131];
        v.extend_from_slice(&bytes);
        let _ = decode_used(&v);
    }

    #[test]
    fn decode_never_panics_on_mutations(
        t in any_term(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&t);
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode(&bytes);
        let end = cut.index(bytes.len() + 1);
        let _ = decode(&bytes[..end]);
        // Whatever decodes must encode, and that must decode to the same.
        if let Ok(t2) = decode(&bytes) {
            prop_assert_eq!(decode(&encode(&t2)).unwrap(), t2);
        }
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = parse(&s);
    }

    #[test]
    fn parse_never_panics_on_term_like_text(s in "[\\[\\]{}<>#$,|:/.=\"'a-z0-9\\\\_ -]{0,40}") {
        let _ = parse(&s);
    }
}
