"""The yardstick of every figure: how many Ed25519 signatures one core of this machine verifies
per second with PyNaCl (the library and call the ledger uses), measured in the same run.

Also measured here, because the commit path's design rests on it: whether verification scales
across cores with threads (libsodium releases the GIL) or needs processes, both alone and beside
a thread that keeps the interpreter busy, as a peer's commit thread does.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

from medledger.core.signing import Domain, SigningKey, signature_is_valid
from medledger.ledger.execution import SignatureCheck, check_signatures_serially

PAYLOAD_BYTES = 300
"""About the size of a transaction body of the benchmark mix."""


def make_checks(count: int, signers: int = 16, seed: int = 7) -> list[SignatureCheck]:
    """`count` valid (key, payload, signature) checks in the transaction domain."""
    keys = [SigningKey(bytes([seed, index]) * 16) for index in range(signers)]
    checks: list[SignatureCheck] = []
    for index in range(count):
        key = keys[index % signers]
        payload = index.to_bytes(8, "big") * (PAYLOAD_BYTES // 8)
        checks.append((key.public_key, payload, key.sign(Domain.TRANSACTION, payload)))
    return checks


WARM_UP_SECONDS = 0.5
"""Verifying, untimed, before the rounds: a core that was idle runs the first fraction of a second
slower (one run measured 8,356/s on one core, then 23,083/s on two threads)."""


SPEED_SLICE_SECONDS = 0.3
"""Length of one slice of `SpeedSampler`."""


class SpeedSampler:
    """The one-core verify rate, taken in short slices between the pieces of another measurement.

    This machine's speed moves from one second to the next (on an idle machine, twelve one-second
    measurements in a row gave 9,700 to 15,900 verifications per second), so a baseline taken once, minutes
    or even seconds away from a figure, can move that figure's ratio by half. Slices taken throughout the
    measured work sample the same moments it ran in; `rate` pools them (all verifications over all slice
    time)."""

    def __init__(self, checks: Sequence[SignatureCheck], slice_seconds: float = SPEED_SLICE_SECONDS) -> None:
        if not checks:
            raise ValueError("the sampler needs signatures to verify")
        self.checks = list(checks)
        self.slice_seconds = slice_seconds
        self.slices: list[float] = []
        """Each slice's own rate, in the order taken."""
        self._verified = 0
        self._seconds = 0.0

    def sample(self) -> float:
        """Verify on this thread for one slice; return that slice's rate."""
        done, started = 0, time.perf_counter()
        deadline = started + self.slice_seconds
        while time.perf_counter() < deadline:
            for public_key, payload, signature in self.checks:
                if not signature_is_valid(Domain.TRANSACTION, public_key, payload, signature):
                    raise AssertionError("a baseline signature did not verify")
            done += len(self.checks)
        took = time.perf_counter() - started
        self._verified += done
        self._seconds += took
        self.slices.append(done / took)
        return done / took

    @property
    def rate(self) -> float:
        """Verifications per second over every slice so far (NaN before the first)."""
        return self._verified / self._seconds if self._seconds else float("nan")


def one_core_verify_rate(
    checks: Sequence[SignatureCheck], seconds: float, rounds: int = 3, warm_up: float = WARM_UP_SECONDS
) -> float:
    """Median, over `rounds`, of verifications per second on this thread (each round ~seconds/rounds),
    after `warm_up` seconds of untimed verifying."""
    deadline = time.perf_counter() + warm_up
    while time.perf_counter() < deadline:
        for public_key, payload, signature in checks[:200]:
            signature_is_valid(Domain.TRANSACTION, public_key, payload, signature)
    sampler = SpeedSampler(checks, seconds / rounds)
    return statistics.median(sampler.sample() for _ in range(rounds))


@dataclass(frozen=True, slots=True)
class VerifyScaling:
    """Verifications per second of several ways of spreading them over the machine's cores."""

    cores: int
    """CPUs the OS offers this process."""
    threads_1: float
    """One worker thread."""
    threads_2: float
    """Two worker threads, nothing else running."""
    processes_2: float
    """Two worker processes, nothing else running."""
    threads_2_busy: float
    """Two worker threads beside a thread executing Python (as a commit thread does)."""
    processes_2_busy: float
    """Two worker processes beside a thread executing Python."""


def _rate_with(executor: Executor, checks: Sequence[SignatureCheck], chunk: int, busy: bool) -> float:
    chunks = [checks[start : start + chunk] for start in range(0, len(checks), chunk)]
    list(executor.map(check_signatures_serially, chunks[:2]))  # workers started and warm
    stop = threading.Event()

    def keep_interpreter_busy() -> None:
        table: dict[int, int] = {}
        while not stop.is_set():
            for index in range(200):
                table[index] = index * 2

    spinner = threading.Thread(target=keep_interpreter_busy, daemon=True)
    if busy:
        spinner.start()
    started = time.perf_counter()
    outcomes = [ok for result in executor.map(check_signatures_serially, chunks) for ok in result]
    elapsed = time.perf_counter() - started
    stop.set()
    if busy:
        spinner.join()
    if not all(outcomes):
        raise AssertionError("a baseline signature did not verify")
    return len(checks) / elapsed


def verify_scaling(checks: Sequence[SignatureCheck], chunk: int = 100) -> VerifyScaling:
    """Measure the rates of `VerifyScaling` (each over all of `checks`)."""
    runs: dict[str, float] = {}
    spawn = multiprocessing.get_context("spawn")
    pools: list[tuple[str, Callable[[], Executor], bool]] = [
        ("threads_1", lambda: ThreadPoolExecutor(1), False),
        ("threads_2", lambda: ThreadPoolExecutor(2), False),
        ("processes_2", lambda: ProcessPoolExecutor(2, mp_context=spawn), False),
        ("threads_2_busy", lambda: ThreadPoolExecutor(2), True),
        ("processes_2_busy", lambda: ProcessPoolExecutor(2, mp_context=spawn), True),
    ]
    for name, make, busy in pools:
        with make() as executor:
            runs[name] = _rate_with(executor, checks, chunk, busy)
    return VerifyScaling(cores=len(os.sched_getaffinity(0)), **runs)
