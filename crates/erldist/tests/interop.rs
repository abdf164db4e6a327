//! erldist against real OTP nodes: pings, messages, `rpc`, every term type
//! through Erlang's own `term_to_binary`/`binary_to_term`, node-down
//! propagation, links and monitors.
//!
//! Each test has its own epmdx on a private port and its own `erl` node
//! (`-start_epmd false`, `ERL_EPMD_PORT`); see `common/mod.rs`.

mod common;

use std::time::Duration;

use common::*;
use dist_proto::Handshake;
use erl_term::{BigInt, Export, Port, Term};
use erldist::NodeEvent;
use test_support::erl::ErlNode;

/// Processes the tests talk to on the Erlang side:
/// - `responder`: `{From, X}` -> `From ! {reply, X}`;
/// - `rt`: `{roundtrip, From, M}` -> `From ! {rt, binary_to_term(term_to_binary(M))}`;
///   `{check, From, M, Src}` -> also compares `M` with the value of the
///   Erlang expression `Src` (a binary) and answers `{check, Src, M =:= V, Copy}`;
///   `{apply, From, F, A}` -> `From ! {applied, catch apply(F, A)}`;
///   `{give, From}` -> sends a pid, a port, a ref, an export fun and a closure made here;
/// - `victim`: exits with `R` on `{die, R}`.
const HELPERS: &str = r#"
register(responder, spawn(fun Loop() -> receive {From, X} -> From ! {reply, X} end, Loop() end)),
register(rt, spawn(fun Loop() ->
    receive
        {roundtrip, From, M} -> From ! {rt, binary_to_term(term_to_binary(M))};
        {check, From, M, Src} ->
            Same = try
                       {ok, Toks, _} = erl_scan:string(unicode:characters_to_list(Src) ++ "."),
                       {ok, [E]} = erl_parse:parse_exprs(Toks),
                       {value, V, _} = erl_eval:expr(E, erl_eval:new_bindings()),
                       M =:= V
                   catch C:R -> {C, R}
                   end,
            From ! {check, Src, Same, binary_to_term(term_to_binary(M))};
        {apply, From, F, A} -> From ! {applied, catch apply(F, A)};
        {give, From} ->
            From ! {given, self(), hd(erlang:ports()), make_ref(), fun erlang:abs/1,
                    fun(X) -> X * 2 end}
    end,
    Loop()
end)),
register(victim, spawn(fun() -> receive {die, R} -> exit(R) end end)),
ok.
"#;

fn erl_with_helpers(d: &test_support::Daemon, tag: &str) -> ErlNode {
    let mut e = erl(d, tag, COOKIE);
    assert_eq!(eval(&mut e, HELPERS), "ok");
    e
}

fn big(negative: bool, pow2: usize) -> Term {
    let mut mag = vec![0u8; pow2 / 8 + 1];
    mag[pow2 / 8] = 1 << (pow2 % 8);
    Term::BigInt(BigInt::from_sign_magnitude(negative, mag))
}

// ---------------------------------------------------------------------------
// 1. Pings
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pings_both_ways() {
    let d = daemon();
    let mut e = erl(&d, "ping", COOKIE);
    let erl_node = e.node().to_owned();

    // Rust dials Erlang.
    let a = start(config(&d, "pinga", COOKIE)).await;
    assert!(a.registered_extended(), "epmdx speaks the extension");
    assert!(within(LONG, "rust ping", a.ping(&erl_node)).await);
    let conns = a.connections();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].peer, erl_node);
    assert_eq!(conns[0].transport.name(), "inet_tcp");
    assert_eq!(
        eval(&mut e, &format!("lists:member('{}', nodes()).", a.name())),
        "true"
    );

    // Erlang dials Rust (a node it has never talked to).
    let b = start(config(&d, "pingb", COOKIE)).await;
    let mut events = b.events();
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", b.name())),
        "pong"
    );
    let ev = within(LONG, "Up event", events.recv()).await.unwrap();
    assert_eq!(ev, NodeEvent::Up(erl_node.clone()));
    // And back over the connection Erlang made.
    assert!(within(LONG, "ping back", b.ping(&erl_node)).await);

    // A hidden node is in nodes(hidden) only.
    let mut hc = config(&d, "pingh", COOKIE);
    hc.hidden = true;
    let h = start(hc).await;
    assert!(within(LONG, "hidden ping", h.ping(&erl_node)).await);
    assert_eq!(
        eval(
            &mut e,
            &format!(
                "{{lists:member('{0}', nodes()), lists:member('{0}', nodes(hidden))}}.",
                h.name()
            )
        ),
        "{false,true}"
    );

    // Erlang pinging a Rust name nobody registered: pang, quickly.
    assert_eq!(
        eval(
            &mut e,
            &format!("net_adm:ping('rust_nobody_{}@localhost').", d.port)
        ),
        "pang"
    );
    for n in [a, b, h] {
        n.stop();
    }
}

