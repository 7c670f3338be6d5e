#!/usr/bin/env bash
# The whole test suite: formatting, lints, the core's dependency boundary, every test
# (unit, conformance, simulator seeds, CLI end to end). Installs what it needs if missing.
# Usage: ./test.sh            (BATON_SIM_SEEDS=N runs more simulator seeds)
set -euo pipefail
cd "$(dirname "$0")"

need() { command -v "$1" >/dev/null 2>&1; }
install_deb() {
  if need apt-get; then
    echo "test.sh: installing $*" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "test.sh: please install $* (no apt-get here)" >&2; exit 1
  fi
}

need cargo || { echo "test.sh: Rust is required (https://rustup.rs)" >&2; exit 1; }
# External-processor tests run a small Python script as the external command.
need python3 || install_deb python3
# The PostgreSQL and NATS tests start throwaway servers from the installed binaries.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need initdb || install_deb postgresql
need nats-server || install_deb nats-server

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== dependency boundary: baton-core does no I/O"
if cargo tree -p baton-core -e normal --prefix none --locked | grep -E '^(tokio|rusqlite|libsqlite3-sys|tokio-postgres|sqlx|async-nats|reqwest|axum|hyper) ' ; then
  echo "baton-core depends on an I/O crate (listed above)" >&2; exit 1
fi
echo "== tests"
cargo test --workspace --locked
echo "== deploy: systemd units"
deploy/verify.sh "${CARGO_TARGET_DIR:-target}/debug/baton"
