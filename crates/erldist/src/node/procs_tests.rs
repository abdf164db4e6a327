//! The process table's rules, without a runtime.

use super::*;

const ME: &str = "me@h";
const PEER: &str = "peer@h";

fn table() -> ProcTable<u32> {
    ProcTable::new(Atom::new(ME).unwrap(), 7)
}

fn remote(id: u32) -> Pid {
    Pid {
        node: Atom::new(PEER).unwrap(),
        id,
        serial: 0,
        creation: 3,
    }
}

fn reference(node: &str, n: u32) -> Reference {
    Reference {
        node: Atom::new(node).unwrap(),
        creation: 1,
        ids: vec![n, 0, 0],
    }
}

fn deliver(to: &Pid, msg: Term) -> Effect {
    Effect::Deliver {
        to: to.clone(),
        msg,
    }
}

fn named(name: &str, node: &str) -> Term {
    Term::Tuple(vec![Term::atom(name), Term::atom(node)])
}

#[test]
fn names_are_unique_and_freed_on_exit() {
    let mut t = table();
    let a = t.spawn(1);
    let b = t.spawn(2);
    assert_ne!(a, b);
    assert!(t.register(Atom::new("srv").unwrap(), &a));
    assert!(!t.register(Atom::new("srv").unwrap(), &b));
    assert_eq!(t.whereis(&Atom::new("srv").unwrap()), Some(a.clone()));
    assert_eq!(t.mailbox(&a), Some(&1));
    let (mb, fx) = t.exit(&a, &Term::atom("normal"));
    assert_eq!((mb, fx), (Some(1), vec![]));
    assert_eq!(t.whereis(&Atom::new("srv").unwrap()), None);
    assert!(t.register(Atom::new("srv").unwrap(), &b));
}

#[test]
fn another_incarnation_gets_nothing() {
    let mut t = table();
    let a = t.spawn(1);
    let old = Pid { creation: 6, ..a };
    assert_eq!(t.mailbox(&old), None);
}

#[test]
fn local_links_signal_both_ways() {
    let mut t = table();
    let a = t.spawn(1);
    let b = t.spawn(2);
    assert_eq!(t.link(&a, &b), vec![]);
    let (_, fx) = t.exit(&b, &Term::atom("boom"));
    let exit = Term::Tuple(vec![
        Term::atom("EXIT"),
        Term::Pid(b.clone()),
        Term::atom("boom"),
    ]);
    assert_eq!(fx, vec![deliver(&a, exit)]);
    // The link is gone from the survivor too.
    assert_eq!(t.exit(&a, &Term::atom("normal")).1, vec![]);
}

#[test]
fn linking_to_a_missing_process_is_noproc() {
    let mut t = table();
    let a = t.spawn(1);
    let b = t.spawn(2);
    t.exit(&b, &Term::atom("normal"));
    let exit = Term::Tuple(vec![
        Term::atom("EXIT"),
        Term::Pid(b.clone()),
        Term::atom("noproc"),
    ]);
    assert_eq!(t.link(&a, &b), vec![deliver(&a, exit)]);
}

#[test]
fn local_monitors_by_name_and_pid() {
    let mut t = table();
    let w = t.spawn(1);
    let s = t.spawn(2);
    t.register(Atom::new("srv").unwrap(), &s);
    let r1 = reference(ME, 1);
    let r2 = reference(ME, 2);
    assert_eq!(t.monitor(&w, Term::atom("srv"), ME, &r1), vec![]);
    assert_eq!(t.monitor(&w, Term::Pid(s.clone()), ME, &r2), vec![]);
    let (_, fx) = t.exit(&s, &Term::atom("bye"));
    assert_eq!(
        fx,
        vec![
            deliver(&w, down_msg(&r1, named("srv", ME), Term::atom("bye"))),
            deliver(&w, down_msg(&r2, Term::Pid(s.clone()), Term::atom("bye"))),
        ]
    );
    // Fired monitors are forgotten by their holder.
    assert_eq!(t.demonitor(&w, &r1), None);
    assert_eq!(t.demonitor(&w, &r2), None);
}

#[test]
fn monitoring_a_missing_local_process_fires_noproc_at_once() {
    let mut t = table();
    let w = t.spawn(1);
    let r = reference(ME, 1);
    assert_eq!(
        t.monitor(&w, Term::atom("nobody"), ME, &r),
        vec![deliver(
            &w,
            down_msg(&r, named("nobody", ME), Term::atom("noproc"))
        )]
    );
}

#[test]
fn a_local_demonitor_stops_the_down() {
    let mut t = table();
    let w = t.spawn(1);
    let s = t.spawn(2);
    let r = reference(ME, 1);
    t.monitor(&w, Term::Pid(s.clone()), ME, &r);
    assert_eq!(t.demonitor(&w, &r), None);
    assert_eq!(t.exit(&s, &Term::atom("bye")).1, vec![]);
}