// ---------------------------------------------------------------------------
// 2. Messages
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_both_ways() {
    let d = daemon();
    let mut e = erl_with_helpers(&d, "msg");
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "msg", COOKIE)).await;
    let echo = spawn_echo(node.register_mailbox("echo").unwrap());

    // Erlang -> Rust registered mailbox -> back to the Erlang pid.
    let got = eval(
        &mut e,
        &format!(
            "{{echo, '{}'}} ! {{self(), {{hello, 42, <<\"bin\">>, \"str\", [1.5]}}}}, \
             receive {{hello, _, _, _, _}} = M -> M after 15000 -> timeout end.",
            node.name()
        ),
    );
    assert_eq!(got, "{hello,42,<<\"bin\">>,\"str\",[1.5]}");

    // Several in a row keep their order.
    let got = eval(
        &mut e,
        &format!(
            "[{{echo, '{}'}} ! {{self(), {{n, I}}}} || I <- lists:seq(1, 50)], \
             [receive {{n, J}} -> J after 15000 -> timeout end || _ <- lists:seq(1, 50)] \
             =:= lists:seq(1, 50).",
            node.name()
        ),
    );
    assert_eq!(got, "true");

    // Rust -> Erlang registered process, reply to our pid.
    let mut mb = node.mailbox();
    let me = Term::Pid(mb.pid().clone());
    within(
        LONG,
        "send_named",
        mb.send_named(
            "responder",
            &erl_node,
            tuple(vec![me.clone(), atom("ping")]),
        ),
    )
    .await
    .unwrap();
    let r = recv(&mut mb, LONG, "{reply, ping}").await;
    assert_eq!(r, tuple(vec![atom("reply"), atom("ping")]));

    // Rust -> Erlang pid (SEND), found with rpc.
    let pid = within(
        LONG,
        "whereis",
        node.rpc(
            &erl_node,
            "erlang",
            "whereis",
            vec![atom("responder")],
            Duration::from_secs(LONG),
        ),
    )
    .await
    .unwrap();
    let Term::Pid(pid) = pid else {
        panic!("whereis(responder) gave {pid}")
    };
    mb.send(&pid, tuple(vec![me, Term::from(7)])).await.unwrap();
    let r = recv(&mut mb, LONG, "{reply, 7}").await;
    assert_eq!(r, tuple(vec![atom("reply"), Term::from(7)]));

    // Erlang -> an unregistered Rust pid it learnt from a message.
    let mut inbox = node.register_mailbox("inbox").unwrap();
    let mut other = node.mailbox();
    inbox
        .send_named(
            "responder",
            &erl_node,
            tuple(vec![Term::Pid(other.pid().clone()), atom("to_other")]),
        )
        .await
        .unwrap();
    let r = recv(&mut other, LONG, "reply to the other mailbox").await;
    assert_eq!(r, tuple(vec![atom("reply"), atom("to_other")]));
    assert!(inbox.try_recv().is_none());

    echo.abort();
    node.stop();
    assert_no_task_panics();
}

// ---------------------------------------------------------------------------
// 3. rpc
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpc_calls() {
    let d = daemon();
    let mut e = erl(&d, "rpc", COOKIE);
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "rpc", COOKIE)).await;
    let t = Duration::from_secs(LONG);
    let rpc = |m: &'static str, f: &'static str, a: Vec<Term>| {
        let node = node.clone();
        let peer = erl_node.clone();
        async move {
            within(
                LONG + 5,
                &format!("rpc {m}:{f}"),
                node.rpc(&peer, m, f, a, t),
            )
            .await
            .unwrap_or_else(|err| panic!("rpc {m}:{f}: {err}"))
        }
    };

    assert_eq!(rpc("erlang", "node", vec![]).await, atom(&erl_node));
    assert_eq!(
        rpc("lists", "seq", vec![Term::from(1), Term::from(10)]).await,
        Term::list((1..=10).map(Term::from).collect::<Vec<_>>())
    );
    let release = eval(&mut e, "erlang:system_info(otp_release).");
    let got = rpc("erlang", "system_info", vec![atom("otp_release")]).await;
    assert_eq!(
        got,
        Term::String(release.trim_matches('"').as_bytes().to_vec()),
        "erl says {release}"
    );

    // A big list, both ways.
    let n = 100_000i64;
    let list = Term::List((0..n).map(Term::from).collect());
    let rev = rpc("lists", "reverse", vec![list]).await;
    assert_eq!(
        rev,
        Term::List((0..n).rev().map(Term::from).collect()),
        "lists:reverse of {n} integers"
    );

    // A function that raises: {badrpc, {'EXIT', {boom, Stack}}}.
    let r = rpc("erlang", "error", vec![atom("boom")]).await;
    assert!(tagged(&r, "badrpc"), "{r}");
    let exit = elem(&r, 1);
    assert!(tagged(exit, "EXIT"), "{r}");
    assert_eq!(elem(elem(exit, 1), 0), &atom("boom"), "{r}");
    assert!(elem(elem(exit, 1), 1).is_list(), "stack trace in {r}");
    // exit/1: {badrpc, {'EXIT', bye}}.
    let r = rpc("erlang", "exit", vec![atom("bye")]).await;
    assert_eq!(
        r,
        tuple(vec![atom("badrpc"), tuple(vec![atom("EXIT"), atom("bye")])])
    );

    // An unknown module: {badrpc, {'EXIT', {undef, [{no_such_module, f, [1], _} | _]}}}.
    let r = rpc("no_such_module", "f", vec![Term::from(1)]).await;
    assert!(tagged(&r, "badrpc"), "{r}");
    let reason = elem(elem(&r, 1), 1);
    assert_eq!(elem(reason, 0), &atom("undef"), "{r}");
    let frames = elem(reason, 1).to_list().expect("stack list");
    assert_eq!(elem(&frames[0], 0), &atom("no_such_module"), "{r}");
    assert_eq!(elem(&frames[0], 1), &atom("f"), "{r}");

    // Output from the called function goes to the caller as group leader.
    assert_eq!(
        rpc(
            "io",
            "format",
            vec![Term::String(b"hello from rpc~n".to_vec())]
        )
        .await,
        atom("ok")
    );

    // An rpc to a node that does not exist fails fast, with an error.
    let r = within(
        LONG,
        "rpc to nobody",
        node.rpc(
            &format!("nobody_{}@localhost", d.port),
            "erlang",
            "node",
            vec![],
            t,
        ),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    node.stop();
    assert_no_task_panics();
}

