//! Round trips through a real OTP 25 `erl`, in one plain `erl -noshell`
//! process (no distribution, no epmd):
//!
//! 1. Rust encodes a set of terms to `rust_terms.bin`.
//! 2. `erl` decodes each with `binary_to_term`, re-encodes it with
//!    `term_to_binary(T, [{minor_version, 2}])`, notes whether the bytes are
//!    identical, prints it with `~tp`, and writes all that back. It also
//!    writes terms only a node can make (pids, refs, ports, closures) plus a
//!    corpus of random floats, with their `~tp` text, then says `READY`.
//! 3. Rust checks both sets (decoding, byte identity, printing, parsing),
//!    writes its re-encoding of the `erl` terms and says `GO`.
//! 4. `erl` decodes those, checks `=:=` with the originals, calls the
//!    closures, and reports `FAIL ...` lines and `DONE`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use erl_term::{decode, encode, parse, Atom, BigInt, Pid, Port, Reference, Term};
use test_support::erl::{erl_bin, TempDir};

const ERLANG: &str = r#"
-module(etf_interop).
-export([main/1]).

main(Dir) ->
    P = fun(Name) -> filename:join(Dir, Name) end,
    {ok, RustBin} = file:read_file(P("rust_terms.bin")),
    RustBack = [begin
                    T = binary_to_term(B),
                    Re = term_to_binary(T, [{minor_version, 2}]),
                    Same = case Re =:= B of true -> 1; false -> 0 end,
                    [frame(Re), Same, frame(text(T))]
                end || B <- unframe(RustBin)],
    ok = file:write_file(P("rust_back.bin"), RustBack),
    Terms = erl_terms(),
    ok = file:write_file(P("erl_terms.bin"),
                         [[frame(term_to_binary(T, [{minor_version, 2}])), frame(text(T))]
                          || T <- Terms]),
    io:format("READY~n"),
    _ = io:get_line(""),
    {ok, Back} = file:read_file(P("erl_back.bin")),
    Bins = unframe(Back),
    case length(Bins) =:= length(Terms) of
        true -> ok;
        false -> io:format("FAIL count ~p ~p~n", [length(Bins), length(Terms)])
    end,
    Check = fun({I, T, B}) ->
                case catch binary_to_term(B) of
                    T2 when T2 =:= T ->
                        case is_function(T, 0) andalso erlang:fun_info(T, type) =:= {type, local} of
                            true ->
                                case catch T2() =:= T() of
                                    true -> ok;
                                    _ -> io:format("FAIL call ~p~n", [I])
                                end;
                            false -> ok
                        end;
                    Other -> io:format("FAIL ~p ~w~n", [I, Other])
                end
            end,
    lists:foreach(Check, lists:zip3(lists:seq(0, length(Terms) - 1), Terms,
                                    lists:sublist(Bins, length(Terms)))),
    io:format("DONE ~p~n", [length(Terms)]).

%% io_lib_pretty is slow on huge terms; those are left unprinted (empty).
text(T) ->
    case erlang:external_size(T) < 65536 of
        true -> unicode:characters_to_binary(io_lib:format("~*tp", [100000000, T]));
        false -> <<>>
    end.

frame(B) -> [<<(byte_size(B)):32>>, B].

unframe(<<N:32, B:N/binary, Rest/binary>>) -> [B | unframe(Rest)];
unframe(<<>>) -> [].

