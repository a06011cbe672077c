"""The CPU the whole machine spends on a stretch of work, and the rate that work could reach at most.

A rate measured on this machine says how fast the work ran; it does not say whether the machine
could have run it faster. The kernel's counters (`/proc/stat`) do: the CPU time every process
spent (peers, signature workers, orderer, etcd, the load's clients) over the stretch, divided by
the transactions it committed, is the work one transaction costs the machine. All its cores busy
with nothing else could commit at most `cores / (CPU per transaction)` per second: the ceiling a
better scheduling of the same work cannot pass. Only less work per transaction raises it.

Busy time is user, nice, system, irq and softirq time; idle, iowait and steal (time the
hypervisor gave to another machine) are not this machine's work. Where `/proc/stat` cannot be
read (not Linux), every figure is NaN.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
_BUSY_FIELDS = (0, 1, 2, 5, 6)
"""Of the counters after "cpu": user, nice, system, (idle, iowait,) irq, softirq."""


@dataclass(frozen=True, slots=True)
class CpuCounters:
    """The machine's CPU counters at one moment."""

    busy_seconds: float
    """CPU time spent working, summed over every core, since boot."""
    cores: int
    """Cores the counters cover (the "cpuN" lines)."""


def parse_proc_stat(text: str, ticks_per_second: int) -> CpuCounters:
    """The busy time and core count in the text of `/proc/stat`; ValueError if it has no "cpu" line."""
    busy_ticks: int | None = None
    cores = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name == "cpu":
            counters = [int(field) for field in rest.split()]
            if len(counters) < 7:
                raise ValueError(f"/proc/stat's cpu line has {len(counters)} counters, at least 7 expected")
            busy_ticks = sum(counters[index] for index in _BUSY_FIELDS)
        elif name.startswith("cpu") and name[3:].isdigit():
            cores += 1
    if busy_ticks is None:
        raise ValueError("/proc/stat has no aggregate cpu line")
    return CpuCounters(busy_ticks / ticks_per_second, cores)


def read_counters(path: Path = PROC_STAT) -> CpuCounters | None:
    """The machine's counters now, or None where they cannot be read."""
    try:
        return parse_proc_stat(path.read_text(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return None


class CpuMeter:
    """Adds up the machine's busy CPU time over one or more stretches (`start` ... `stop`)."""

    def __init__(self, path: Path = PROC_STAT) -> None:
        self._path = path
        self._started: CpuCounters | None = None
        self.busy_seconds = 0.0
        """Busy CPU time over the stretches measured so far (NaN once a reading failed)."""
        self.cores = 0
        """Cores the counters covered."""

    def start(self) -> None:
        self._started = read_counters(self._path)
        if self._started is None:
            self.busy_seconds = math.nan

    def stop(self) -> None:
        started, self._started = self._started, None
        ended = read_counters(self._path)
        if started is None or ended is None:
            self.busy_seconds = math.nan
            return
        self.busy_seconds += ended.busy_seconds - started.busy_seconds
        self.cores = ended.cores


def cpu_us_per_tx(busy_seconds: float, transactions: int) -> float:
    """Busy CPU time per transaction, in µs (NaN without transactions or a reading)."""
    if transactions <= 0 or math.isnan(busy_seconds):
        return math.nan
    return busy_seconds / transactions * 1e6


def ceiling_tps(busy_seconds: float, transactions: int, cores: int) -> float:
    """The most transactions per second `cores` cores could commit at this CPU time per transaction."""
    per_tx = cpu_us_per_tx(busy_seconds, transactions)
    if cores <= 0 or math.isnan(per_tx) or per_tx <= 0:
        return math.nan
    return cores * 1e6 / per_tx


class CpuCeiling:
    """The CPU figures of a measured result that has `machine_cpu_seconds`, `cores` and `committed_tx`."""

    __slots__ = ()
    machine_cpu_seconds: float
    cores: int

    @property
    def committed_tx(self) -> int:
        """Transactions the busy time was spent committing."""
        raise NotImplementedError

    @property
    def cpu_us_per_tx(self) -> float:
        """The machine's busy CPU time per committed transaction (every process)."""
        return cpu_us_per_tx(self.machine_cpu_seconds, self.committed_tx)

    @property
    def ceiling_tps(self) -> float:
        """The most this work per transaction could commit with every core busy with it alone."""
        return ceiling_tps(self.machine_cpu_seconds, self.committed_tx, self.cores)