// ---------------------------------------------------------------------------
// 4. Every term type through Erlang's term_to_binary/binary_to_term
// ---------------------------------------------------------------------------

/// Terms built in Rust, with the Erlang expression that makes the same term.
fn literal_cases() -> Vec<(Term, String)> {
    let mut v: Vec<(Term, String)> = Vec::new();
    let mut add = |t: Term, src: &str| v.push((t, src.to_owned()));
    // Atoms.
    add(atom("hello"), "hello");
    add(atom(""), "''");
    add(atom("true"), "true");
    add(atom("with space"), "'with space'");
    add(atom("héllo_日本_ñ"), "'héllo_日本_ñ'");
    add(
        atom(&"ü".repeat(255)),
        "list_to_atom(lists:duplicate(255, 252))",
    );
    // Integers: small, INTEGER_EXT edges, i64 edges, bignums.
    add(Term::from(0), "0");
    add(Term::from(255), "255");
    add(Term::from(256), "256");
    add(Term::from(-1), "-1");
    add(Term::from(2147483647), "2147483647");
    add(Term::from(2147483648i64), "2147483648");
    add(Term::from(-2147483648i64), "-2147483648");
    add(Term::from(-2147483649i64), "-2147483649");
    add(Term::from(i64::MAX), "9223372036854775807");
    add(Term::from(i64::MIN), "-9223372036854775808");
    add(Term::from(u64::MAX), "(1 bsl 64) - 1");
    add(big(false, 64), "1 bsl 64");
    add(big(true, 64), "-(1 bsl 64)");
    add(big(false, 1000), "1 bsl 1000");
    add(big(true, 1000), "-(1 bsl 1000)");
    add(big(false, 4000), "1 bsl 4000");
    add(big(true, 4000), "-(1 bsl 4000)");
    // Floats.
    add(Term::Float(0.0), "0.0");
    add(Term::Float(1.5), "1.5");
    add(Term::Float(-2.25), "-2.25");
    add(Term::Float(0.1), "0.1");
    add(Term::Float(1.0e300), "1.0e300");
    add(Term::Float(-1.0e-300), "-1.0e-300");
    add(Term::Float(f64::MAX), "1.7976931348623157e308");
    add(Term::Float(5.0e-324), "5.0e-324");
    // Binaries and bitstrings.
    add(Term::binary(Vec::new()), "<<>>");
    add(Term::binary(vec![1, 2, 3]), "<<1,2,3>>");
    add(
        Term::binary((0..1 << 20).map(|i| i as u8).collect::<Vec<u8>>()),
        "binary:copy(list_to_binary(lists:seq(0, 255)), 4096)",
    );
    add(
        Term::BitBinary {
            bytes: vec![0b1010_0000].into(),
            bits: 3,
        },
        "<<5:3>>",
    );
    add(
        Term::BitBinary {
            bytes: vec![1, 2, 0x30].into(),
            bits: 4,
        },
        "<<1,2,3:4>>",
    );
    // Lists and strings.
    add(Term::Nil, "[]");
    add(
        Term::List(vec![Term::from(1), atom("a"), Term::String(b"x".to_vec())]),
        "[1, a, \"x\"]",
    );
    add(
        Term::ImproperList(vec![Term::from(1), Term::from(2)], Box::new(atom("c"))),
        "[1, 2 | c]",
    );
    add(
        Term::ImproperList(vec![atom("a")], Box::new(Term::binary(b"t".to_vec()))),
        "[a | <<\"t\">>]",
    );
    add(Term::String(b"hello".to_vec()), "\"hello\"");
    add(
        Term::List(vec![Term::from(104), Term::from(233), Term::from(26085)]),
        "[104, 233, 26085]",
    );
    add(
        Term::String(vec![b'a'; 70_000]),
        "lists:duplicate(70000, $a)",
    );
    add(
        Term::List((0..100_000).map(Term::from).collect()),
        "lists:seq(0, 99999)",
    );
    let mut deep = Term::Nil;
    for _ in 0..200 {
        deep = Term::List(vec![deep]);
    }
    add(
        deep,
        "lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, 200))",
    );
    // Tuples.
    add(Term::Tuple(vec![]), "{}");
    add(tuple(vec![atom("a")]), "{a}");
    add(
        tuple(vec![
            Term::from(1),
            tuple(vec![Term::from(2), tuple(vec![])]),
        ]),
        "{1, {2, {}}}",
    );
    add(
        Term::Tuple((0..1000).map(Term::from).collect()),
        "list_to_tuple(lists:seq(0, 999))",
    );
    // Maps.
    add(Term::Map(vec![]), "#{}");
    add(Term::Map(vec![(atom("a"), Term::from(1))]), "#{a => 1}");
    add(
        Term::Map(vec![
            (
                atom("a"),
                Term::Map(vec![(
                    atom("b"),
                    Term::List(vec![Term::from(1), Term::Map(vec![])]),
                )]),
            ),
            (
                tuple(vec![Term::from(1), Term::from(2)]),
                Term::binary(b"x".to_vec()),
            ),
            (Term::Float(1.5), Term::String(b"s".to_vec())),
            (
                Term::binary(b"k".to_vec()),
                Term::Map(vec![(atom("c"), atom("d"))]),
            ),
        ]),
        "#{a => #{b => [1, #{}]}, {1, 2} => <<\"x\">>, 1.5 => \"s\", <<\"k\">> => #{c => d}}",
    );
    add(
        Term::Map(
            (1..=100)
                .rev()
                .map(|i: i64| (Term::from(i), Term::from(i * i)))
                .collect(),
        ),
        "maps:from_list([{I, I * I} || I <- lists:seq(1, 100)])",
    );
    add(
        Term::Export(Box::new(Export {
            module: erl_term::Atom::new("erlang").unwrap(),
            function: erl_term::Atom::new("abs").unwrap(),
            arity: 1,
        })),
        "fun erlang:abs/1",
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terms_round_trip_through_erlang() {
    let d = daemon();
    let mut e = erl_with_helpers(&d, "terms");
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "terms", COOKIE)).await;
    let mut mb = node.mailbox();
    let me = Term::Pid(mb.pid().clone());

    // Literals: Erlang compares each with its own spelling, and echoes it.
    let cases = literal_cases();
    let mut failures = Vec::new();
    for (t, src) in &cases {
        let msg = tuple(vec![
            atom("check"),
            me.clone(),
            t.clone(),
            Term::binary(src.as_bytes().to_vec()),
        ]);
        within(LONG, "send check", mb.send_named("rt", &erl_node, msg))
            .await
            .unwrap();
        let r = recv_match(&mut mb, LONG, src, |m| tagged(m, "check")).await;
        assert_eq!(elem(&r, 1), &Term::binary(src.as_bytes().to_vec()));
        if elem(&r, 2) != &atom("true") {
            failures.push(format!("Erlang: received value =/= {src}: {}", elem(&r, 2)));
        }
        if elem(&r, 3) != t {
            failures.push(format!("round trip of {src} came back different"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Terms made on the Erlang side: pid, port, ref, export fun, closure.
    within(
        LONG,
        "give",
        mb.send_named("rt", &erl_node, tuple(vec![atom("give"), me.clone()])),
    )
    .await
    .unwrap();
    let given = recv_match(&mut mb, LONG, "given", |m| tagged(m, "given")).await;
    let g = given.as_tuple().unwrap().to_vec();
    assert!(
        matches!(g[1], Term::Pid(ref p) if p.node.as_str() == erl_node),
        "{given}"
    );
    assert!(
        matches!(g[2], Term::Port(ref p) if p.node.as_str() == erl_node),
        "{given}"
    );
    assert!(
        matches!(g[3], Term::Reference(ref r) if r.node.as_str() == erl_node),
        "{given}"
    );
    assert!(matches!(g[4], Term::Export(_)), "{given}");
    assert!(matches!(g[5], Term::Fun(_)), "{given}");
    // The export fun made in Erlang is the one made in Rust.
    assert_eq!(g[4], cases.last().unwrap().0);

    // Identifiers of both nodes, and a term holding everything at once.
    let rust_port = Term::Port(Port {
        node: erl_term::Atom::new(node.name()).unwrap(),
        id: 12345,
        creation: node.creation(),
    });
    let mut others = vec![
        me.clone(),
        Term::Reference(node.make_ref()),
        rust_port,
        g[1].clone(),
        g[2].clone(),
        g[3].clone(),
        g[4].clone(),
        g[5].clone(),
    ];
    let mut all: Vec<Term> = cases.iter().map(|(t, _)| t.clone()).collect();
    all.extend(others.iter().cloned());
    others.push(Term::Tuple(all));
    for t in others {
        let msg = tuple(vec![atom("roundtrip"), me.clone(), t.clone()]);
        within(LONG, "send roundtrip", mb.send_named("rt", &erl_node, msg))
            .await
            .unwrap();
        let r = recv_match(&mut mb, LONG, "rt", |m| tagged(m, "rt")).await;
        assert!(elem(&r, 1) == &t, "round trip changed {t}");
    }

    // The Erlang closure, carried by Rust, still works in Erlang; so does
    // the Rust-made export fun.
    for (f, arg, want) in [
        (g[5].clone(), 21, 42),
        (cases.last().unwrap().0.clone(), -5, 5),
    ] {
        let msg = tuple(vec![
            atom("apply"),
            me.clone(),
            f,
            Term::List(vec![Term::from(arg)]),
        ]);
        mb.send_named("rt", &erl_node, msg).await.unwrap();
        let r = recv_match(&mut mb, LONG, "applied", |m| tagged(m, "applied")).await;
        assert_eq!(elem(&r, 1), &Term::from(want), "{r}");
    }

    // And Erlang can message the Rust pid it got back inside a term.
    assert_eq!(
        eval(&mut e, "is_process_alive(whereis(rt))."),
        "true",
        "the Erlang helper survived"
    );
    node.stop();
    assert_no_task_panics();
}

// ---------------------------------------------------------------------------
// 5. Node down, links and monitors
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_halt_is_seen_by_rust() {
    let d = daemon();
    let mut e = erl_with_helpers(&d, "halt");
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "halt", COOKIE)).await;
    let mut events = node.events();

    let r = within(
        LONG,
        "whereis",
        node.rpc(
            &erl_node,
            "erlang",
            "whereis",
            vec![atom("responder")],
            Duration::from_secs(LONG),
        ),
    )
    .await
    .unwrap();
    let Term::Pid(pid) = r else {
        panic!("whereis gave {r}")
    };
    let mut watcher = node.mailbox();
    let mref = within(LONG, "monitor", watcher.monitor(&pid))
        .await
        .unwrap();
    let mut linked = node.mailbox();
    within(LONG, "link", linked.link(&pid)).await.unwrap();
    // Both signals are on the wire before the node goes.
    assert!(within(LONG, "ping", node.ping(&erl_node)).await);

    blocking(|| e.eval_nowait("erlang:halt().")).unwrap();

    let down = within(LONG, "NodeEvent::Down", async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { peer, reason }) if peer == erl_node => return reason,
                Ok(_) => {}
                Err(err) => panic!("events: {err}"),
            }
        }
    })
    .await;
    eprintln!("down: {down}");
    let m = recv(&mut watcher, LONG, "DOWN").await;
    assert_eq!(
        m,
        tuple(vec![
            atom("DOWN"),
            Term::Reference(mref),
            atom("process"),
            Term::Pid(pid.clone()),
            atom("noconnection"),
        ])
    );
    let m = recv(&mut linked, LONG, "EXIT").await;
    assert_eq!(
        m,
        tuple(vec![atom("EXIT"), Term::Pid(pid), atom("noconnection")])
    );
    assert!(node.connections().is_empty());
    assert!(blocking(|| e.wait_exit(Duration::from_secs(LONG))).is_some());
    node.stop();
    assert_no_task_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_disconnect_and_stop_are_seen_by_erlang() {
    let d = daemon();
    let mut e = erl(&d, "nodedown", COOKIE);
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "nodedown", COOKIE)).await;
    let name = node.name().to_owned();

    // Dropping the connection.
    assert!(within(LONG, "ping", node.ping(&erl_node)).await);
    assert_eq!(
        eval(&mut e, &format!("monitor_node('{name}', true).")),
        "true"
    );
    node.disconnect(&erl_node);
    assert_eq!(
        eval(
            &mut e,
            "receive {nodedown, N} -> N after 15000 -> timeout end."
        ),
        name
    );

    // Erlang reconnects by itself, then the whole node stops.
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{name}').")), "pong");
    assert_eq!(
        eval(&mut e, &format!("monitor_node('{name}', true).")),
        "true"
    );
    node.stop();
    assert_eq!(
        eval(
            &mut e,
            "receive {nodedown, N} -> N after 15000 -> timeout end."
        ),
        name
    );
    // It is gone from epmd too, so a new ping is pang.
    let alive = name.split('@').next().unwrap().to_owned();
    let gone = format!(
        "Wait = fun W(0) -> still_there; W(K) -> \
           case net_adm:names() of \
             {{ok, L}} -> case lists:keymember(\"{alive}\", 1, L) of \
                          true -> timer:sleep(100), W(K - 1); false -> gone end; \
             Other -> Other end end, Wait(150)."
    );
    assert_eq!(eval(&mut e, &gone), "gone");
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{name}').")), "pang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_and_monitors_carry_exit_reasons() {
    let d = daemon();
    let mut e = erl_with_helpers(&d, "links");
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "links", COOKIE)).await;

    // An Erlang process exits with a reason: the linked mailbox gets
    // {'EXIT', Pid, Reason}, the monitoring one {'DOWN', ...}.
    let r = within(
        LONG,
        "whereis",
        node.rpc(
            &erl_node,
            "erlang",
            "whereis",
            vec![atom("victim")],
            Duration::from_secs(LONG),
        ),
    )
    .await
    .unwrap();
    let Term::Pid(victim) = r else {
        panic!("whereis gave {r}")
    };
    let mut linked = node.mailbox();
    let mut watcher = node.mailbox();
    within(LONG, "link", linked.link(&victim)).await.unwrap();
    let mref = within(LONG, "monitor", watcher.monitor(&victim))
        .await
        .unwrap();
    let reason = tuple(vec![atom("shutdown"), Term::binary(b"bye".to_vec())]);
    linked
        .send_named(
            "victim",
            &erl_node,
            tuple(vec![atom("die"), reason.clone()]),
        )
        .await
        .unwrap();
    let m = recv(&mut linked, LONG, "EXIT from victim").await;
    assert_eq!(
        m,
        tuple(vec![
            atom("EXIT"),
            Term::Pid(victim.clone()),
            reason.clone()
        ])
    );
    let m = recv(&mut watcher, LONG, "DOWN from victim").await;
    assert_eq!(
        m,
        tuple(vec![
            atom("DOWN"),
            Term::Reference(mref),
            atom("process"),
            Term::Pid(victim.clone()),
            reason,
        ])
    );
    // Linking to a dead process gives noproc.
    let mut late = node.mailbox();
    late.link(&victim).await.unwrap();
    let m = recv(&mut late, LONG, "EXIT noproc").await;
    assert_eq!(
        m,
        tuple(vec![atom("EXIT"), Term::Pid(victim), atom("noproc")])
    );

    // Dropping Rust mailboxes: exit signals and DOWN messages reach Erlang.
    // The eval process traps exits; mailbox `a` links to it, Erlang links
    // to mailbox `b` and monitors mailbox `c`.
    let mut holder = node.register_mailbox("holder").unwrap();
    assert_eq!(
        eval(
            &mut e,
            &format!(
                "process_flag(trap_exit, true), {{holder, '{}'}} ! {{eval, self()}}, ok.",
                node.name()
            )
        ),
        "ok"
    );
    let m = recv(&mut holder, LONG, "eval pid").await;
    let Term::Pid(eval_pid) = elem(&m, 1).clone() else {
        panic!("{m}")
    };
    let a = node.mailbox();
    let b = node.mailbox();
    let c = node.mailbox();
    a.link(&eval_pid).await.unwrap();
    let pids = tuple(vec![
        atom("pids"),
        Term::Pid(a.pid().clone()),
        Term::Pid(b.pid().clone()),
        Term::Pid(c.pid().clone()),
    ]);
    holder.send(&eval_pid, pids).await.unwrap();
    assert_eq!(
        eval(
            &mut e,
            "receive {pids, A, B, C} -> put(a, A), put(b, B), put(c, C), \
             link(B), put(mref, erlang:monitor(process, C)), ok \
             after 15000 -> timeout end."
        ),
        "ok"
    );
    // The link and monitor requests are processed before the drops below:
    // a round trip through Erlang's net_kernel on the same connection.
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", node.name())),
        "pong"
    );
    drop(a);
    assert_eq!(
        eval(
            &mut e,
            "receive {'EXIT', P, R} -> {P =:= get(a), R} after 15000 -> timeout end."
        ),
        "{true,normal}"
    );
    drop(b);
    assert_eq!(
        eval(
            &mut e,
            "receive {'EXIT', P, R} -> {P =:= get(b), R} after 15000 -> timeout end."
        ),
        "{true,normal}"
    );
    drop(c);
    assert_eq!(
        eval(
            &mut e,
            "Ref = get(mref), receive {'DOWN', Ref, process, P, R} -> {P =:= get(c), R} \
             after 15000 -> timeout end."
        ),
        "{true,normal}"
    );
    node.stop();
    assert_no_task_panics();
}