erl_terms() ->
    X = self(),
    R = make_ref(),
    A = erlang:alias(),
    Port = hd(erlang:ports()),
    Closure0 = fun() -> X end,
    Closure1 = fun(Y) -> {Y, X, R, <<"env">>, [1.5]} end,
    Closure2 = fun() -> {X, R, "free", 42} end,
    BigMap = maps:from_list([{K, K * K} || K <- lists:seq(1, 40)]),
    rand:seed(exsss, {1, 2, 3}),
    Floats = [random_float() || _ <- lists:seq(1, 3000)],
    [X, R, A, Port, fun erlang:abs/1, fun lists:map/2, Closure0, Closure1, Closure2,
     {X, R, Port}, [X | R], #{X => R},
     BigMap, #{a => 1, "b" => [2], <<"c">> => {3}, 1.5 => #{}},
     1 bsl 64, -(1 bsl 64), 1 bsl 1000, -(1 bsl 1000), 1 bsl 2048, (1 bsl 64) - 1,
     'héllo', list_to_atom([1078, 1091, 1082]), list_to_atom(lists:duplicate(255, 1078)),
     '', 'Quoted Atom', 'a\'b\n',
     -0.0, 0.0, 1.0e300, 5.0e-324, 1.7976931348623157e308, 0.1, 1.0e15, 123456789.0,
     <<>>, binary:copy(<<1, 2, 3, 4>>, 262144), <<1:1>>, <<"abc", 5:3>>, <<"héllo"/utf8>>,
     [1 | 2], [a, b | c], "string", lists:seq(1, 70000), lists:duplicate(65535, $a),
     [1078, 1091], [[], [[]]],
     list_to_tuple(lists:seq(1, 300)), {}, [], #{}
     | Floats].

random_float() ->
    case rand:uniform(4) of
        1 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300);
        2 -> float(rand:uniform(1 bsl 60) - (1 bsl 59));
        3 -> rand:uniform(100000) / 1000;
        4 -> <<F:64/float>> = <<(rand:uniform(2) - 1):1, (rand:uniform(2047) - 1):11,
                                (rand:uniform(1 bsl 52) - 1):52>>,
             F
    end.
"#;

fn atom(s: &str) -> Atom {
    Atom::new(s).unwrap()
}

fn int(s: &str) -> Term {
    Term::from(BigInt::from_str_radix(s, 10).unwrap())
}

fn pow2(n: usize, negative: bool) -> Term {
    let mut mag = vec![0u8; n / 8 + 1];
    mag[n / 8] = 1 << (n % 8);
    Term::from(BigInt::from_sign_magnitude(negative, mag))
}

/// A term built in Rust, and which checks apply to it.
struct Case {
    term: Term,
    /// OTP's re-encoding must be byte-identical to ours.
    same_bytes: bool,
    /// OTP's `~tp` must equal our `Display`.
    same_text: bool,
}

fn case(text: &str) -> Case {
    Case {
        term: parse(text).unwrap_or_else(|e| panic!("{text}: {e}")),
        same_bytes: true,
        same_text: true,
    }
}

