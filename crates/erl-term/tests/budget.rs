//! The per-decode memory budget and the big-integer bound.

use erl_term::{encode, encode_compressed, DecodeError, DecodeOptions, Term, TERM_COST};

/// A list of `n` empty lists: one input byte per `Term` when plain.
fn nils(n: usize) -> Term {
    Term::List(vec![Term::Nil; n])
}

#[test]
fn compressed_inflation_is_refused_before_inflating() {
    // 16 MiB of `[]` compresses to about 16 KiB.
    let t = nils(16 << 20);
    let bytes = encode_compressed(&t, 6);
    assert!(bytes.len() < 64 << 10, "{} bytes", bytes.len());
    drop(t);
    let budget = 1 << 20;
    let err = DecodeOptions::new()
        .max_memory(budget)
        .decode(&bytes)
        .unwrap_err();
    assert_eq!(err, DecodeError::OverBudget(budget));
}

#[test]
fn compressed_term_within_budget_decodes() {
    let t = nils(1000);
    let bytes = encode_compressed(&t, 6);
    let got = DecodeOptions::new()
        .max_memory(1 << 20)
        .decode(&bytes)
        .unwrap();
    assert_eq!(got, t);
}

#[test]
fn term_slots_are_charged() {
    let n = 10_000;
    let bytes = encode(&nils(n));
    // Plain input: about 48 bytes of terms per input byte here.
    let need = (n + 2) * TERM_COST;
    assert!(DecodeOptions::new().max_memory(need).decode(&bytes).is_ok());
    let err = DecodeOptions::new()
        .max_memory(n * TERM_COST / 2)
        .decode(&bytes)
        .unwrap_err();
    assert!(matches!(err, DecodeError::OverBudget(_)), "{err:?}");
}

#[test]
fn binary_bytes_are_charged() {
    let bytes = encode(&Term::binary(vec![7; 100_000]));
    assert!(DecodeOptions::new()
        .max_memory(200_000)
        .decode(&bytes)
        .is_ok());
    let err = DecodeOptions::new()
        .max_memory(50_000)
        .decode(&bytes)
        .unwrap_err();
    assert_eq!(err, DecodeError::OverBudget(50_000));
}

#[test]
fn bignum_digits_are_bounded() {
    // LARGE_BIG_EXT with one digit byte more than the 4 MiB default.
    let n: u32 = (4 << 20) + 1;
    let mut bytes = vec![131, 111];
    bytes.extend_from_slice(&n.to_be_bytes());
    bytes.push(0);
    bytes.extend(std::iter::repeat_n(1u8, n as usize));
    assert_eq!(
        erl_term::decode(&bytes).unwrap_err(),
        DecodeError::BigTooLarge(n as usize)
    );
    assert!(DecodeOptions::new()
        .max_big_bytes(8 << 20)
        .decode(&bytes)
        .is_ok());
}
