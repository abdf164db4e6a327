#!/usr/bin/env python3
"""Cuts a corpus down to a file budget, keeping as many coverage edges as it can.

    python3 fuzz/min_corpus.py TARGET BUDGET OUT_DIR INPUT_DIR...

libFuzzer's `-merge=1 -use_counters=0` keeps one input per covered edge,
which for the dist_handshake, etf_decode and dist_packet targets still means
200 to 450 files, most adding one or two edges. This script measures each
input's full edge set on its own (one `-merge=1 -merge_control_file` run per
file: a merge control file lists only the edges an input adds to the ones
before it), then keeps every `seed-*` file of the committed corpus
(fuzz/corpus/TARGET/) and adds, greedily, the input that covers the most
edges not yet covered (the smaller on a tie) until BUDGET files are kept or
nothing adds coverage. Inputs named `seed-*` that are not committed seeds
are skipped. Prints the edges kept out of all the edges the inputs cover.

The target must be built (`cargo fuzz build TARGET`); run from anywhere.
Single-threaded: one short process per input.
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "target", "x86_64-unknown-linux-gnu", "release")


def edges(binary, path, work):
    """The edges one input covers, from a one-file merge."""
    empty, one, ctl = (os.path.join(work, n) for n in ("empty", "one", "ctl"))
    for d in (empty, one):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    if os.path.exists(ctl):
        os.remove(ctl)
    shutil.copy(path, one)
    subprocess.run(
        [binary, empty, one, "-merge=1", "-use_counters=0", "-max_len=4096",
         "-merge_control_file=" + ctl],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    for line in open(ctl):
        if line.startswith("COV 0"):
            return set(map(int, line.split()[2:]))
    return set()


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    target, budget, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    binary = os.path.join(BIN, target)
    seeds = {f for f in os.listdir(os.path.join(HERE, "corpus", target)) if f.startswith("seed-")}
    files = {}
    for d in sys.argv[4:]:
        for name in sorted(os.listdir(d)):
            if name.startswith("seed-") and name not in seeds:
                continue
            files.setdefault(name, os.path.join(d, name))
    missing = seeds - files.keys()
    if missing:
        sys.exit(f"committed seeds not among the inputs: {sorted(missing)}")
    with tempfile.TemporaryDirectory() as work:
        cov = {name: edges(binary, path, work) for name, path in files.items()}
    everything = set().union(*cov.values())
    chosen = sorted(seeds)
    have = set().union(*(cov[s] for s in chosen))
    rest = [n for n in files if n not in seeds]
    while len(chosen) < budget and rest:
        best = max(rest, key=lambda n: (len(cov[n] - have), -os.path.getsize(files[n])))
        if not cov[best] - have:
            break
        chosen.append(best)
        rest.remove(best)
        have |= cov[best]
    os.makedirs(out, exist_ok=True)
    for name in chosen:
        shutil.copy(files[name], os.path.join(out, name))
    print(f"{target}: kept {len(chosen)} of {len(files)} inputs ({len(seeds)} seeds), "
          f"{len(have)} of {len(everything)} edges ({100 * len(have) / len(everything):.1f}%)")


if __name__ == "__main__":
    main()
