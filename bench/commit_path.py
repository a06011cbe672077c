"""One peer validating, executing and committing pre-signed blocks of the benchmark mix, against
the one-core Ed25519 verify rate of the same run.

    .venv/bin/python bench/commit_path.py [--blocks 60] [--block-size 500] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import LineProgress

from medledger.bench.baseline import make_checks, one_core_verify_rate
from medledger.bench.commit_path import measure_commit_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--block-size", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="signature-checking processes")
    args = parser.parse_args()
    baseline = one_core_verify_rate(make_checks(2_000), 3.0)
    with tempfile.TemporaryDirectory(prefix="medledger-commit-") as scratch:
        result = measure_commit_path(
            Path(scratch), blocks=args.blocks, block_size=args.block_size, workers=args.workers, progress=LineProgress()
        )
    print(f"baseline: {baseline:,.0f} verify/s on one core")
    print(
        f"commit path: {result.tps:,.0f} tx/s ({result.transactions:,} tx in {result.seconds:.1f} s, "
        f"{result.valid:,} valid) = {result.tps / baseline:.3f} x baseline"
    )


if __name__ == "__main__":
    main()
