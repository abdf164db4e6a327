//! The registry against a model: the input bytes are read as a sequence of
//! register_legacy / register_ext / add_transports / remove_transport /
//! unregister / stop operations, applied to `Registry<()>` and to a naive
//! model, and every observable reply is compared after each one. The harness
//! is shared, by path, with the stable tests of epmd-server.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/epmd-server/tests/support/registry_harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run_bytes(data);
});
