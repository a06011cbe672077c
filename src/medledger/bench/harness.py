"""One benchmark run, end to end: baseline, commit path, embedded network, replicated network,
growth; the full run and the reduced `--quick` one differ only in sizes and durations.

Both networks cut batches as the process deployment does (`DEPLOYED_CUTTER`: after 200 ms or at 500
transactions), so their figures compare; a new embedded network's default (50 ms) favours latency at
low load over throughput."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from medledger.bench.baseline import make_checks, one_core_verify_rate, verify_scaling
from medledger.bench.commit_path import measure_commit_path
from medledger.bench.growth import FULL_CHECKPOINTS, QUICK_CHECKPOINTS, measure_growth
from medledger.bench.network import SUSTAIN_RETRIES, measure_network
from medledger.bench.progress import ProgressCallback, no_progress
from medledger.bench.replicated import measure_replicated
from medledger.bench.report import BenchReport
from medledger.node.deployment import DEPLOYED_CUTTER


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Sizes and durations of one run."""

    quick: bool
    baseline_seconds: float
    scaling_checks: int
    commit_blocks: int
    network_sweep: tuple[int, ...]
    network_step_seconds: float
    network_sustained_seconds: float
    etcd_step_seconds: float
    etcd_sustained_seconds: float
    growth_checkpoints: tuple[int, ...]
    block_size: int = 500
    sustain_retries: int = SUSTAIN_RETRIES
    """Times a sustained network run that fell behind is repeated at a lower rate."""

    @classmethod
    def full(cls) -> BenchConfig:
        return cls(
            quick=False,
            baseline_seconds=3.0,
            scaling_checks=20_000,
            commit_blocks=60,
            network_sweep=(250, 325, 400, 500, 650, 800, 1000, 1500, 2000, 2500),
            network_step_seconds=8.0,
            network_sustained_seconds=60.0,
            etcd_step_seconds=6.0,
            etcd_sustained_seconds=30.0,
            growth_checkpoints=FULL_CHECKPOINTS,
        )

    @classmethod
    def quick_run(cls) -> BenchConfig:
        return cls(
            quick=True,
            baseline_seconds=1.5,
            scaling_checks=3_000,
            commit_blocks=16,
            network_sweep=(200, 400, 800),
            network_step_seconds=2.5,
            network_sustained_seconds=8.0,
            etcd_step_seconds=2.5,
            etcd_sustained_seconds=5.0,
            growth_checkpoints=QUICK_CHECKPOINTS,
            sustain_retries=0,
        )

    @classmethod
    def tiny(cls) -> BenchConfig:
        """Seconds, not minutes: for testing the harness itself (figures mean little)."""
        return cls(
            quick=True,
            baseline_seconds=0.2,
            scaling_checks=400,
            commit_blocks=2,
            network_sweep=(50,),
            network_step_seconds=1.0,
            network_sustained_seconds=1.0,
            etcd_step_seconds=1.0,
            etcd_sustained_seconds=1.0,
            growth_checkpoints=(600, 1_200),
            block_size=100,
            sustain_retries=0,
        )


def run_bench(
    config: BenchConfig,
    *,
    work_dir: Path | None = None,
    etcd: bool = True,
    progress: ProgressCallback | None = None,
) -> BenchReport:
    """Run every measurement of `config` in `work_dir` (a temporary directory if None)."""
    report = progress or no_progress
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medledger-bench-", dir=work_dir) as scratch:
        root = Path(scratch)
        report("baseline", 0, 2)
        checks = make_checks(min(2_000, config.scaling_checks))
        baseline = one_core_verify_rate(checks, config.baseline_seconds)
        report("baseline", 1, 2)
        scaling = verify_scaling(make_checks(config.scaling_checks))
        report("baseline", 2, 2)
        commit = measure_commit_path(
            root / "commit", blocks=config.commit_blocks, block_size=config.block_size, progress=report
        )
        network = measure_network(
            root / "embedded",
            cutter=DEPLOYED_CUTTER,
            sweep=config.network_sweep,
            step_seconds=config.network_step_seconds,
            sustained_seconds=config.network_sustained_seconds,
            sustain_retries=config.sustain_retries,
            progress=report,
        )
        replicated = (
            measure_replicated(
                root / "replicated",
                rate=int(network.sustained.offered_tps),
                step_seconds=config.etcd_step_seconds,
                sustained_seconds=config.etcd_sustained_seconds,
                sustain_retries=config.sustain_retries,
                progress=report,
            )
            if etcd
            else None
        )
        growth = measure_growth(
            root / "growth",
            checkpoints=config.growth_checkpoints,
            window=min(10_000, config.growth_checkpoints[0]),
            block_size=config.block_size,
            progress=report,
        )
    return BenchReport(
        quick=config.quick,
        seconds=time.perf_counter() - started,
        baseline_verify_per_s=baseline,
        scaling=scaling,
        commit=commit,
        network=network,
        etcd=replicated,
        growth=growth,
    )