fn rust_cases() -> Vec<Case> {
    let mut v: Vec<Case> = [
        "ok",
        "''",
        "'héllo'",
        "'жук'",
        "'Hello World'",
        "'a\\'b\\n'",
        "0",
        "255",
        "256",
        "-1",
        "2147483647",
        "-2147483648",
        "2147483648",
        "-2147483649",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551616",
        "-18446744073709551616",
        "18446744073709551615",
        "0.0",
        "-0.0",
        "1.5",
        "1.0e300",
        "-1.0e-300",
        "5.0e-324",
        "1.7976931348623157e308",
        "0.1",
        "123456789.0",
        "<<>>",
        "<<1,2,3>>",
        "<<\"hello\">>",
        "<<\"héllo\"/utf8>>",
        "<<1:1>>",
        "<<1,2,3:5>>",
        "<<127:7>>",
        "[]",
        "\"hi\"",
        "[1,a,300]",
        "[1|2]",
        "[a,b|c]",
        "[[],[[]],{[]}]",
        "\"жук\"",
        "{}",
        "{a,1}",
        "{ok,{nested,{deep,[1,{2}]}}}",
        "#{}",
        "#{a => 1,b => <<>>}",
        "#{a => #{b => #{c => [1.5]}}}",
        "fun erlang:abs/1",
        "fun lists:map/2",
        "{echo,[1,2,<<\"hi\">>],#{a => 1.5}}",
    ]
    .iter()
    .map(|s| case(s))
    .collect();
    let exact = |term: Term| Case {
        term,
        same_bytes: true,
        same_text: true,
    };
    let bytes_only = |term: Term| Case {
        term,
        same_bytes: true,
        same_text: false,
    };
    v.push(exact(pow2(1000, false)));
    v.push(exact(pow2(1000, true)));
    v.push(exact(pow2(2048, false)));
    v.push(exact(int("-123456789012345678901234567890123456789")));
    v.push(exact(Term::atom(&"a".repeat(255))));
    v.push(exact(Term::atom(&"ж".repeat(255))));
    v.push(exact(Term::Binary(
        (0..1 << 20).map(|i| (i * 7) as u8).collect(),
    )));
    v.push(exact(Term::String(vec![b'a'; 65535])));
    v.push(exact(Term::String(vec![b'z'; 70000])));
    v.push(exact(Term::List((0..70000).map(Term::Integer).collect())));
    v.push(exact(Term::Tuple((0..300).map(Term::Integer).collect())));
    // A map OTP stores as a hash trie (over 32 keys): its order differs.
    v.push(Case {
        term: Term::Map(
            (0..40)
                .map(|i| (Term::Integer(i), Term::Integer(i * i)))
                .collect(),
        ),
        same_bytes: false,
        same_text: false,
    });
    // Unsorted small map: OTP sorts the keys when it re-encodes and prints.
    v.push(Case {
        term: parse("#{b => 2, a => 1}").unwrap(),
        same_bytes: false,
        same_text: false,
    });
    let other = atom("other@host");
    v.push(bytes_only(Term::Pid(Pid {
        node: other.clone(),
        id: 42,
        serial: 1,
        creation: 5,
    })));
    v.push(bytes_only(Term::Port(Port {
        node: other.clone(),
        id: 7,
        creation: 5,
    })));
    v.push(bytes_only(Term::Port(Port {
        node: other.clone(),
        id: 1 << 40,
        creation: 5,
    })));
    v.push(bytes_only(Term::Reference(Reference {
        node: other.clone(),
        creation: 5,
        ids: vec![1, 2, 3],
    })));
    v.push(bytes_only(Term::Reference(Reference {
        node: other,
        creation: 0xdead_beef,
        ids: vec![1, 2, 3, 4, 5],
    })));
    v
}

/// Splits `u32`-length-prefixed frames.
fn unframe(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        out.push(&b[4..4 + n]);
        b = &b[4 + n..];
    }
    assert!(b.is_empty(), "trailing bytes in frame file");
    out
}

