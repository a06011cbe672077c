"""The benchmark harness behind `medledger bench`: a realistic load, the measurements (Ed25519
baseline, one peer's commit path, the embedded and replicated networks, ledger growth), and the
report that holds every figure beside the baseline of the same run."""

from medledger.bench.harness import BenchConfig, run_bench
from medledger.bench.report import JSON_KEYS, BenchReport

__all__ = ["JSON_KEYS", "BenchConfig", "BenchReport", "run_bench"]
