"""Commit rate and "who accessed this patient's data" latency as one peer's ledger grows.

.venv/bin/python bench/growth.py [--checkpoints 10000,30000,100000,300000,1000000]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from _common import LineProgress

from medledger.bench.growth import FULL_CHECKPOINTS, measure_growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=",".join(str(c) for c in FULL_CHECKPOINTS))
    parser.add_argument("--work-dir", type=Path, default=None, help="where the ledger grows (needs ~5 GB at 1M)")
    args = parser.parse_args()
    checkpoints = [int(size) for size in args.checkpoints.split(",")]
    with tempfile.TemporaryDirectory(prefix="medledger-growth-", dir=args.work_dir) as scratch:
        result = measure_growth(Path(scratch), checkpoints=checkpoints, progress=LineProgress())
    for point in result.points:
        print(
            f"{point.transactions:>9,} tx: commit {point.commit_tps:,.0f} tx/s ({point.commit_cpu_us:,.0f} µs CPU/tx), "
            "'who accessed' "
            f"p50 {point.query_ms_p50:.2f} ms, slowest {point.query_ms_max:.2f} ms "
            f"({point.entries_returned:.1f} entries), ledger {point.database_bytes / 1e6:,.0f} MB, "
            f"machine {point.verify_per_s:,.0f} verifies/s"
            + ("" if math.isnan(point.reference_tps) else f", first ledger in turns {point.reference_tps:,.0f} tx/s")
        )
    print(
        f"commit rate at the largest size / the first checkpoint's ledger in turns with it: {result.paired_ratio:.2f} "
        f"(/ the rate at the first checkpoint: {result.commit_ratio:.2f}, {result.speed_corrected_ratio:.2f} "
        "corrected for the machine's speed)"
    )
    print(f"took {result.seconds:,.0f} s ({result.signing_seconds:,.0f} s of it signing the load)")


if __name__ == "__main__":
    main()
