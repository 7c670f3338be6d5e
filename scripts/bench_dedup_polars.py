"""The baseline of `baton bench`'s in-memory dedup: the same rows deduplicated by polars.

Usage: python3 scripts/bench_dedup_polars.py ROWS.csv
Reads the CSV (not timed), times `unique(subset=[the three key columns], keep="first",
maintain_order=True)` (best of 3), and prints rows per second on stdout. Exits 1 with a
message on stderr when polars is not installed.
"""

import sys
import time

try:
    import polars as pl
except ImportError:
    print("polars is not installed (pip install polars)", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    df = pl.read_csv(sys.argv[1], infer_schema_length=0)  # every column as text, as baton's keys are
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = df.unique(subset=["game_id", "team", "player"], keep="first", maintain_order=True)
        best = min(best, time.perf_counter() - start)
    assert out.height < df.height
    print(f"{df.height / best:.0f}")


if __name__ == "__main__":
    main()
