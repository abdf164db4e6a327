//! `erlang/otp_calls.txt` lists exactly the OTP functions the adapter
//! calls: read from the compiled modules' import tables, every call must be
//! listed, every listed line must still be called, and every listed
//! function must exist in the OTP this runs on (exported, or a BIF).
//! docs/compatibility.md compares the list against newer OTP releases.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use common::*;

#[test]
fn the_adapter_calls_only_listed_otp_functions() -> Result<()> {
    let listed: BTreeSet<String> =
        std::fs::read_to_string(repo_root().join("erlang/otp_calls.txt"))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
    let expr = format!(
        "Dir = \"{}\", \
         Beams = filelib:wildcard(filename:join(Dir, \"*.beam\")), \
         Own = [list_to_atom(filename:basename(B, \".beam\")) || B <- Beams], \
         Calls = lists:usort([{{M, F, A}} || B <- Beams, \
             {{ok, {{_, [{{imports, Is}}]}}}} <- [beam_lib:chunks(B, [imports])], \
             {{M, F, A}} <- Is, not lists:member(M, Own)]), \
         [begin \
              code:ensure_loaded(M), \
              Exists = erlang:function_exported(M, F, A) orelse erlang:is_builtin(M, F, A), \
              io:format(\"~s:~s/~w ~s~n\", [M, F, A, Exists]) \
          end || {{M, F, A}} <- Calls], \
         halt().",
        ebin().display()
    );
    let o = Command::new(test_support::erl::erl_bin()?)
        .args(["-noshell", "-eval", &expr])
        .output()
        .context("erl")?;
    ensure!(o.status.success(), "erl: {o:?}");
    let mut called = BTreeSet::new();
    let mut missing_in_otp = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let (call, exists) = line.split_once(' ').context("line")?;
        if exists != "true" {
            missing_in_otp.push(call.to_owned());
        }
        called.insert(call.to_owned());
    }
    ensure!(called.len() > 50, "too few calls read: {called:?}");
    let unlisted: Vec<_> = called.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&called).collect();
    ensure!(
        unlisted.is_empty(),
        "the adapter calls OTP functions missing from erlang/otp_calls.txt: {unlisted:?}"
    );
    ensure!(
        stale.is_empty(),
        "erlang/otp_calls.txt lists functions the adapter no longer calls: {stale:?}"
    );
    ensure!(
        missing_in_otp.is_empty(),
        "listed functions this OTP does not have: {missing_in_otp:?}"
    );
    Ok(())
}
