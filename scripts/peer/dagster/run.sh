#!/bin/sh
# The peer harness: a venv under /tmp with Dagster, then run.py (see README.md).
# Usage: scripts/peer/dagster/run.sh [run.py's options]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${PEER_VENV:-/tmp/peer-dagster-venv}
if [ ! -x "$venv/bin/dagster-daemon" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q dagster dagster-webserver
fi
exec "$venv/bin/python" "$here/run.py" "$@"