fn frame(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Whether OTP's `~tp` and ours must agree: OTP prints identifiers with a
/// node index and large maps in sorted order, which this crate does not.
fn comparable_text(t: &Term) -> bool {
    match t {
        Term::Pid(_) | Term::Port(_) | Term::Reference(_) | Term::Fun(_) => false,
        Term::List(v) | Term::Tuple(v) => v.iter().all(comparable_text),
        Term::ImproperList(v, tail) => v.iter().all(comparable_text) && comparable_text(tail),
        Term::Map(m) => {
            m.len() <= 32
                && m.iter()
                    .all(|(k, v)| comparable_text(k) && comparable_text(v))
        }
        _ => true,
    }
}

struct Erl {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Erl {
    fn next_line(&self, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines
            .recv_timeout(left)
            .context("erl did not answer in time")
    }
}

impl Drop for Erl {
    fn drop(&mut self) {
        // Ends only the erl this test started, by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_erl(dir: &Path) -> Result<Erl> {
    let src = dir.join("etf_interop.erl");
    std::fs::write(&src, ERLANG)?;
    let d = dir.to_str().context("temp dir is not UTF-8")?;
    let eval = format!(
        "{{ok, etf_interop}} = compile:file(\"{d}/etf_interop.erl\", [{{outdir, \"{d}\"}}, report]), \
         etf_interop:main(\"{d}\"), halt()."
    );
    let mut child = Command::new(erl_bin()?)
        .args(["-noshell", "-pa", d, "-eval", &eval])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn erl")?;
    let stdout = child.stdout.take().context("erl stdout")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(Erl { child, lines })
}

#[test]
fn round_trip_through_otp() -> Result<()> {
    let started = Instant::now();
    let dir = TempDir::new("erl-term")?;
    let cases = rust_cases();
    let mut rust_terms = Vec::new();
    for c in &cases {
        frame(&mut rust_terms, &encode(&c.term));
    }
    std::fs::write(dir.path().join("rust_terms.bin"), &rust_terms)?;

    let mut erl = start_erl(dir.path())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = erl.next_line(deadline)?;
        if line == "READY" {
            break;
        }
        eprintln!("erl: {line}");
    }

    // Rust-made terms, as OTP saw them.
    let back = std::fs::read(dir.path().join("rust_back.bin"))?;
    let mut failures = Vec::new();
    let mut flags = back.as_slice();
    for (i, c) in cases.iter().enumerate() {
        // Each record is frame(bytes), one flag byte, frame(text).
        let n = u32::from_be_bytes(flags[..4].try_into()?) as usize;
        let reencoded = &flags[4..4 + n];
        let same = flags[4 + n];
        flags = &flags[5 + n..];
        let m = u32::from_be_bytes(flags[..4].try_into()?) as usize;
        let text = std::str::from_utf8(&flags[4..4 + m])?;
        flags = &flags[4 + m..];

        let label = format!("rust #{i} {}", short(&c.term));
        match decode(reencoded) {
            Ok(t) if t == c.term => {}
            Ok(t) => failures.push(format!("{label}: OTP gave back {}", short(&t))),
            Err(e) => failures.push(format!("{label}: cannot decode OTP's bytes: {e}")),
        }
        if c.same_bytes && same != 1 {
            failures.push(format!("{label}: OTP re-encodes it differently"));
        }
        if c.same_text && !text.is_empty() && c.term.to_string() != text {
            failures.push(format!("{label}: OTP prints {}", shorten(text)));
        }
    }

    // Terms made by OTP.
    let erl_terms = std::fs::read(dir.path().join("erl_terms.bin"))?;
    let frames = unframe(&erl_terms);
    let mut reply = Vec::new();
    let mut count = 0usize;
    for (i, pair) in frames.chunks(2).enumerate() {
        let (bytes, text) = (pair[0], std::str::from_utf8(pair[1])?);
        count += 1;
        let label = format!("erl #{i} {}", shorten(text));
        let t = match decode(bytes) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                frame(&mut reply, bytes);
                continue;
            }
        };
        let ours = encode(&t);
        if ours != bytes {
            failures.push(format!("{label}: re-encoded bytes differ"));
        }
        if !text.is_empty() && comparable_text(&t) {
            if t.to_string() != text {
                failures.push(format!("{label}: we print {}", short(&t)));
            }
            match parse(text) {
                Ok(p) if p == t => {}
                Ok(p) => failures.push(format!("{label}: parses as {}", short(&p))),
                Err(e) => failures.push(format!("{label}: parse error {e}")),
            }
        }
        frame(&mut reply, &ours);
    }
    std::fs::write(dir.path().join("erl_back.bin"), &reply)?;
    let stdin = erl.child.stdin.as_mut().context("erl stdin")?;
    stdin.write_all(b"GO\n")?;
    stdin.flush()?;

    loop {
        let line = erl.next_line(deadline)?;
        if let Some(n) = line.strip_prefix("DONE ") {
            assert_eq!(n.parse::<usize>()?, count, "erl term count");
            break;
        }
        failures.push(format!("erl: {line}"));
    }
    if !failures.is_empty() {
        bail!("{} failures:\n{}", failures.len(), failures.join("\n"));
    }
    eprintln!(
        "{} Rust terms and {} OTP terms round-tripped through erl in {:?}",
        cases.len(),
        count,
        started.elapsed()
    );
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_owned()
    }
}

fn short(t: &Term) -> String {
    shorten(&t.to_string())
}
