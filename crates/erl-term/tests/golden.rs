//! Golden bytes captured from OTP 25.2.3 (`term_to_binary(T, [{minor_version,
//! 2}])`, the form OTP also uses on the wire), and hand-built legacy forms
//! whose decoding and re-encoding by OTP were checked at capture time.

use erl_term::{
    decode, decode_term, decode_used, decode_with_cache, encode, encode_compressed, encode_to,
    encoded_len, parse, Atom, DecodeError, DecodeOptions, Export, Fun, Pid, Port, Reference, Term,
};

/// (Erlang source text, its `term_to_binary` bytes).
const GOLDEN: &[(&str, &[u8])] = &[
    (r#"ok"#, &[131, 119, 2, 111, 107]),
    (r#"'héllo'"#, &[131, 119, 6, 104, 195, 169, 108, 108, 111]),
    (r#"'жук'"#, &[131, 119, 6, 208, 182, 209, 131, 208, 186]),
    (r#"''"#, &[131, 119, 0]),
    (r#"'Ok'"#, &[131, 119, 2, 79, 107]),
    (r#"0"#, &[131, 97, 0]),
    (r#"255"#, &[131, 97, 255]),
    (r#"256"#, &[131, 98, 0, 0, 1, 0]),
    (r#"-1"#, &[131, 98, 255, 255, 255, 255]),
    (r#"2147483647"#, &[131, 98, 127, 255, 255, 255]),
    (r#"-2147483648"#, &[131, 98, 128, 0, 0, 0]),
    (r#"2147483648"#, &[131, 110, 4, 0, 0, 0, 0, 128]),
    (r#"-2147483649"#, &[131, 110, 4, 1, 1, 0, 0, 128]),
    (
        r#"9223372036854775807"#,
        &[131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 127],
    ),
    (
        r#"-9223372036854775808"#,
        &[131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128],
    ),
    (
        r#"9223372036854775808"#,
        &[131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128],
    ),
    (
        r#"-9223372036854775809"#,
        &[131, 110, 8, 1, 1, 0, 0, 0, 0, 0, 0, 128],
    ),
    (
        r#"18446744073709551616"#,
        &[131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ),
    (
        r#"-18446744073709551616"#,
        &[131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ),
    (
        r#"1267650600228229401496703205376"#,
        &[131, 110, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16],
    ),
    (r#"1.5"#, &[131, 70, 63, 248, 0, 0, 0, 0, 0, 0]),
    (r#"-0.0"#, &[131, 70, 128, 0, 0, 0, 0, 0, 0, 0]),
    (r#"0.0"#, &[131, 70, 0, 0, 0, 0, 0, 0, 0, 0]),
    (r#"1.0e300"#, &[131, 70, 126, 55, 228, 60, 136, 0, 117, 156]),
    (
        r#"-2.5e-10"#,
        &[131, 70, 189, 241, 46, 11, 232, 38, 214, 149],
    ),
    (r#"<<>>"#, &[131, 109, 0, 0, 0, 0]),
    (r#"<<1,2,3>>"#, &[131, 109, 0, 0, 0, 3, 1, 2, 3]),
    (
        r#"<<"hello">>"#,
        &[131, 109, 0, 0, 0, 5, 104, 101, 108, 108, 111],
    ),
    (r#"<<1,2,3:5>>"#, &[131, 77, 0, 0, 0, 3, 5, 1, 2, 24]),
    (r#"<<1:1>>"#, &[131, 77, 0, 0, 0, 1, 1, 128]),
    (r#"[]"#, &[131, 106]),
    (r#""hi""#, &[131, 107, 0, 2, 104, 105]),
    (
        r#"[1,a,300]"#,
        &[
            131, 108, 0, 0, 0, 3, 97, 1, 119, 1, 97, 98, 0, 0, 1, 44, 106,
        ],
    ),
    (r#"[1|2]"#, &[131, 108, 0, 0, 0, 1, 97, 1, 97, 2]),
    (
        r#"[a,b|c]"#,
        &[131, 108, 0, 0, 0, 2, 119, 1, 97, 119, 1, 98, 119, 1, 99],
    ),
    (r#"[[]]"#, &[131, 108, 0, 0, 0, 1, 106, 106]),
    (
        r#""жук""#,
        &[
            131, 108, 0, 0, 0, 3, 98, 0, 0, 4, 54, 98, 0, 0, 4, 67, 98, 0, 0, 4, 58, 106,
        ],
    ),
    (r#"{}"#, &[131, 104, 0]),
    (r#"{a,1}"#, &[131, 104, 2, 119, 1, 97, 97, 1]),
    (
        r#"{ok,{nested,{deep}}}"#,
        &[
            131, 104, 2, 119, 2, 111, 107, 104, 2, 119, 6, 110, 101, 115, 116, 101, 100, 104, 1,
            119, 4, 100, 101, 101, 112,
        ],
    ),
    (r#"#{}"#, &[131, 116, 0, 0, 0, 0]),
    (
        r#"#{a => 1,b => <<>>}"#,
        &[
            131, 116, 0, 0, 0, 2, 119, 1, 97, 97, 1, 119, 1, 98, 109, 0, 0, 0, 0,
        ],
    ),
    (
        r#"#{#{k => v} => [1.5]}"#,
        &[
            131, 116, 0, 0, 0, 1, 116, 0, 0, 0, 1, 119, 1, 107, 119, 1, 118, 108, 0, 0, 0, 1, 70,
            63, 248, 0, 0, 0, 0, 0, 0, 106,
        ],
    ),
    (
        r#"fun erlang:abs/1"#,
        &[
            131, 113, 119, 6, 101, 114, 108, 97, 110, 103, 119, 3, 97, 98, 115, 97, 1,
        ],
    ),
    (
        r#"fun lists:map/2"#,
        &[
            131, 113, 119, 5, 108, 105, 115, 116, 115, 119, 3, 109, 97, 112, 97, 2,
        ],
    ),
    (
        r#"[1,2.5,"x",<<"y">>,{z}]"#,
        &[
            131, 108, 0, 0, 0, 5, 97, 1, 70, 64, 4, 0, 0, 0, 0, 0, 0, 107, 0, 1, 120, 109, 0, 0, 0,
            1, 121, 104, 1, 119, 1, 122, 106,
        ],
    ),
];

#[test]
fn golden_decode_encode_and_text() {
    for &(text, bytes) in GOLDEN {
        let parsed = parse(text).unwrap_or_else(|e| panic!("parse {text}: {e}"));
        let decoded = decode(bytes).unwrap_or_else(|e| panic!("decode {text}: {e}"));
        assert_eq!(decoded, parsed, "{text}");
        assert_eq!(encode(&parsed), bytes, "encode {text}");
        assert_eq!(encode(&decoded), bytes, "re-encode {text}");
        assert_eq!(encoded_len(&parsed) + 1, bytes.len(), "encoded_len {text}");
        // Printing and reading back gives the same term.
        assert_eq!(parse(&decoded.to_string()).unwrap(), decoded, "{text}");
        // Without the version byte.
        assert_eq!(
            decode_term(&bytes[1..]).unwrap(),
            (decoded.clone(), bytes.len() - 1)
        );
        let mut out = vec![0xAA];
        encode_to(&decoded, &mut out);
        assert_eq!(&out[1..], &bytes[1..]);
    }
}

#[test]
fn golden_formatting_matches_otp() {
    // `~tp` output of OTP 25 for a few of the golden terms.
    for (text, want) in [
        ("'héllo'", "héllo"),
        ("[1,a,300]", "[1,a,300]"),
        ("\"hi\"", "\"hi\""),
        ("[a,b|c]", "[a,b|c]"),
        ("#{a => 1,b => <<>>}", "#{a => 1,b => <<>>}"),
        ("<<1,2,3:5>>", "<<1,2,3:5>>"),
        ("-2.5e-10", "-2.5e-10"),
        ("fun erlang:abs/1", "fun erlang:abs/1"),
        ("[1,2.5,\"x\",<<\"y\">>,{z}]", "[1,2.5,\"x\",<<\"y\">>,{z}]"),
    ] {
        assert_eq!(parse(text).unwrap().to_string(), want);
    }
}

fn atom(s: &str) -> Atom {
    Atom::new(s).unwrap()
}

fn local_pid() -> Pid {
    Pid {
        node: atom("nonode@nohost"),
        id: 9,
        serial: 0,
        creation: 0,
    }
}

const PID: &[u8] = &[
    131, 88, 119, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 9,
    0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn new_pid_ext() {
    let t = decode(PID).unwrap();
    assert_eq!(t, Term::Pid(local_pid()));
    assert_eq!(encode(&t), PID);
    assert_eq!(t.to_string(), "<nonode@nohost.9.0>");
}

#[test]
fn newer_reference_ext() {
    let bytes: &[u8] = &[
        131, 90, 0, 3, 119, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0,
        0, 0, 0, 0, 1, 88, 225, 50, 164, 0, 1, 161, 4, 87, 118,
    ];
    let t = decode(bytes).unwrap();
    let want = Reference {
        node: atom("nonode@nohost"),
        creation: 0,
        ids: vec![0x0001_58e1, 0x32a4_0001, 0xa104_5776],
    };
    assert_eq!(t, Term::Reference(want));
    assert_eq!(encode(&t), bytes);
}

#[test]
fn new_port_ext() {
    let bytes: &[u8] = &[
        131, 89, 119, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0,
        0, 0, 0, 0, 0,
    ];
    let t = decode(bytes).unwrap();
    assert_eq!(
        t,
        Term::Port(Port {
            node: atom("nonode@nohost"),
            id: 0,
            creation: 0
        })
    );
    assert_eq!(encode(&t), bytes);
    assert_eq!(t.to_string(), "#Port<nonode@nohost.0>");
}

#[test]
fn new_fun_ext() {
    // X = self(), fun() -> X end, compiled in module g2.
    let fun0: &[u8] = &[
        131, 112, 0, 0, 0, 96, 0, 146, 112, 217, 216, 247, 85, 80, 102, 182, 108, 92, 88, 135, 58,
        18, 210, 0, 0, 0, 0, 0, 0, 0, 1, 119, 2, 103, 50, 97, 0, 98, 4, 147, 134, 206, 88, 119, 13,
        110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0,
        0, 0, 0, 88, 119, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0,
        0, 9, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let t = decode(fun0).unwrap();
    let want = Fun {
        module: atom("g2"),
        arity: 0,
        uniq: [
            146, 112, 217, 216, 247, 85, 80, 102, 182, 108, 92, 88, 135, 58, 18, 210,
        ],
        index: 0,
        old_index: 0,
        old_uniq: 76_777_166,
        pid: local_pid(),
        free_vars: vec![Term::Pid(local_pid())],
    };
    assert_eq!(t, Term::Fun(Box::new(want.clone())));
    assert_eq!(encode(&t), fun0);
    assert_eq!(t.to_string(), "#Fun<g2.0.76777166>");

    // The second fun of the module: arity 2, index 1.
    let mut fun2 = fun0.to_vec();
    fun2[6] = 2;
    fun2[26] = 1;
    fun2[36] = 1;
    let t2 = decode(&fun2).unwrap();
    let mut want2 = want;
    want2.arity = 2;
    want2.index = 1;
    want2.old_index = 1;
    assert_eq!(t2, Term::Fun(Box::new(want2)));
    assert_eq!(encode(&t2), fun2);

    // A wrong Size field is refused.
    let mut bad = fun0.to_vec();
    bad[5] = 95;
    assert!(matches!(decode(&bad), Err(DecodeError::BadFunSize { .. })));
}

#[test]
fn export_ext() {
    let t = decode(&[131, 113, 119, 1, 109, 119, 1, 102, 97, 1]).unwrap();
    assert_eq!(
        t,
        Term::Export(Box::new(Export {
            module: atom("m"),
            function: atom("f"),
            arity: 1
        }))
    );
}

/// Legacy or non-canonical input, and the bytes OTP re-encodes it to.
const LEGACY: &[(&str, &[u8], &[u8])] = &[
    (
        "ATOM_EXT",
        &[131, 100, 0, 2, 111, 107],
        &[131, 119, 2, 111, 107],
    ),
    (
        "ATOM_EXT latin-1",
        &[131, 100, 0, 5, 104, 233, 108, 108, 111],
        &[131, 119, 6, 104, 195, 169, 108, 108, 111],
    ),
    (
        "SMALL_ATOM_EXT",
        &[131, 115, 3, 97, 98, 99],
        &[131, 119, 3, 97, 98, 99],
    ),
    (
        "ATOM_UTF8_EXT short",
        &[131, 118, 0, 3, 97, 98, 99],
        &[131, 119, 3, 97, 98, 99],
    ),
    (
        "FLOAT_EXT",
        &[
            131, 99, 49, 46, 53, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48,
            48, 48, 48, 101, 43, 48, 48, 0, 0, 0, 0, 0,
        ],
        &[131, 70, 63, 248, 0, 0, 0, 0, 0, 0],
    ),
    (
        "PID_EXT",
        &[
            131, 103, 100, 0, 8, 97, 64, 98, 46, 99, 46, 100, 101, 0, 0, 0, 42, 0, 0, 0, 3, 2,
        ],
        &[
            131, 88, 119, 8, 97, 64, 98, 46, 99, 46, 100, 101, 0, 0, 0, 42, 0, 0, 0, 3, 0, 0, 0, 2,
        ],
    ),
    (
        "PORT_EXT",
        &[131, 102, 119, 3, 97, 64, 98, 0, 0, 0, 7, 1],
        &[131, 89, 119, 3, 97, 64, 98, 0, 0, 0, 7, 0, 0, 0, 1],
    ),
    (
        "V4_PORT_EXT",
        &[
            131, 120, 119, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 9,
        ],
        &[
            131, 120, 119, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 9,
        ],
    ),
    (
        "V4_PORT_EXT small id",
        &[
            131, 120, 119, 3, 97, 64, 98, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9,
        ],
        &[131, 89, 119, 3, 97, 64, 98, 0, 0, 0, 7, 0, 0, 0, 9],
    ),
    (
        "NEW_PORT_EXT id over 28 bits",
        &[131, 89, 119, 3, 97, 64, 98, 16, 0, 0, 0, 0, 0, 0, 9],
        &[
            131, 120, 119, 3, 97, 64, 98, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 9,
        ],
    ),
    (
        "REFERENCE_EXT",
        &[131, 101, 115, 3, 97, 64, 98, 0, 0, 0, 5, 1],
        &[131, 90, 0, 1, 119, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 5],
    ),
    (
        "NEW_REFERENCE_EXT",
        &[
            131, 114, 0, 3, 115, 3, 97, 64, 98, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3,
        ],
        &[
            131, 90, 0, 3, 119, 3, 97, 64, 98, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3,
        ],
    ),
    (
        "NEWER_REFERENCE_EXT with 5 words",
        &[
            131, 90, 0, 5, 119, 3, 97, 64, 98, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0,
            0, 0, 4, 0, 0, 0, 5,
        ],
        &[
            131, 90, 0, 5, 119, 3, 97, 64, 98, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0,
            0, 0, 4, 0, 0, 0, 5,
        ],
    ),
    (
        "LARGE_TUPLE_EXT small",
        &[131, 105, 0, 0, 0, 2, 97, 1, 97, 2],
        &[131, 104, 2, 97, 1, 97, 2],
    ),
    (
        "LARGE_BIG_EXT small",
        &[131, 111, 0, 0, 0, 2, 0, 1, 1],
        &[131, 98, 0, 0, 1, 1],
    ),
    (
        "LIST_EXT of bytes",
        &[131, 108, 0, 0, 0, 2, 97, 104, 97, 105, 106],
        &[131, 107, 0, 2, 104, 105],
    ),
    (
        "LIST_EXT with STRING_EXT tail",
        &[131, 108, 0, 0, 0, 1, 97, 1, 107, 0, 2, 104, 105],
        &[131, 107, 0, 3, 1, 104, 105],
    ),
    ("LIST_EXT empty", &[131, 108, 0, 0, 0, 0, 106], &[131, 106]),
    (
        "LIST_EXT empty, improper tail",
        &[131, 108, 0, 0, 0, 0, 97, 1],
        &[131, 97, 1],
    ),
    (
        "EXPORT_EXT with INTEGER_EXT arity",
        &[131, 113, 119, 1, 109, 119, 1, 102, 98, 0, 0, 0, 1],
        &[131, 113, 119, 1, 109, 119, 1, 102, 97, 1],
    ),
    (
        "BIT_BINARY_EXT with 8 bits",
        &[131, 77, 0, 0, 0, 1, 8, 255],
        &[131, 109, 0, 0, 0, 1, 255],
    ),
    (
        "BIT_BINARY_EXT unused bits set",
        &[131, 77, 0, 0, 0, 1, 3, 255],
        &[131, 77, 0, 0, 0, 1, 3, 224],
    ),
    (
        "SMALL_BIG_EXT not normalised",
        &[131, 110, 3, 0, 1, 0, 0],
        &[131, 97, 1],
    ),
    (
        "SMALL_BIG_EXT zero digits",
        &[131, 110, 0, 0],
        &[131, 97, 0],
    ),
    (
        "SMALL_BIG_EXT sign byte 2",
        &[131, 110, 1, 2, 5],
        &[131, 98, 255, 255, 255, 251],
    ),
];

#[test]
fn legacy_forms_decode_and_reencode_like_otp() {
    for &(name, input, otp_out) in LEGACY {
        let t = decode(input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t, decode(otp_out).unwrap(), "{name}");
        assert_eq!(encode(&t), otp_out, "{name}");
    }
    let t = decode(LEGACY[5].1).unwrap();
    assert_eq!(
        t,
        Term::Pid(Pid {
            node: atom("a@b.c.de"),
            id: 42,
            serial: 3,
            creation: 2
        })
    );
    let v4 = decode(LEGACY[7].1).unwrap();
    assert!(matches!(
        v4,
        Term::Port(Port {
            id: 0x1_0000_0007,
            creation: 9,
            ..
        })
    ));
}

#[test]
fn old_float_ext_negative_tiny() {
    let b: &[u8] = &[
        131, 99, 45, 49, 46, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 50,
        53, 48, 54, 101, 45, 51, 48, 48, 0, 0, 0,
    ];
    assert_eq!(decode(b).unwrap(), Term::Float(-1.0e-300));
}

#[test]
fn compressed_terms() {
    let cases: &[(&[u8], Term)] = &[
        (
            &[
                131, 80, 0, 0, 0, 103, 120, 156, 203, 102, 72, 73, 164, 3, 0, 0, 204, 203, 38, 180,
            ],
            Term::String(vec![b'a'; 100]),
        ),
        (
            &[
                131, 80, 0, 0, 3, 237, 120, 218, 203, 101, 96, 96, 126, 193, 48, 10, 70, 193, 40,
                24, 246, 0, 0, 71, 7, 1, 89,
            ],
            Term::binary(vec![0; 1000]),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(&decode(bytes).unwrap(), want);
        let (t, used) = decode_used(bytes).unwrap();
        assert_eq!((&t, used), (want, bytes.len()));
        let ours = encode_compressed(want, 6);
        assert_eq!(ours[..2], [131, 80]);
        assert!(ours.len() < encode(want).len());
        assert_eq!(&decode(&ours).unwrap(), want);
    }
    // {lists:seq(1,50), <<0:800>>}, level 6.
    let tuple: &[u8] = &[
        131, 80, 0, 0, 0, 160, 120, 156, 203, 96, 202, 102, 48, 98, 100, 98, 102, 97, 101, 99, 231,
        224, 228, 226, 230, 225, 229, 227, 23, 16, 20, 18, 22, 17, 21, 19, 151, 144, 148, 146, 150,
        145, 149, 147, 87, 80, 84, 82, 86, 81, 85, 83, 215, 208, 212, 210, 214, 209, 213, 211, 55,
        48, 52, 202, 101, 96, 96, 72, 97, 160, 3, 0, 0, 88, 253, 6, 212,
    ];
    let want = Term::tuple([
        Term::List((1..=50).map(Term::Integer).collect()),
        Term::binary(vec![0; 100]),
    ]);
    assert_eq!(decode(tuple).unwrap(), want);
    // Incompressible terms stay plain, as OTP does.
    assert_eq!(
        encode_compressed(&Term::atom("ok"), 9),
        encode(&Term::atom("ok"))
    );

    // Lies about the size, and corrupt streams, are errors.
    let mut wrong_size = cases[0].0.to_vec();
    wrong_size[5] = 104;
    assert!(matches!(
        decode(&wrong_size),
        Err(DecodeError::Compressed(_))
    ));
    wrong_size[5] = 102;
    assert!(matches!(
        decode(&wrong_size),
        Err(DecodeError::Compressed(_))
    ));
    let mut corrupt = cases[0].0.to_vec();
    corrupt[10] ^= 0x55;
    assert!(decode(&corrupt).is_err());
    // 4 GiB claimed from 20 bytes: refused before allocating.
    let mut huge = cases[0].0.to_vec();
    huge[2..6].copy_from_slice(&[255, 255, 255, 255]);
    assert!(matches!(decode(&huge), Err(DecodeError::Compressed(_))));
    let opts = DecodeOptions::new().max_inflated(50);
    assert!(matches!(
        opts.decode(cases[0].0),
        Err(DecodeError::Compressed(_))
    ));
    // Compression is only valid right after the version byte.
    assert_eq!(
        decode_term(&cases[0].0[1..]),
        Err(DecodeError::UnknownTag(80))
    );
}

#[test]
fn atom_cache_refs() {
    let cache = |i: u8| match i {
        0 => Some(atom("$gen_call")),
        5 => Some(atom("node@host")),
        _ => None,
    };
    // {ATOM_CACHE_REF 0, NEW_PID_EXT with node ATOM_CACHE_REF 5}
    let mut b = vec![104, 2, 82, 0, 88, 82, 5];
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]);
    let (t, used) = decode_with_cache(&b, &cache).unwrap();
    assert_eq!(used, b.len());
    assert_eq!(
        t,
        Term::tuple([
            Term::atom("$gen_call"),
            Term::Pid(Pid {
                node: atom("node@host"),
                id: 1,
                serial: 0,
                creation: 7
            })
        ])
    );
    assert_eq!(
        decode_with_cache(&[82, 1], &cache),
        Err(DecodeError::AtomCacheMiss(1))
    );
    assert_eq!(decode_term(&[82, 0]), Err(DecodeError::AtomCacheMiss(0)));
}

#[test]
fn framing_errors() {
    assert_eq!(decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(decode(&[130, 106]), Err(DecodeError::BadVersion(130)));
    assert_eq!(decode(&[131]), Err(DecodeError::Truncated));
    assert_eq!(decode(&[131, 106, 0]), Err(DecodeError::TrailingBytes(1)));
    // decode_used takes one term and reports the bytes it used, as a
    // pass-through distribution message needs: control, then payload.
    let msg = [131, 104, 1, 97, 2, 131, 106];
    let (ctrl, n) = decode_used(&msg).unwrap();
    assert_eq!((ctrl, n), (Term::tuple([Term::Integer(2)]), 5));
    assert_eq!(decode(&msg[n..]).unwrap(), Term::Nil);
    for unsupported in [117u8, 121, 0, 255, 80] {
        assert_eq!(
            decode(&[131, 104, 1, unsupported]),
            Err(DecodeError::UnknownTag(unsupported))
        );
    }
}

#[test]
fn value_errors() {
    // NaN and infinity do not exist in Erlang.
    assert_eq!(
        decode(&[131, 70, 127, 240, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::BadFloat)
    );
    assert_eq!(
        decode(&[131, 70, 127, 248, 0, 0, 0, 0, 0, 1]),
        Err(DecodeError::BadFloat)
    );
    let mut bad_old_float = vec![131, 99];
    bad_old_float.extend_from_slice(&[b'x'; 31]);
    assert_eq!(decode(&bad_old_float), Err(DecodeError::BadFloat));
    assert!(matches!(
        decode(&[131, 77, 0, 0, 0, 1, 0, 255]),
        Err(DecodeError::BadBitBinary { .. })
    ));
    assert!(matches!(
        decode(&[131, 77, 0, 0, 0, 1, 9, 255]),
        Err(DecodeError::BadBitBinary { .. })
    ));
    assert!(matches!(
        decode(&[131, 77, 0, 0, 0, 0, 3]),
        Err(DecodeError::BadBitBinary { .. })
    ));
    assert_eq!(
        decode(&[131, 119, 2, 0xc3, 0x28]),
        Err(DecodeError::InvalidUtf8)
    );
    let mut long = vec![131, 118, 1, 0];
    long.extend_from_slice(&[b'a'; 256]);
    assert_eq!(decode(&long), Err(DecodeError::AtomTooLong(256)));
    let mut long_latin1 = vec![131, 100, 1, 0];
    long_latin1.extend_from_slice(&[b'a'; 256]);
    assert_eq!(decode(&long_latin1), Err(DecodeError::AtomTooLong(256)));
    // 255 two-byte characters is a legal atom.
    let mut wide = vec![131, 118, 1, 254];
    for _ in 0..255 {
        wide.extend_from_slice("ж".as_bytes());
    }
    assert_eq!(
        decode(&wide).unwrap().as_atom().map(|a| a.chars().count()),
        Some(255)
    );
    assert_eq!(
        decode(&[131, 88, 97, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::UnexpectedTag {
            expected: "atom",
            found: 97
        })
    );
    assert_eq!(
        decode(&[131, 113, 119, 1, 109, 119, 1, 102, 98, 0, 0, 1, 0]),
        Err(DecodeError::IntegerOutOfRange("export arity"))
    );
}

#[test]
fn huge_lengths_do_not_allocate() {
    // Each claims about 4 billion elements or bytes with nothing behind it;
    // the check against the remaining input must come first.
    for bytes in [
        &[131, 108, 255, 255, 255, 255, 106][..],
        &[131, 105, 255, 255, 255, 255],
        &[131, 116, 255, 255, 255, 255],
        &[131, 109, 255, 255, 255, 255, 1],
        &[131, 77, 255, 255, 255, 255, 3, 1],
        &[131, 111, 255, 255, 255, 255, 0, 1],
        &[131, 107, 255, 255, 1],
        &[131, 90, 255, 255, 119, 1, 97, 0, 0, 0, 0],
    ] {
        assert_eq!(decode(bytes), Err(DecodeError::Truncated), "{bytes:?}");
    }
    let mut fun = vec![131, 112, 0, 0, 0, 60, 0];
    fun.extend_from_slice(&[0; 16]);
    fun.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 255, 119, 1, 109, 97, 0, 97, 0]);
    fun.extend_from_slice(&PID[1..]);
    assert_eq!(decode(&fun), Err(DecodeError::Truncated));
}

#[test]
fn nested_claims_are_bounded() {
    // 999 nested lists, each claiming as many elements as there are bytes
    // after it, around a million NILs: each claim passes the length check,
    // but the reservations come out of one budget of a slot per input byte,
    // so this cannot reserve 999 vectors of a million slots.
    let depth = 999usize;
    let mut b = vec![131];
    for level in 0..depth {
        // All the bytes that follow, less one for the tail.
        let claim = (depth - level - 1) * 5 + 1_000_000 - 1;
        b.push(108);
        b.extend_from_slice(&(claim as u32).to_be_bytes());
    }
    b.resize(b.len() + 1_000_000, 106);
    with_big_stack(move || {
        assert_eq!(decode(&b), Err(DecodeError::Truncated));
    });
}

#[test]
fn term_stays_small() {
    // Every list element costs one Term; keep the enum compact.
    assert!(size_of::<Term>() <= 48);
}

#[test]
fn every_truncation_is_an_error() {
    let mut all: Vec<&[u8]> = GOLDEN.iter().map(|g| g.1).collect();
    all.extend(LEGACY.iter().map(|l| l.1));
    all.push(PID);
    for bytes in all {
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "{bytes:?} cut at {cut}");
        }
    }
}

/// `depth` nested one-element tuples around `[]`.
fn nested_tuples(depth: usize) -> Vec<u8> {
    let mut b = vec![131];
    for _ in 0..depth {
        b.extend_from_slice(&[104, 1]);
    }
    b.push(106);
    b
}

/// Runs `f` on a thread with a large stack: debug builds use several KiB
/// per nesting level (release builds about 220 bytes).
fn with_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn depth_limit() {
    with_big_stack(|| {
        let ok = decode(&nested_tuples(1000)).unwrap();
        assert_eq!(encode(&ok), nested_tuples(1000));
        assert_eq!(
            decode(&nested_tuples(1001)),
            Err(DecodeError::TooDeep(1000))
        );
        // Far deeper input fails the same way instead of overflowing.
        assert_eq!(
            decode(&nested_tuples(1_000_000)),
            Err(DecodeError::TooDeep(1000))
        );
        let mut lists = vec![131];
        for _ in 0..100_000 {
            lists.extend_from_slice(&[108, 0, 0, 0, 1]);
        }
        assert_eq!(decode(&lists), Err(DecodeError::TooDeep(1000)));
        let mut maps = vec![131];
        for _ in 0..100_000 {
            maps.extend_from_slice(&[116, 0, 0, 0, 1, 106]);
        }
        assert_eq!(decode(&maps), Err(DecodeError::TooDeep(1000)));
        let shallow = DecodeOptions::new().max_depth(3);
        assert!(shallow.decode(&nested_tuples(3)).is_ok());
        assert_eq!(
            shallow.decode(&nested_tuples(4)),
            Err(DecodeError::TooDeep(3))
        );
    });
}

#[test]
fn large_values() {
    let big = Term::binary((0..(1 << 20)).map(|i| i as u8).collect::<Vec<u8>>());
    let bytes = encode(&big);
    assert_eq!(bytes.len(), 1 + 5 + (1 << 20));
    assert_eq!(decode(&bytes).unwrap(), big);
    // Strings longer than 65535 go as LIST_EXT of small integers, like OTP.
    let long = Term::String(vec![b'a'; 65536]);
    let bytes = encode(&long);
    assert_eq!(bytes[..8], [131, 108, 0, 1, 0, 0, 97, 97]);
    assert_eq!(decode(&bytes).unwrap(), long);
    let max = Term::String(vec![b'a'; 65535]);
    assert_eq!(encode(&max)[..4], [131, 107, 255, 255]);
    // 2^2048 needs LARGE_BIG_EXT.
    let pow = parse(&format!(
        "{}",
        erl_term::BigInt::from_str_radix(&format!("1{}", "0".repeat(512)), 16).unwrap()
    ))
    .unwrap();
    let bytes = encode(&pow);
    assert_eq!(bytes[..8], [131, 111, 0, 0, 1, 1, 0, 0]);
    assert_eq!(decode(&bytes).unwrap(), pow);
    // -(2^1000) is the largest SMALL_BIG_EXT size class.
    let neg = parse(&format!(
        "-{}",
        erl_term::BigInt::from_str_radix(&format!("1{}", "0".repeat(250)), 16).unwrap()
    ))
    .unwrap();
    assert_eq!(encode(&neg)[..4], [131, 110, 126, 1]);
    let wide_tuple = Term::Tuple((0..300).map(Term::Integer).collect());
    let bytes = encode(&wide_tuple);
    assert_eq!(bytes[..6], [131, 105, 0, 0, 1, 44]);
    assert_eq!(decode(&bytes).unwrap(), wide_tuple);
}