// ---------------------------------------------------------------------------
// More signals: exit/2, unlink, monitors by name
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exit_signals_unlink_and_name_monitors() {
    let d = daemon();
    let mut e = erl_with_helpers(&d, "signals");
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "signals", COOKIE)).await;
    let rust = node.name().to_owned();
    let mut holder = node.register_mailbox("holder").unwrap();
    assert_eq!(
        eval(
            &mut e,
            &format!("process_flag(trap_exit, true), {{holder, '{rust}'}} ! {{eval, self()}}, ok.")
        ),
        "ok"
    );
    let m = recv(&mut holder, LONG, "eval pid").await;
    let Term::Pid(eval_pid) = elem(&m, 1).clone() else {
        panic!("{m}")
    };
    let hand_over = |tag: &str, pid: &erl_term::Pid| tuple(vec![atom(tag), Term::Pid(pid.clone())]);

    // exit(RustPid, Reason) from Erlang arrives as {'EXIT', From, Reason}.
    let mut m1 = node.mailbox();
    holder
        .send(&eval_pid, hand_over("m1", m1.pid()))
        .await
        .unwrap();
    assert_eq!(
        eval(
            &mut e,
            "receive {m1, P} -> exit(P, custom_reason) after 10000 -> timeout end."
        ),
        "true"
    );
    let got = recv(&mut m1, LONG, "exit/2").await;
    assert_eq!(
        got,
        tuple(vec![
            atom("EXIT"),
            Term::Pid(eval_pid.clone()),
            atom("custom_reason")
        ])
    );

    // Erlang links then unlinks: dropping the mailbox sends nothing.
    let m2 = node.mailbox();
    holder
        .send(&eval_pid, hand_over("m2", m2.pid()))
        .await
        .unwrap();
    assert_eq!(
        eval(
            &mut e,
            "receive {m2, P} -> link(P), unlink(P), put(m2, P), ok after 10000 -> timeout end."
        ),
        "ok"
    );
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{rust}').")), "pong");
    drop(m2);
    assert_eq!(
        eval(
            &mut e,
            &format!(
                "net_adm:ping('{rust}'), receive {{'EXIT', _, _}} = X -> X after 1000 -> none end."
            )
        ),
        "none",
        "an exit signal crossed an unlink"
    );

    // Rust links then unlinks: the Erlang process's exit sends nothing.
    assert_eq!(
        eval(
            &mut e,
            "register(v2, spawn(fun() -> receive {die, R} -> exit(R) end end)), ok."
        ),
        "ok"
    );
    let v2 = match node
        .rpc(
            &erl_node,
            "erlang",
            "whereis",
            vec![atom("v2")],
            Duration::from_secs(LONG),
        )
        .await
        .unwrap()
    {
        Term::Pid(p) => p,
        other => panic!("whereis(v2) gave {other}"),
    };
    let mut m3 = node.mailbox();
    let mut m4 = node.mailbox();
    m3.link(&v2).await.unwrap();
    m3.unlink(&v2).await.unwrap();
    m4.monitor(&v2).await.unwrap();
    m4.send(&v2, tuple(vec![atom("die"), atom("bang")]))
        .await
        .unwrap();
    let down = recv(&mut m4, LONG, "DOWN from v2").await;
    assert_eq!(elem(&down, 4), &atom("bang"), "{down}");
    assert!(
        m3.recv_timeout(Duration::from_millis(500)).await.is_none(),
        "an exit signal crossed an unlink"
    );

    // Rust monitors an Erlang name nobody has: a DOWN with noproc.
    let mut m5 = node.mailbox();
    let r = m5.monitor_named("nosuch", &erl_node).await.unwrap();
    let down = recv(&mut m5, LONG, "DOWN noproc").await;
    assert_eq!(elem(&down, 0), &atom("DOWN"), "{down}");
    assert_eq!(elem(&down, 1), &Term::Reference(r), "{down}");
    assert_eq!(elem(&down, 4), &atom("noproc"), "{down}");
    node.stop();
    assert_no_task_panics();
}

