"""A network under concurrent clients: a sweep of offered loads, then a sustained run; committed
TPS and submit-to-commit latency. By default the embedded network (five peers in this process,
solo orderer); with --etcd the deployed one (a 3-node etcd cluster, one peer process per
organisation, clients over REST).

    .venv/bin/python bench/network.py [--sweep 250,500,1000] [--step 8] [--sustained 60] [--etcd]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import LineProgress

from medledger.bench.baseline import make_checks, one_core_verify_rate
from medledger.bench.network import measure_network
from medledger.bench.replicated import NOT_MEASURED, measure_replicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="250,500,750,1000,1500,2000,2500", help="offered tx/s, comma-separated")
    parser.add_argument("--step", type=float, default=8.0, help="seconds per sweep level")
    parser.add_argument("--sustained", type=float, default=60.0, help="seconds of the sustained run")
    parser.add_argument(
        "--etcd", action="store_true", help="the process deployment on a 3-node etcd cluster, clients over REST"
    )
    args = parser.parse_args()
    sweep = [int(rate) for rate in args.sweep.split(",")]
    baseline = one_core_verify_rate(make_checks(2_000), 3.0)
    with tempfile.TemporaryDirectory(prefix="medledger-network-") as scratch:
        measure = measure_replicated if args.etcd else measure_network
        result = measure(
            Path(scratch) / "net",
            sweep=sweep,
            step_seconds=args.step,
            sustained_seconds=args.sustained,
            progress=LineProgress(),
        )
    if result is None:
        print(NOT_MEASURED)
        return
    print(f"baseline: {baseline:,.0f} verify/s on one core")
    for point in [*result.sweep, result.sustained]:
        print(
            f"offered {point.offered_tps:>6,.0f} tx/s for {point.seconds:5.1f} s: committed {point.tps:>6,.0f} tx/s "
            f"({point.tps / baseline:.3f} x baseline), p50 {point.p50_ms:,.0f} ms, p99 {point.p99_ms:,.0f} ms, "
            f"{'kept up' if point.kept_up else 'fell behind'}"
        )


if __name__ == "__main__":
    main()
