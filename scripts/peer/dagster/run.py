"""Runs baton's reference shape on Dagster and prints its figures beside baton's.

Usage (inside the venv run.sh makes): python run.py [--baton PATH] [--reports N]
    [--samples N] [--skip-minimum] [--out FILE] [--dagster-only | --dagster-from FILE]

On a fresh DAGSTER_HOME (Dagster's default local SQLite storage) it starts
`dagster-webserver` and `dagster-daemon run` on definitions.py and measures:
  - idle memory: the resident memory of both process trees (their code servers included)
    after they have settled;
  - completion ingest: upstream materializations reported through the webserver's
    POST /report_asset_materialization/<asset> (for old partitions, which the eager
    condition does not run), one after the other, per second;
  - trigger latency: from the fifth upstream materialization of the latest partition being
    reported to the downstream run being created by the sensor and to it starting, at the
    sensor's default minimum interval and at 1 second;
  - a duplicate completion after a trigger: one upstream reported again for a partition whose
    downstream already ran; how many more downstream runs that starts.
Then it runs `baton bench --quick --json` and `baton demo --faults duplicate=1` and prints
both sides. Nothing here is part of baton's CI.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 3999


def rss_tree_kib(root: int) -> int:
    """Resident memory of `root` and all its descendants, in KiB."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except OSError:
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def post(asset: str, partition: str) -> None:
    body = json.dumps({"partition": partition}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/report_asset_materialization/{asset}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


class Stack:
    """The webserver and the daemon on one DAGSTER_HOME, with a sensor interval."""

    def __init__(self, home: Path, interval):
        self.env = dict(os.environ, DAGSTER_HOME=str(home))
        if interval is not None:
            self.env["PEER_SENSOR_INTERVAL"] = str(interval)
        else:
            self.env.pop("PEER_SENSOR_INTERVAL", None)
        bindir = Path(sys.executable).parent
        defs = str(HERE / "definitions.py")
        common = dict(env=self.env, cwd=HERE, start_new_session=True,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.web = subprocess.Popen(
            [bindir / "dagster-webserver", "-f", defs, "-h", "127.0.0.1", "-p", str(PORT)],
            **common)
        self.daemon = subprocess.Popen([bindir / "dagster-daemon", "run", "-f", defs], **common)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/server_info", timeout=2).read()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("dagster-webserver did not answer within 180 s")

    def idle_mib(self) -> float:
        return (rss_tree_kib(self.web.pid) + rss_tree_kib(self.daemon.pid)) / 1024

    def stop(self) -> None:
        for p in (self.web, self.daemon):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in (self.web, self.daemon):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def runs_of(instance, partition: str):
    from dagster import RunsFilter

    return instance.get_run_records(filters=RunsFilter(tags={"dagster/partition": partition}))


def ingest(n: int) -> float:
    """Upstream materializations reported per second, one after the other."""
    start = time.perf_counter()
    for i in range(n):
        day = time.strftime("%Y-%m-%d", time.gmtime(1577836800 + (i // 5) * 86400))
        post(f"up_{i % 5}", day)
    return n / (time.perf_counter() - start)


def wait_new_run(instance, partition: str, seen: set, timeout: float):
    """The first run of `partition` not in `seen`, once it has started (or None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for r in runs_of(instance, partition):
            if r.dagster_run.run_id not in seen and r.start_time is not None:
                return r
        time.sleep(0.05)
    return None


def wait_finished(instance, run_id: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return
        time.sleep(0.2)


def latencies(instance, partition: str, samples: int, timeout: float) -> dict:
    """From the fifth upstream report to the downstream run created and started, in ms."""
    created, started = [], []
    for _ in range(samples):
        seen = {r.dagster_run.run_id for r in runs_of(instance, partition)}
        for i in range(5):
            post(f"up_{i}", partition)
        last = time.time()
        run = wait_new_run(instance, partition, seen, timeout)
        if run is None:
            print(f"  no downstream run within {timeout:.0f} s", file=sys.stderr)
            continue
        created.append((run.create_timestamp.timestamp() - last) * 1000)
        started.append((run.start_time - last) * 1000)
        wait_finished(instance, run.dagster_run.run_id)
    return {"created_ms": created, "started_ms": started}


def duplicate_runs(instance, partition: str, wait_s: float) -> int:
    """Downstream runs started by one upstream reported again after a trigger."""
    seen = {r.dagster_run.run_id for r in runs_of(instance, partition)}
    post("up_0", partition)
    time.sleep(wait_s)
    return len({r.dagster_run.run_id for r in runs_of(instance, partition)} - seen)


def measure_dagster(args) -> dict:
    home = Path(tempfile.mkdtemp(prefix="peer-dagster-home-"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    from dagster import DagsterInstance, __version__

    from definitions import DAILY

    out = {"dagster_version": __version__, "home": str(home)}
    instance = DagsterInstance.get()
    latest = DAILY.get_last_partition_key()
    for label, interval in (("default", None), ("minimum", 1)):
        if label == "minimum" and args.skip_minimum:
            continue
        print(f"dagster: starting webserver + daemon (sensor interval: {label})", file=sys.stderr)
        stack = Stack(home, interval)
        try:
            time.sleep(args.settle)
            if label == "default":
                out["idle_mib"] = stack.idle_mib()
                print("dagster: completion ingest", file=sys.stderr)
                out["ingest_per_s"] = ingest(args.reports)
            print(f"dagster: trigger latency ({label})", file=sys.stderr)
            timeout = 300 if interval is None else 60
            out[f"latency_{label}"] = latencies(instance, latest, args.samples, timeout)
            if label == "default":
                print("dagster: a duplicate completion after a trigger", file=sys.stderr)
                out["duplicate_runs"] = duplicate_runs(instance, latest, 75)
        finally:
            stack.stop()
    return out


def measure_baton(baton: str) -> dict:
    print("baton: bench --quick --json", file=sys.stderr)
    bench = json.loads(subprocess.run([baton, "bench", "--quick", "--json"], check=True,
                                      capture_output=True, text=True).stdout)
    fig = {f["figure"]: f["baton"] for f in bench}

    def pick(prefix):
        return next((v for k, v in fig.items() if k.startswith(prefix)), None)

    with tempfile.TemporaryDirectory(prefix="peer-baton-") as d:
        print("baton: demo --dates 3 --faults duplicate=1 --json", file=sys.stderr)
        demo = json.loads(subprocess.run(
            [baton, "--db", f"{d}/demo.db", "demo", "--dates", "3", "--faults", "duplicate=1",
             "--json"], check=True, capture_output=True, text=True).stdout)
    return {
        "ingest_per_s": pick("orchestrator throughput"),
        "latency_p50_ms": pick("trigger latency p50"),
        "latency_p99_ms": pick("trigger latency p99"),
        "idle_mib": pick("serve resident memory, idle"),
        "duplicate_outcomes": demo["orchestrator_outcomes"],
        "one_trigger_per_date": demo["exact"],
    }


def med(xs):
    return f"{statistics.median(xs):,.0f}" if xs else "-"


def print_side_by_side(d: dict, b: dict) -> None:
    rows = [
        ("completion ingest (per s)", f"{d.get('ingest_per_s', 0):,.0f}",
         f"{b['ingest_per_s']:,.0f}"),
    ]
    for label in ("default", "minimum"):
        lat = d.get(f"latency_{label}")
        if lat:
            rows.append((f"trigger latency, {label} interval: run created / started, median ms",
                         f"{med(lat['created_ms'])} / {med(lat['started_ms'])}",
                         f"p50 {b['latency_p50_ms']:.2f}, p99 {b['latency_p99_ms']:.2f}"))
    rows.append(("downstream runs after a duplicate completion",
                 str(d.get("duplicate_runs", "-")),
                 "0 (one trigger per date: %s; outcomes %s)"
                 % (b["one_trigger_per_date"], b["duplicate_outcomes"])))
    rows.append(("idle resident memory (MiB)", f"{d.get('idle_mib', 0):.0f}",
                 f"{b['idle_mib']:.1f}"))
    print(f"| figure | Dagster {d['dagster_version']} | baton |")
    print("|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baton", default=str(HERE.parents[2] / "target/release/baton"))
    ap.add_argument("--reports", type=int, default=500)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--settle", type=float, default=30.0)
    ap.add_argument("--skip-minimum", action="store_true")
    ap.add_argument("--out", default="peer-figures.json")
    ap.add_argument("--dagster-only", action="store_true",
                    help="measure Dagster and write its figures, without baton's")
    ap.add_argument("--dagster-from", metavar="FILE",
                    help="Dagster's figures from an earlier --out file instead of measuring")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    if args.dagster_from:
        dagster = json.loads(Path(args.dagster_from).read_text())["dagster"]
    else:
        dagster = measure_dagster(args)
    if args.dagster_only:
        Path(args.out).write_text(json.dumps({"dagster": dagster}, indent=2))
        print(json.dumps(dagster, indent=2))
        return
    baton = measure_baton(args.baton)
    Path(args.out).write_text(json.dumps({"dagster": dagster, "baton": baton}, indent=2))
    print_side_by_side(dagster, baton)


if __name__ == "__main__":
    main()
