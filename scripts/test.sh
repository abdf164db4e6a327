#!/usr/bin/env bash
# Runs the whole test suite. On a fresh Debian machine it first installs what
# the tests need (Erlang/OTP 25 from Debian, a JDK for jinterface, iproute2 for
# the network-namespace tests, Elixir for the adapter's Elixir tests). Needs
# root for apt-get and for the netns tests.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(erlang-base erlang-dev erlang-ssl erlang-public-key erlang-crypto
      erlang-examples erlang-jinterface erlang-tools erlang-syntax-tools
      erlang-parsetools erlang-eunit rebar3 elixir iproute2 gcc libc6-dev systemd
      protobuf-compiler libprotobuf-dev etcd-server etcd-client prometheus)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian package test (crates/epmdx/tests/package.rs) runs `cargo deb`.
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked

# Integration tests run the built binaries; build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast "$@"