#[test]
fn remote_monitors_are_returned_for_demonitor() {
    let mut t = table();
    let w = t.spawn(1);
    let r = reference(ME, 1);
    assert_eq!(t.monitor(&w, Term::atom("rex"), PEER, &r), vec![]);
    assert_eq!(
        t.demonitor(&w, &r),
        Some((PEER.to_owned(), Term::atom("rex")))
    );
    assert_eq!(t.demonitor(&w, &r), None);
}

#[test]
fn exits_signal_remote_links_and_watchers() {
    let mut t = table();
    let a = t.spawn(1);
    t.register(Atom::new("srv").unwrap(), &a);
    let (rp, r) = (remote(5), reference(PEER, 9));
    assert_eq!(
        t.incoming(
            PEER,
            Control::Link {
                from: rp.clone(),
                to: a.clone()
            }
        ),
        vec![]
    );
    let mon = Control::MonitorP {
        from: rp.clone(),
        to: Term::atom("srv"),
        reference: r.clone(),
    };
    assert_eq!(t.incoming(PEER, mon), vec![]);
    let (_, fx) = t.exit(&a, &Term::atom("bye"));
    assert_eq!(
        fx,
        vec![
            Effect::Send {
                peer: PEER.into(),
                signal: Signal::Exit {
                    from: a.clone(),
                    to: rp.clone(),
                    reason: Term::atom("bye")
                }
            },
            Effect::Send {
                peer: PEER.into(),
                signal: Signal::MonitorExit {
                    from: Term::atom("srv"),
                    to: rp,
                    reference: r,
                    reason: Term::atom("bye")
                }
            },
        ]
    );
}

#[test]
fn incoming_signals_for_missing_processes_are_answered() {
    let mut t = table();
    let gone = t.spawn(1);
    t.exit(&gone, &Term::atom("normal"));
    let (rp, r) = (remote(5), reference(PEER, 9));
    let send = |signal| Effect::Send {
        peer: PEER.into(),
        signal,
    };
    assert_eq!(
        t.incoming(
            PEER,
            Control::Link {
                from: rp.clone(),
                to: gone.clone()
            }
        ),
        vec![send(Signal::Exit {
            from: gone.clone(),
            to: rp.clone(),
            reason: Term::atom("noproc")
        })]
    );
    let mon = Control::MonitorP {
        from: rp.clone(),
        to: Term::atom("nobody"),
        reference: r.clone(),
    };
    assert_eq!(
        t.incoming(PEER, mon),
        vec![send(Signal::MonitorExit {
            from: Term::atom("nobody"),
            to: rp.clone(),
            reference: r,
            reason: Term::atom("noproc")
        })]
    );
    let unlink = Control::UnlinkId {
        id: Term::Integer(4),
        from: rp.clone(),
        to: gone.clone(),
    };
    assert_eq!(
        t.incoming(PEER, unlink),
        vec![send(Signal::UnlinkIdAck {
            id: Term::Integer(4),
            from: gone,
            to: rp
        })]
    );
}

#[test]
fn incoming_exit_and_monitor_exit_become_messages() {
    let mut t = table();
    let a = t.spawn(1);
    let (rp, r) = (remote(5), reference(ME, 3));
    t.monitor(&a, Term::atom("rex"), PEER, &r);
    let down = Control::MonitorPExit {
        from: Term::atom("rex"),
        to: a.clone(),
        reference: r.clone(),
        reason: Term::atom("killed"),
    };
    assert_eq!(
        t.incoming(PEER, down),
        vec![deliver(
            &a,
            down_msg(&r, named("rex", PEER), Term::atom("killed"))
        )]
    );
    assert_eq!(t.demonitor(&a, &r), None, "a fired monitor is forgotten");
    t.link(&a, &rp);
    let exit = Control::Exit {
        from: rp.clone(),
        to: a.clone(),
        reason: Term::atom("x"),
        explicit: false,
    };
    let msg = Term::Tuple(vec![Term::atom("EXIT"), Term::Pid(rp), Term::atom("x")]);
    assert_eq!(t.incoming(PEER, exit), vec![deliver(&a, msg)]);
    assert_eq!(t.exit(&a, &Term::atom("normal")).1, vec![], "link removed");
}

#[test]
fn a_lost_connection_breaks_links_and_fires_monitors() {
    let mut t = table();
    let a = t.spawn(1);
    let (rp, r) = (remote(5), reference(ME, 3));
    t.link(&a, &rp);
    t.monitor(&a, Term::atom("rex"), PEER, &r);
    // The peer's own monitor of `a` is forgotten, not signalled.
    let theirs = Control::MonitorP {
        from: remote(6),
        to: Term::Pid(a.clone()),
        reference: reference(PEER, 1),
    };
    t.incoming(PEER, theirs);
    let nc = Term::atom("noconnection");
    let exit = Term::Tuple(vec![Term::atom("EXIT"), Term::Pid(rp), nc.clone()]);
    assert_eq!(
        t.connection_lost(PEER),
        vec![
            deliver(&a, exit),
            deliver(&a, down_msg(&r, named("rex", PEER), nc))
        ]
    );
    assert_eq!(t.connection_lost(PEER), vec![]);
    assert_eq!(t.exit(&a, &Term::atom("normal")).1, vec![]);
}
