#!/usr/bin/env bash
# Checks the systemd units with `systemd-analyze verify`, against a given baton binary
# (systemd requires the ExecStart program to exist). Usage: deploy/verify.sh [BATON_BIN]
set -euo pipefail
# The binary's path is taken from where the script was called, before moving to deploy/.
bin=$(realpath -m "${1:-$(dirname "$0")/../target/debug/baton}")
cd "$(dirname "$0")"
[ -x "$bin" ] || { echo "deploy/verify.sh: no baton binary at $bin (build it first)" >&2; exit 2; }
command -v systemd-analyze >/dev/null || { echo "deploy/verify.sh: systemd-analyze is not installed; skipped" >&2; exit 0; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for unit in baton-serve.service baton-run@.service baton-run@.timer; do
  sed "s#/usr/local/bin/baton#$bin#g" "$unit" > "$work/$unit"
done
# The template is verified through an instance, as systemd would load it.
cp "$work/baton-run@.service" "$work/baton-run@player_game_summary.service"
cp "$work/baton-run@.timer" "$work/baton-run@player_game_summary.timer"
# Users and the environment file belong to the target host; verify reports only unit errors.
out=$(cd "$work" && systemd-analyze verify --man=no \
  ./baton-serve.service ./baton-run@player_game_summary.service ./baton-run@player_game_summary.timer 2>&1 || true)
problems=$(printf '%s\n' "$out" | grep -v -e '^$' -e 'Failed to open /etc/baton' -e 'baton-run@player_game_summary.service: Unit is not a template' || true)
if [ -n "$problems" ]; then
  printf '%s\n' "$problems" >&2; echo "deploy/verify.sh: the units have problems (above)" >&2; exit 1
fi
echo "deploy/verify.sh: units verified against $bin"
