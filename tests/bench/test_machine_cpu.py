"""The machine's CPU counters: what counts as busy, how stretches add up, and the ceiling they give."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from medledger.bench.commit_path import CommitResult
from medledger.bench.machine_cpu import CpuMeter, ceiling_tps, cpu_us_per_tx, parse_proc_stat, read_counters
from medledger.bench.network import LoadPoint

# user nice system idle iowait irq softirq steal guest guest_nice
STAT = """cpu  1000 10 200 5000 300 0 40 700 0 0
cpu0 500 5 100 2500 150 0 20 350 0 0
cpu1 500 5 100 2500 150 0 20 350 0 0
intr 12345 0 0
ctxt 999
"""


def _stat(user: int, idle: int) -> str:
    return f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 0 {idle} 0 0 0 0 0 0\n"


def test_busy_time_is_user_nice_system_irq_softirq_not_idle_iowait_or_steal() -> None:
    # Prepare / Execute
    counters = parse_proc_stat(STAT, ticks_per_second=100)
    # Assert: (1000 + 10 + 200 + 0 + 40) ticks at 100 per second, over the two cpuN lines
    assert counters.busy_seconds == pytest.approx(12.5)
    assert counters.cores == 2


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu  1 2 3\n", "cpu  a b c d e f g\n"])
def test_a_stat_file_without_a_readable_cpu_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_proc_stat(text, ticks_per_second=100)


def test_the_meter_adds_up_its_stretches_and_leaves_out_what_ran_between_them(tmp_path: Path) -> None:
    # Prepare: a stat file the test moves by hand (100 ticks per second on Linux)
    stat = tmp_path / "stat"
    meter = CpuMeter(stat)
    # Execute: 300 busy ticks in the first stretch, 5,000 between the stretches, 200 in the second
    stat.write_text(_stat(1000, 0))
    meter.start()
    stat.write_text(_stat(1300, 50))
    meter.stop()
    stat.write_text(_stat(6300, 50))
    meter.start()
    stat.write_text(_stat(6500, 90))
    meter.stop()
    # Assert
    ticks = read_counters(stat)
    assert ticks is not None
    per_tick = ticks.busy_seconds / 6500
    assert meter.busy_seconds == pytest.approx(500 * per_tick)
    assert meter.cores == 1


def test_a_meter_that_cannot_read_the_counters_gives_nan(tmp_path: Path) -> None:
    # Prepare
    meter = CpuMeter(tmp_path / "missing")
    # Execute
    meter.start()
    meter.stop()
    # Assert
    assert math.isnan(meter.busy_seconds)
    assert math.isnan(ceiling_tps(meter.busy_seconds, 100, 2))


def test_the_ceiling_is_the_cores_over_the_cpu_per_transaction() -> None:
    # 2 cores, 1.5 s of busy CPU for 5,000 transactions: 300 µs each, at most 6,667 per second
    assert cpu_us_per_tx(1.5, 5000) == pytest.approx(300.0)
    assert ceiling_tps(1.5, 5000, 2) == pytest.approx(2e6 / 300)
    assert math.isnan(cpu_us_per_tx(1.5, 0)) and math.isnan(ceiling_tps(1.5, 5000, 0))


def test_the_commit_paths_ceiling_ratio_divides_by_the_same_verify_rate_as_its_ratio() -> None:
    # Prepare: 5,000 tx in 1.25 s (4,000 tx/s) with 1.5 s of busy CPU on 2 cores, verify rate 12,000/s
    result = CommitResult(
        5000, 10, 500, 1.25, 5000, 2, 0, 0, 0, 12_000.0, (12_000.0,), machine_cpu_seconds=1.5, cores=2
    )
    # Assert
    assert result.ratio == pytest.approx(4000 / 12_000)
    assert result.ceiling_tps == pytest.approx(2e6 / 300)
    assert result.ceiling_ratio == pytest.approx(2e6 / 300 / 12_000)


def test_a_load_points_ceiling_counts_the_committed_transactions() -> None:
    # Prepare: 1,000 submitted, 800 committed, 2.4 s of busy CPU on 2 cores
    point = LoadPoint(500.0, 2.0, 1000, 800, 800, 100.0, 900.0, machine_cpu_seconds=2.4, cores=2)
    # Assert
    assert point.cpu_us_per_tx == pytest.approx(3000.0)
    assert point.ceiling_tps == pytest.approx(2e6 / 3000)