/// Erlang and Rust ping each other at the same moment, eight times: both
/// pings must succeed and one connection must remain.
///
/// Ignored until erldist is fixed (reported); fails about one run in ten
/// under load (or with `RUST_LOG=erldist=debug`): when the acceptor has
/// answered `ok` to Erlang's attempt (peer check `Free`) and a local call
/// then dials Erlang, the incoming connection is installed over the
/// `Connecting` slot; Erlang resolves the simultaneous connect by killing
/// its own attempt, that connection drops, and the mailbox of the in-flight
/// `ping` gets `{'DOWN', _, _, _, noconnection}` for a monitor that was
/// registered before any connection existed, so `ping` returns false while
/// the outgoing connection comes up fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_connects_settle_on_one_connection() {
    let d = daemon();
    let mut e = erl(&d, "simul", COOKIE);
    let erl_node = e.node().to_owned();
    for i in 0..8 {
        let node = start(config(&d, &format!("simul{i}"), COOKIE)).await;
        let name = node.name().to_owned();
        assert_eq!(
            eval(
                &mut e,
                &format!(
                    "Self = self(), spawn(fun() -> Self ! {{simping, net_adm:ping('{name}')}} end), ok."
                )
            ),
            "ok"
        );
        let ok = within(LONG, "rust ping", node.ping(&erl_node)).await;
        assert!(ok, "round {i}: rust ping failed");
        assert_eq!(
            eval(
                &mut e,
                "receive {simping, R} -> R after 15000 -> timeout end."
            ),
            "pong",
            "round {i}: erlang ping"
        );
        assert_eq!(node.connections().len(), 1, "round {i}");
        // The surviving connection carries traffic both ways.
        assert!(within(LONG, "rust ping again", node.ping(&erl_node)).await);
        assert_eq!(eval(&mut e, &format!("net_adm:ping('{name}').")), "pong");
        node.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ticks_keep_idle_connections_and_detect_a_frozen_peer() {
    let d = daemon();
    let name = format!("erl_ticks_{}@localhost", d.port);
    let mut e =
        blocking(|| ErlNode::start(&name, COOKIE, d.port, &["-kernel", "net_ticktime", "4"]))
            .unwrap();
    let erl_node = e.node().to_owned();
    let mut cfg = config(&d, "ticks", COOKIE);
    cfg.net_ticktime = Duration::from_secs(4);
    let node = start(cfg).await;
    assert!(within(LONG, "ping", node.ping(&erl_node)).await);
    let mut events = node.events();

    // Idle for well over a tick time: both sides tick, nothing goes down.
    tokio::time::sleep(Duration::from_secs(7)).await;
    if let Ok(ev) = events.try_recv() {
        panic!("{ev:?} on an idle connection");
    }
    assert_eq!(node.connections().len(), 1);
    assert_eq!(
        eval(
            &mut e,
            &format!("lists:member('{}', nodes()).", node.name())
        ),
        "true"
    );

    // Freeze the Erlang node: its ticks stop, the Rust side gives up.
    let pid = e.pid().unwrap() as libc::pid_t;
    // SAFETY: signals to the PID of a child we spawned and still hold.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let t0 = std::time::Instant::now();
    let why = within(LONG, "tick timeout", async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { peer, reason }) if peer == erl_node => return reason,
                Ok(_) => {}
                Err(err) => panic!("events: {err}"),
            }
        }
    })
    .await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    eprintln!("down after {:?}: {why}", t0.elapsed());
    assert!(why.contains("tick"), "reason: {why}");
    assert!(node.connections().is_empty());
    node.stop();
    assert_no_task_panics();
}

