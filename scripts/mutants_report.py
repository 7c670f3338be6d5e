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


def read_rounds(path):
    """scripts/mutants-rounds.txt: module -> (round, commit, started, report, pass 2)."""
    out = {}
    for raw in lines(path) if path else []:
        if raw.startswith("#"):
            continue
        parts = raw.split(" ", 5)
        if len(parts) < 6:
            sys.exit(f"mutants_report: {path}: cannot read line {raw!r}")
        out[parts[0]] = tuple(parts[1:])
    return out


def stamp(path, fallback):
    """`commit dirty started` from a file the script wrote, else the run's own."""
    got = lines(path)
    return got[0].split() if got else fallback


def print_rounds(args, ran, rounds, run_stamp):
    """The top of the report: every rule module, which round ran it, when and on what."""
    print("## Which modules ran when\n")
    print("| module | round | pass 1 started (UTC) | on commit | pass 2 (the simulator) | results |")
    print("|---|---|---|---|---|---|")
    for m in args.all_modules.split():
        if m in ran:
            c, d, when = stamp(os.path.join(args.out, m, "unit-commit.txt"), run_stamp)
            dirty = "" if d == "0" else f" (+{d} uncommitted)"
            sim = stamp(os.path.join(args.out, m, "sim-commit.txt"), None)
            if sim and any(outcome(os.path.join(args.out, m, "sim")).values()):
                sc, sd, swhen = sim
                sim_text = f"{swhen} on `{sc[:7]}`" + ("" if sd == "0" else f" (+{sd} uncommitted)")
            elif not lines(os.path.join(args.out, m, "unit", "mutants.out", "missed.txt")):
                sim_text = "nothing to run (no survivor)"
            else:
                sim_text = "not run"
            print(f"| {m} | latest | {when} | `{c[:7]}`{dirty} | {sim_text} | this report |")
        elif m in rounds:
            r, c, when, report, sim_text = rounds[m]
            name = os.path.basename(report)
            print(f"| {m} | {r} | {when} | `{c[:7]}` | {sim_text} | [{report}]({name}) |")
        else:
            print(f"| {m} | none | | | | not run yet |")
    print()


def main():
    p = argparse.ArgumentParser()
    for a in ("out", "seeds", "tool", "all-modules", "dispositions"):
        p.add_argument("--" + a, required=True)
    p.add_argument("--rounds", default=None)
    args = p.parse_args()
    ran = lines(os.path.join(args.out, "modules.txt"))
    rounds = read_rounds(args.rounds)
    not_run = [m for m in args.all_modules.split() if m not in ran and m not in rounds]
    dispositions = read_dispositions(args.dispositions)
    confirm = outcome(os.path.join(args.out, "confirm"))
    confirm_commit = lines(os.path.join(args.out, "confirm-commit.txt"))

    run = lines(os.path.join(args.out, "commit.txt"))
    if not run:
        sys.exit("mutants_report: no commit.txt: run scripts/mutants.sh first")
    commit, dirty, started = run[0].split()
    dirty_count = dirty
    print("# Mutation testing report: baton-core's rule modules\n")
    print("Written by `scripts/mutants.sh` (see the README, \"Mutation testing\"); do not edit by hand:")
    print("dispositions live in `scripts/mutants-dispositions.txt`.\n")
    print_rounds(args, ran, rounds, (commit, dirty_count, started))
    print("## This run\n")
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
    print(f"- modules this run covered: {', '.join(ran) or 'none'}")
    earlier = [m for m in args.all_modules.split() if m not in ran and m in rounds]
    if earlier:
        print(f"- modules covered by earlier rounds, each kept in its own report (table above): "
              f"{', '.join(earlier)}")
    print(f"- modules no round has run: {', '.join(not_run) or 'none'}")
    print("- pass 1: every mutant of a module against baton-core's unit tests "
          "(`cargo mutants -p baton-core -f crates/baton-core/src/MODULE.rs --profile mutants -- --lib`)")
    sim_ran = [m for m in ran if any(outcome(os.path.join(args.out, m, "sim")).values())]
    unit = {m: outcome(os.path.join(args.out, m, "unit")) for m in ran}
    no_survivor = [m for m in ran if not unit[m]["missed"] and not unit[m]["timeout"]]
    sim_not_run = [m for m in ran if m not in sim_ran and m not in no_survivor]
    print("- pass 2: pass 1's survivors against the simulator "
          f"(`--test-package baton-sim -- --test simulator`, `BATON_SIM_SEEDS={args.seeds}`): "
          f"run for {', '.join(sim_ran) or 'no module'}; nothing to run (no survivor) for "
          f"{', '.join(no_survivor) or 'none'}; not run for {', '.join(sim_not_run) or 'none'}")
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
        sim_col = (str(len(sim_caught)) if m in sim_ran
                   else "no survivor" if m in no_survivor else "not run")
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
