#!/usr/bin/env python3
"""Writes docs/mutants-report.md from the outcomes scripts/mutants.sh left (stdout).

Reads, per module, cargo-mutants' caught/missed/unviable/timeout lists of pass 1 (unit tests)
and pass 2 (the simulator), the confirmation run of the survivors killed by new tests, and
scripts/mutants-dispositions.txt: blocks of `mutant: NAME` followed by `killed: TEST - why` or
`equivalent: why`. A survivor without a disposition is printed as UNEXPLAINED.
"""

import argparse
import os
import re
import sys


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def without_position(name):
    """`file:line:col: what` -> `file: what`, to match a disposition after lines moved."""
    return re.sub(r"^([^:]+):\d+:\d+:", r"\1:", name)


def read_dispositions(path):
    out, current = {}, None
    for raw in lines(path):
        if raw.startswith("#"):
            continue
        key, _, value = raw.partition(": ")
        if key == "mutant":
            current = value
        elif key in ("killed", "equivalent") and current is not None:
            out[current] = (key, value)
            current = None
        else:
            sys.exit(f"mutants_report: {path}: cannot read line {raw!r}")
    return out


def disposition(name, dispositions):
    if name in dispositions:
        return dispositions[name]
    loose = {without_position(k): v for k, v in dispositions.items()}
    return loose.get(without_position(name), ("UNEXPLAINED", "no disposition yet"))


def outcome(run_dir):
    d = os.path.join(run_dir, "mutants.out")
    return {k: lines(os.path.join(d, f"{k}.txt")) for k in ("caught", "missed", "unviable", "timeout")}


def main():
    p = argparse.ArgumentParser()
    for a in ("out", "seeds", "tool", "all-modules", "dispositions"):
        p.add_argument("--" + a, required=True)
    args = p.parse_args()
    ran = lines(os.path.join(args.out, "modules.txt"))
    not_run = [m for m in args.all_modules.split() if m not in ran]
    dispositions = read_dispositions(args.dispositions)
    confirm = outcome(os.path.join(args.out, "confirm"))
    confirm_commit = lines(os.path.join(args.out, "confirm-commit.txt"))

    run = lines(os.path.join(args.out, "commit.txt"))
    if not run:
        sys.exit("mutants_report: no commit.txt: run scripts/mutants.sh first")
    commit, dirty, started = run[0].split()
    print("# Mutation testing report: baton-core's rule modules\n")
    print("Written by `scripts/mutants.sh` (see the README, \"Mutation testing\"); do not edit by hand:")
    print("dispositions live in `scripts/mutants-dispositions.txt`.\n")
    dirty = "" if dirty == "0" else f" (plus {dirty} uncommitted changed files)"
    print(f"- date: started {started}")
    print(f"- commit: `{commit}`{dirty}")
    print(f"- tool: {args.tool}")
    if confirm_commit:
        c, d, when = confirm_commit[0].split()
        d = "" if d == "0" else f" (plus {d} uncommitted changed files)"
        print(f"- the survivors killed by new tests were re-run on commit `{c}`{d}, started {when}")
    sim_commit = lines(os.path.join(args.out, "sim-commit.txt"))
    if sim_commit:
        c, d, when = sim_commit[0].split()
        d = "" if d == "0" else f" (plus {d} uncommitted changed files)"
        print(f"- pass 2 (the simulator) ran on commit `{c}`{d}, started {when}")
    print(f"- modules run: {', '.join(ran) or 'none'}")
    print(f"- modules not run: {', '.join(not_run) or 'none'}")
    print("- pass 1: every mutant of a module against baton-core's unit tests "
          "(`cargo mutants -p baton-core -f crates/baton-core/src/MODULE.rs --profile mutants -- --lib`)")
    sim_ran = [m for m in ran if any(outcome(os.path.join(args.out, m, "sim")).values())]
    print("- pass 2: pass 1's survivors against the simulator "
          f"(`--test-package baton-sim -- --test simulator`, `BATON_SIM_SEEDS={args.seeds}`): "
          f"run for {', '.join(sim_ran) or 'no module'}; not run for "
          f"{', '.join(m for m in ran if m not in sim_ran) or 'none'}")
    notes = lines(os.path.join(args.out, "notes.txt"))
    if notes:
        print("\nNotes on this run (from `notes.txt` beside the outcomes):\n")
        for n in notes:
            print(f"- {n}")
    print()
    print("| module | mutants | caught by unit tests | missed | unviable | timeout "
          "| pass 2: survivors the simulator caught |")
    print("|---|---|---|---|---|---|---|")
    survivors = []
    for m in ran:
        u = outcome(os.path.join(args.out, m, "unit"))
        s = outcome(os.path.join(args.out, m, "sim"))
        total = sum(len(v) for v in u.values())
        sim_caught = set(s["caught"])
        sim_col = str(len(sim_caught)) if m in sim_ran else "not run"
        print(f"| {m} | {total} | {len(u['caught'])} | {len(u['missed'])} | {len(u['unviable'])} "
              f"| {len(u['timeout'])} | {sim_col} |")
        for n in u["missed"] + u["timeout"]:
            survivors.append((m, n, n in sim_caught, n in u["timeout"]))
    print()
    print("Unviable mutants do not compile (for example a default value of a type without one); "
          "a timeout counts as caught by cargo-mutants, but is listed below as a survivor to explain.\n")
    print("## Survivors of pass 1 and their disposition\n")
    if not survivors:
        print("None.")
    counts = {}
    for m, n, by_sim, timed_out in survivors:
        kind, why = disposition(n, dispositions)
        if by_sim and kind == "UNEXPLAINED":
            kind, why = "caught by the simulator", "the simulator's reference model sees it"
        counts[kind] = counts.get(kind, 0) + 1
        note = " (timed out)" if timed_out else ""
        sim = " Caught by the simulator in pass 2." if by_sim else ""
        confirmed = ""
        if kind == "killed":
            confirmed = (" Confirmed: caught in the re-run." if n in confirm["caught"]
                         else " NOT yet confirmed by a re-run.")
        print(f"- `{n}`{note}: **{kind}**: {why}.{sim}{confirmed}")
    print()
    if survivors:
        print("Totals: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ".")


if __name__ == "__main__":
    main()