/// Monitors by name, both ways: the DOWN message names `{Name, Node}`, as
/// between Erlang nodes.
///
/// Ignored until erldist is fixed (reported):
/// - it answers a MONITOR_P by name with a MONITOR_P_EXIT whose FromProc is
///   the mailbox's pid, so Erlang reports `{'DOWN', R, process, <pid>,
///   normal}` instead of `{'DOWN', R, process, {target, Node}, normal}`;
/// - a Rust mailbox's `monitor_named` DOWN carries the bare name
///   (`{'DOWN', R, process, nosuch, noproc}`), not `{nosuch, Node}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_monitor_by_name_of_a_rust_mailbox() {
    let d = daemon();
    let mut e = erl(&d, "namemon", COOKIE);
    let node = start(config(&d, "namemon", COOKIE)).await;
    let rust = node.name().to_owned();
    // Erlang monitors a registered Rust mailbox by name.
    let target = node.register_mailbox("target").unwrap();
    assert_eq!(
        eval(
            &mut e,
            &format!("put(nref, erlang:monitor(process, {{target, '{rust}'}})), ok.")
        ),
        "ok"
    );
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{rust}').")), "pong");
    drop(target);
    assert_eq!(
        eval(
            &mut e,
            "R = get(nref), receive {'DOWN', R, process, Who, Why} -> {Who, Why} \
             after 10000 -> timeout end."
        ),
        format!("{{{{target,{rust}}},normal}}"),
        "Erlang's DOWN for a name monitor must name {{target, Node}}"
    );
    // ... and a name nobody has: noproc at once.
    assert_eq!(
        eval(
            &mut e,
            &format!(
                "R = erlang:monitor(process, {{nosuch, '{rust}'}}), \
                 receive {{'DOWN', R, process, Who, Why}} -> {{Who, Why}} \
                 after 10000 -> timeout end."
            )
        ),
        format!("{{{{nosuch,{rust}}},noproc}}")
    );
    // Rust monitors Erlang processes by name.
    let erl_node = e.node().to_owned();
    let mut mb = node.mailbox();
    let r = mb.monitor_named("nosuch", &erl_node).await.unwrap();
    let down = recv(&mut mb, LONG, "DOWN noproc").await;
    assert_eq!(
        down,
        tuple(vec![
            atom("DOWN"),
            Term::Reference(r),
            atom("process"),
            tuple(vec![atom("nosuch"), atom(&erl_node)]),
            atom("noproc"),
        ])
    );
    node.stop();
    assert_no_task_panics();
}

