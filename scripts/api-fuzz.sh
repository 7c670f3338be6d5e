#!/usr/bin/env bash
# Checks the HTTP API against its own OpenAPI document (docs/openapi.json) with schemathesis:
# starts `baton serve --listen` on a temporary SQLite database (a short demo's) with a token,
# runs schemathesis's checks on every operation, and stops the server.
# Each finding is fixed and kept as a regression test in Rust (crates/baton-cli/tests,
# `api_fuzz_findings_stay_fixed`).
# One check is left out: positive_data_acceptance ("a schema-valid request must not get a
# 400"). The schema cannot say that a gate, job or topic must be one the config names, nor
# that `from` needs `to`; baton answers those with a 400 naming the field, as it should.
# Usage: scripts/api-fuzz.sh [MAX_EXAMPLES]   (default 50 per operation)
# Needs: python3 (schemathesis is installed into a venv under target/ if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES="${1:-50}"
ST="${SCHEMATHESIS:-}"
if [ -z "$ST" ]; then
  if command -v schemathesis >/dev/null 2>&1; then
    ST=schemathesis
  else
    venv="${CARGO_TARGET_DIR:-target}/api-fuzz-venv"
    [ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis; }
    ST="$venv/bin/schemathesis"
  fi
fi
cargo build -q -p baton-cli --locked
BATON="${CARGO_TARGET_DIR:-target}/debug/baton"
work="$(mktemp -d)"
token="api-fuzz-$$-$RANDOM"
"$BATON" --db "$work/baton.db" demo --dates 3 --end 2024-03-05 >/dev/null
BATON_API_TOKEN="$token" "$BATON" --db "$work/baton.db" serve --listen 127.0.0.1:0 \
  --reconcile-every-secs 0 2>"$work/serve.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
addr=""
for _ in $(seq 1 600); do
  addr="$(grep -o 'dashboard http://[0-9.:]*' "$work/serve.log" | head -n1 | sed 's#dashboard http://##' || true)"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 3; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "api-fuzz: serve did not print its address" >&2; cat "$work/serve.log" >&2; exit 3; }
echo "api-fuzz: serve at http://$addr, $EXAMPLES examples per operation"
"$ST" run docs/openapi.json --url "http://$addr" -H "Authorization: Bearer $token" \
  --checks all --exclude-checks positive_data_acceptance --max-examples "$EXAMPLES" --request-timeout 30 --no-color
