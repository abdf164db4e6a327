//! Integration tests of the Erlang adapter (`erlang/`): real OTP 25 nodes
//! started with `-epmd_module epmdx_epmd` and the `epmdx_*` distribution
//! modules register TCP, TLS and a Unix socket under one name with a
//! private epmdx daemon, choose a transport per peer, and interoperate with
//! stock nodes and Rust `erldist` nodes. The tests live in `tests/`; see
//! `docs/erlang.md` for the adapter itself.
