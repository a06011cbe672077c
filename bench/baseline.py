"""Ed25519 verifications per second on one core (PyNaCl), and how verification scales over the
cores with threads and with processes, alone and beside a busy Python thread.

    .venv/bin/python bench/baseline.py [--seconds 3]
"""

from __future__ import annotations

import argparse

from medledger.bench.baseline import make_checks, one_core_verify_rate, verify_scaling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent measuring the one-core rate")
    args = parser.parse_args()
    rate = one_core_verify_rate(make_checks(2_000), args.seconds)
    print(f"baseline: {rate:,.0f} Ed25519 verifications/s on one core")
    scaling = verify_scaling(make_checks(20_000))
    for name in ("threads_1", "threads_2", "processes_2", "threads_2_busy", "processes_2_busy"):
        value = getattr(scaling, name)
        print(f"{name:>18}: {value:>9,.0f}/s = {value / rate:.2f} x baseline")


if __name__ == "__main__":
    main()
