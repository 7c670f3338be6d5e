#!/usr/bin/env bash
# Mutation testing of baton-core's rule modules (issue 12), with cargo-mutants from crates.io.
# Long (minutes per module): not part of CI or ./test.sh. Writes docs/mutants-report.md.
#
# Usage: scripts/mutants.sh [MODULE...]
#   MODULE is a file stem under crates/baton-core/src; default: every rule module, in the
#   priority order below. The report names exactly the modules this run covered.
# Environment:
#   BATON_MUTANTS_SIM_SEEDS  simulator seeds per mutant in pass 2 (default 200; CI runs 2000,
#                            but a mutant the simulator sees is caught within a few seeds)
#   BATON_MUTANTS_OUT        where cargo-mutants writes its outcomes (default target/mutants-run)
#   BATON_MUTANTS_JOBS       mutants built and tested at once (default 1)
#   BATON_MUTANTS_PASS2=0    skip pass 2 (the simulator)
#   BATON_MUTANTS_PASS1=0    skip pass 1 and run pass 2 on the survivors a previous run's pass 1
#                            left in BATON_MUTANTS_OUT (for the MODULEs named; the other
#                            modules' outcomes are kept, and the report names both commits)
#   BATON_MUTANTS_CONFIRM=1  instead of the passes, re-run only the survivors that
#                            scripts/mutants-dispositions.txt says a new test kills (of the
#                            MODULEs named; default every module), against the unit tests,
#                            and rewrite the report from the last run's outcomes
#
# Rounds: a run whose MODULEs leave out modules an earlier round covered keeps that round's
# report as docs/mutants-report-roundN.md and names it in scripts/mutants-rounds.txt (module,
# commit, start, report); the new report's top lists every module's round from that file
# and from this run's outcomes.
#
# Pass 1 runs every mutant of a module against baton-core's unit tests (cheap: one crate).
# Pass 2 runs only pass 1's survivors against the simulator (`cargo test -p baton-sim`, which
# rebuilds every crate between baton-core and the simulator for each mutant). Survivors of
# both passes are listed in the report with their disposition from scripts/mutants-dispositions.txt
# (a new test that kills it, or why it is equivalent); one without a disposition is marked so.
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_MODULES=(completion gate lease dedup quality schedule reconcile health freshness landing)
if [ $# -gt 0 ]; then MODULES=("$@"); else MODULES=("${DEFAULT_MODULES[@]}"); fi
OUT=${BATON_MUTANTS_OUT:-target/mutants-run}
SEEDS=${BATON_MUTANTS_SIM_SEEDS:-200}
JOBS=${BATON_MUTANTS_JOBS:-1}
PASS2=${BATON_MUTANTS_PASS2:-1}
PASS1=${BATON_MUTANTS_PASS1:-1}
CONFIRM=${BATON_MUTANTS_CONFIRM:-0}

command -v cargo-mutants >/dev/null 2>&1 || cargo install cargo-mutants --locked
for m in "${MODULES[@]}"; do
  [ -f "crates/baton-core/src/$m.rs" ] || { echo "mutants.sh: no module crates/baton-core/src/$m.rs" >&2; exit 2; }
done

# One target directory for every mutant (the profile `mutants` in Cargo.toml: no debug info,
# baton-core unoptimised), so dependencies are built once and each mutant rebuilds only what
# depends on baton-core. With more than one job, each job keeps its own target directory.
if [ "$JOBS" -eq 1 ]; then export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}; else unset CARGO_TARGET_DIR; fi
mkdir -p "$OUT"
# notes.txt, written by hand beside the outcomes, is copied into the report (why a run stopped).
if [ "$CONFIRM" != 1 ] && [ "$PASS1" = 1 ]; then
  rm -rf "$OUT/modules.txt" "$OUT/notes.txt" "$OUT/confirm" "$OUT/confirm-commit.txt" "$OUT/sim-commit.txt"
fi
# The commit the passes ran on is kept with their outcomes; a confirmation run notes its own.
COMMIT=$(git rev-parse HEAD)
DIRTY=$(git status --porcelain -- crates Cargo.toml Cargo.lock | grep -c . || true)
STARTED=$(date -u +%Y-%m-%dT%H:%MZ)
if [ "$CONFIRM" = 1 ]; then
  echo "$COMMIT $DIRTY $STARTED" >"$OUT/confirm-commit.txt"
elif [ "$PASS1" != 1 ]; then
  echo "$COMMIT $DIRTY $STARTED" >"$OUT/sim-commit.txt"
else
  echo "$COMMIT $DIRTY $STARTED" >"$OUT/commit.txt"
fi

