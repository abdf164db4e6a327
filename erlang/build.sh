#!/usr/bin/env bash
# Compiles the Erlang adapter (erlang/src/*.erl) with erlc.
#
#   erlang/build.sh [OUTDIR]     (default: target/erlang/ebin)
#
# Only modules whose source is newer than their .beam are recompiled; each
# .beam is written to a temporary directory and renamed into place, under a
# lock, so concurrent test binaries can call this at the same time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/erlang/ebin}
mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.build.lock"
flock 9
stale=()
for src in "$here"/src/*.erl; do
  beam="$out/$(basename "${src%.erl}").beam"
  if [ ! -e "$beam" ] || [ "$src" -nt "$beam" ]; then
    stale+=("$src")
  fi
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