/// Answers `net_kernel` `is_auth` calls arriving on an established raw
/// connection, as a real node would, until the socket closes.
async fn answer_is_auth(mut s: tokio::net::TcpStream, mut buf: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let body: Vec<u8> = buf[4..4 + len].to_vec();
            buf.drain(..4 + len);
            if body.first() != Some(&112) {
                continue;
            }
            let Ok((ctrl, used)) = erl_term::decode_used(&body[1..]) else {
                continue;
            };
            let payload = erl_term::decode(&body[1 + used..]).ok();
            let is_reg_send_to_kernel = ctrl.as_tuple().is_some_and(|c| {
                c.first() == Some(&Term::from(6)) && c.get(3) == Some(&atom("net_kernel"))
            });
            let Some(call) = payload.filter(|_| is_reg_send_to_kernel) else {
                continue;
            };
            let from = elem(&call, 1);
            let (Term::Pid(to), tag) = (elem(from, 0).clone(), elem(from, 1).clone()) else {
                continue;
            };
            let ctrl = tuple(vec![Term::from(2), atom(""), Term::Pid(to)]);
            let msg = tuple(vec![tag, atom("yes")]);
            let mut pkt = vec![112, 131];
            erl_term::encode_to(&ctrl, &mut pkt);
            pkt.push(131);
            erl_term::encode_to(&msg, &mut pkt);
            let mut framed = (pkt.len() as u32).to_be_bytes().to_vec();
            framed.extend(pkt);
            if s.write_all(&framed).await.is_err() {
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Deterministic form of the simultaneous-connect race: while a peer's
/// incoming handshake is under way (the acceptor has answered `ok` and sent
/// its challenge), a local `ping` of that peer must wait for that
/// connection, as OTP's `net_kernel` does for a pending connection, and not
/// dial the peer a second time. (A second dial makes a real OTP peer see a
/// simultaneous connect and kill its own attempt, i.e. the connection this
/// node is about to install; see `simultaneous_connects_settle_on_one_connection`.)
///
/// The peer is played by hand: a `dist_proto::Connector` that pauses before
/// its challenge_reply, and a listener registered in epmd under its name
/// that reports whether the node dials it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incoming_handshake_in_progress_is_a_pending_connection() {
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let d = daemon();
    let node = start(config(&d, "pending", COOKIE)).await;
    let alive = format!("fake_{}", d.port);
    let fake = format!("{alive}@localhost");
    let decoy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let req = epmd_proto::legacy::Alive2Req {
        port: decoy.local_addr().unwrap().port(),
        node_type: 77,
        protocol: 0,
        high: 6,
        low: 6,
        name: alive.as_bytes(),
        extra: b"",
    };
    let _reg = epmd_client::Client::local(d.port)
        .register(&req)
        .await
        .expect("register the fake peer");

    // The fake peer dials the node and stops before its challenge_reply.
    let mut s1 = tokio::net::TcpStream::connect(listen_addr(&node))
        .await
        .unwrap();
    let mut c1 =
        dist_proto::Connector::new(probe_config(&fake, COOKIE), node.name(), Instant::now())
            .unwrap();
    let send_name = c1.poll_transmit().unwrap();
    s1.write_all(&send_name).await.unwrap();
    let reply = within(10, "status and challenge", async {
        let mut buf = [0u8; 1024];
        loop {
            let n = s1.read(&mut buf).await.unwrap();
            assert!(n > 0, "the node closed the fake peer's connection");
            c1.handle_input(&buf[..n], Instant::now());
            if let Some(r) = c1.poll_transmit() {
                return r;
            }
            if let Some(ev) = c1.poll_event() {
                panic!("handshake ended early: {ev:?}");
            }
        }
    })
    .await;

    // Now the node pings the fake peer.
    let pinger = {
        let node = node.clone();
        let fake = fake.clone();
        tokio::spawn(async move { node.ping(&fake).await })
    };
    let dialled = tokio::time::timeout(Duration::from_millis(1500), decoy.accept()).await;
    assert!(
        dialled.is_err(),
        "the node dialled {fake} while {fake}'s own connection was being accepted"
    );

    // The pending connection completes and carries the ping.
    s1.write_all(&reply).await.unwrap();
    let est = within(10, "challenge_ack", drive_connector(&mut s1, c1))
        .await
        .expect("handshake");
    tokio::spawn(answer_is_auth(s1, est.leftover));
    let ok = within(LONG, "ping over the pending connection", pinger)
        .await
        .unwrap();
    assert!(ok, "ping of {fake} failed");
    node.stop();
    assert_no_task_panics();
}

/// Once a peer's incoming connection is up, calls to that peer use it: the
/// node does not dial again (the peer is played by hand, as above).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_reuse_an_accepted_connection() {
    let d = daemon();
    let node = start(config(&d, "reuse", COOKIE)).await;
    let alive = format!("fake_{}", d.port);
    let fake = format!("{alive}@localhost");
    let decoy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let req = epmd_proto::legacy::Alive2Req {
        port: decoy.local_addr().unwrap().port(),
        node_type: 77,
        protocol: 0,
        high: 6,
        low: 6,
        name: alive.as_bytes(),
        extra: b"",
    };
    let _reg = epmd_client::Client::local(d.port)
        .register(&req)
        .await
        .expect("register the fake peer");
    let mut events = node.events();
    let mut s = tokio::net::TcpStream::connect(listen_addr(&node))
        .await
        .unwrap();
    let c = dist_proto::Connector::new(
        probe_config(&fake, COOKIE),
        node.name(),
        std::time::Instant::now(),
    )
    .unwrap();
    let est = within(10, "handshake", drive_connector(&mut s, c))
        .await
        .expect("handshake");
    assert_eq!(
        within(LONG, "Up", events.recv()).await.unwrap(),
        NodeEvent::Up(fake.clone())
    );
    tokio::spawn(answer_is_auth(s, est.leftover));
    let ok = within(LONG, "ping", node.ping(&fake)).await;
    assert!(ok, "ping over the accepted connection failed");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), decoy.accept())
            .await
            .is_err(),
        "the node dialled a peer it was already connected to"
    );
    node.stop();
    assert_no_task_panics();
}