# cargo-mutants exits 0 when all were caught, 2 when some were missed, 3 on timeouts.
tolerate() { local rc=$1; [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || [ "$rc" -eq 3 ]; }

# The confirmation run: the killed survivors' names, their line and column left loose (the
# new tests may have moved them), as one regex over every rule module.
confirm() {
  local re rc=0
  re=$(python3 -c 'import re,sys
names=[l.split(": ",1)[1].strip() for l in open(sys.argv[1]) if l.startswith("mutant: ")]
kinds=[l.split(": ",1)[0] for l in open(sys.argv[1]) if l.startswith(("killed: ","equivalent: "))]
files=["crates/baton-core/src/%s.rs" % m for m in sys.argv[2:]]
killed=[n for n,k in zip(names,kinds) if k=="killed" and n.split(":",1)[0] in files]
def loose(n):
    f,pos,what=re.match(r"([^:]+):(\d+:\d+): (.*)$",n).groups()
    return re.escape(f)+r":\d+:\d+: "+re.escape(what)
print("^(" + "|".join(loose(n) for n in killed) + ")$")' scripts/mutants-dispositions.txt "${MODULES[@]}")
  rm -rf "$OUT/confirm"; mkdir -p "$OUT/confirm"
  echo "== confirmation: the survivors new tests kill, against the unit tests" >&2
  nice -n 10 cargo mutants -p baton-core -f 'crates/baton-core/src/*.rs' --re "$re" --profile mutants \
    -j "$JOBS" --minimum-test-timeout 180 --output "$OUT/confirm" -- --lib || rc=$?
  tolerate "$rc" || { echo "mutants.sh: cargo mutants (confirmation) failed ($rc)" >&2; exit 3; }
}

if [ "$CONFIRM" = 1 ]; then
  confirm
  MODULES=()
fi

for m in "${MODULES[@]}"; do
  file="crates/baton-core/src/$m.rs"
  missed="$OUT/$m/unit/mutants.out/missed.txt"
  if [ "$PASS1" = 1 ]; then
    echo "== $m: pass 1, baton-core unit tests" >&2
    rm -rf "$OUT/$m"; mkdir -p "$OUT/$m/unit" "$OUT/$m/sim"
    rc=0
    echo "$COMMIT $DIRTY $(date -u +%Y-%m-%dT%H:%MZ)" >"$OUT/$m/unit-commit.txt"
    nice -n 10 cargo mutants -p baton-core -f "$file" --profile mutants -j "$JOBS" \
      --minimum-test-timeout 60 --output "$OUT/$m/unit" -- --lib || rc=$?
    tolerate "$rc" || { echo "mutants.sh: cargo mutants failed ($rc) on $m" >&2; exit 3; }
  else
    [ -f "$missed" ] || { echo "mutants.sh: no pass 1 outcomes for $m in $OUT" >&2; exit 2; }
    rm -rf "$OUT/$m/sim"; mkdir -p "$OUT/$m/sim"
  fi
  if [ "$PASS2" = 1 ] && [ -s "$missed" ]; then
    echo "== $m: pass 2, $(wc -l <"$missed") survivors against the simulator ($SEEDS seeds)" >&2
    re=$(python3 -c 'import re,sys; print("^(" + "|".join(re.escape(l.rstrip("\n")) for l in open(sys.argv[1]) if l.strip()) + ")$")' "$missed")
    rc=0
    echo "$COMMIT $DIRTY $(date -u +%Y-%m-%dT%H:%MZ)" >"$OUT/$m/sim-commit.txt"
    # cargo-mutants' baseline would only re-run baton-core's tests (it tests the mutated
    # package); pass 1 did that, so it is skipped and the timeouts are given instead.
    BATON_SIM_SEEDS=$SEEDS nice -n 10 cargo mutants -p baton-core -f "$file" --re "$re" \
      --test-package baton-sim --profile mutants -j "$JOBS" --baseline skip \
      --build-timeout 3600 --timeout 1800 --output "$OUT/$m/sim" -- --test simulator || rc=$?
    tolerate "$rc" || { echo "mutants.sh: cargo mutants (simulator) failed ($rc) on $m" >&2; exit 3; }
  fi
  grep -qx "$m" "$OUT/modules.txt" 2>/dev/null || echo "$m" >>"$OUT/modules.txt"
done

python3 scripts/mutants_report.py --out "$OUT" \
  --seeds "$SEEDS" --tool "$(cargo mutants --version)" \
  --all-modules "${DEFAULT_MODULES[*]}" --dispositions scripts/mutants-dispositions.txt \
  --rounds scripts/mutants-rounds.txt \
  >docs/mutants-report.md
echo "mutants.sh: wrote docs/mutants-report.md" >&2
