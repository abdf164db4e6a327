#!/usr/bin/env bash
# Compiles the Erlang adapter (erlang/src/*.erl) with erlc.
#
#   erlang/build.sh [OUTDIR [SRCDIR]]
#
# OUTDIR defaults to target/erlang/ebin, SRCDIR to erlang/src (the tests
# also compile their helper modules with it).
#
# Only modules whose source (or any .hrl in SRCDIR, which the wrappers
# include) is newer than their .beam are recompiled; each
# .beam is written to a temporary directory and renamed into place, under a
# lock, so concurrent test binaries can call this at the same time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/erlang/ebin}
src=${2:-$here/src}
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.build.lock"
flock 9
stale=()
shopt -s nullglob
hrls=("$src"/*.hrl)
for f in "$src"/*.erl; do
  beam="$out/$(basename "${f%.erl}").beam"
  if [ ! -e "$beam" ] || [ "$f" -nt "$beam" ]; then
    stale+=("$f")
    continue
  fi
  for h in "${hrls[@]}"; do
    if [ "$h" -nt "$beam" ]; then
      stale+=("$f")
      break
    fi
  done
done
if [ ${#stale[@]} -gt 0 ]; then
  tmp=$(mktemp -d "$out/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  erlc +warnings_as_errors +debug_info -o "$tmp" "${stale[@]}"
  for b in "$tmp"/*.beam; do
    mv -f "$b" "$out/"
  done
fi
echo "$out"
