"""The replicated network as it is deployed: a 3-node etcd cluster and one peer process per
organisation (`medledger.node.deployment.ProcessNetwork`), under clients posting the benchmark mix
to the peers' REST APIs (`medledger.bench.rest_load`): a sweep of offered rates, then a sustained run.

Without an etcd binary, or with the benchmark's ports taken, it reports "not measured" and the
JSON carries null for `etcd_tps` and `etcd_p99_ms`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from medledger.bench.machine_cpu import CpuMeter
from medledger.bench.network import (
    SETTLE_SECONDS,
    SUSTAIN_RETRIES,
    SUSTAIN_STEP_DOWN,
    LoadPoint,
    NetworkResult,
)
from medledger.bench.progress import ProgressCallback, no_progress
from medledger.bench.rest_load import offer_rest_load
from medledger.bench.workload import LoadGenerator, consortium_of
from medledger.core.errors import MedledgerError
from medledger.node.deployment import ProcessNetwork
from medledger.node.network import EmbeddedNetwork
from medledger.ordering.etcd_cluster import etcd_binary, port_is_free
from medledger.ordering.orderer import OrderingError
from medledger.ordering.solo import wall_clock_ms

log = logging.getLogger(__name__)

NOT_MEASURED = "not measured: etcd backend unavailable"
REPLICATED_LATENCY_LIMIT_MS = 1_500.0
"""A level of the process deployment counts as kept up with up to this p99: the target set for it
(the embedded network's is 1 s)."""
ORGANISATIONS = 5
ETCD_CLIENT_BASE = 27_080
ETCD_PEER_BASE = 27_090
PEER_PORT_BASE = 27_180
"""etcd members on 27081-27083 (Raft on 27091-27093), peers on 27181-27185: apart from the tests'
ports; when any is taken, the same layout 1,000 and 2,000 higher is tried."""
PORT_SHIFTS = (0, 1_000, 2_000)
SETUP_RATE = 500.0
"""Offered rate of the set-up transactions (staff, first patients); not measured."""
WARM_UP_SECONDS = 4.0
SIGN_CHUNK = 100
"""Transactions signed per generator block: records registered in one are asked for from the
next-but-one on (`request_lag=1`), so reordering between concurrent clients stays harmless."""


class ReplicatedSetupError(MedledgerError):
    """The benchmark's set-up transactions did not all commit valid; the load that follows would be refused."""


SWEEP_SHARES = (1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8, 1)
"""Shares of the top rate a sweep offers, from the lowest (finer near the top, where it falls behind)."""


def sweep_up_to(rate: int) -> list[int]:
    """Offered rates for a sweep ending at `rate`: from a sixteenth of it up, in eighths above a quarter
    (the processes share this machine's cores, so the deployment keeps up with less than the embedded
    network; the sustained run holds the highest level kept up with)."""
    return sorted({max(25, round(rate * share)) for share in SWEEP_SHARES})


def _free_port_bases() -> tuple[int, int, int] | None:
    for shift in PORT_SHIFTS:
        bases = (ETCD_CLIENT_BASE + shift, ETCD_PEER_BASE + shift, PEER_PORT_BASE + shift)
        ports = [base + i for base in bases[:2] for i in range(1, 4)]
        ports += [bases[2] + i for i in range(1, ORGANISATIONS + 1)]
        if all(port_is_free(port) for port in ports):
            return bases
    return None


def start_process_network(directory: Path, progress: ProgressCallback) -> ProcessNetwork | None:
    """A new process network in `directory`, up and serving; None (logged) when it cannot run here."""
    try:
        etcd_binary()
    except OrderingError as exc:
        log.warning("%s (%s)", NOT_MEASURED, exc)
        return None
    bases = _free_port_bases()
    if bases is None:
        log.warning("%s (the benchmark's ports from %d are taken)", NOT_MEASURED, ETCD_CLIENT_BASE)
        return None
    etcd_client_base, etcd_peer_base, peer_port_base = bases
    phase = f"etcd network: starting 3 etcd members and {ORGANISATIONS} peer processes"
    progress(phase, 0, 1)
    network = ProcessNetwork.create(
        directory,
        ORGANISATIONS,
        etcd_client_base=etcd_client_base,
        etcd_peer_base=etcd_peer_base,
        peer_port_base=peer_port_base,
    )
    try:
        network.up(timeout=90)
    except MedledgerError as exc:  # DeploymentError, or the cluster's OrderingError
        log.warning("%s (%s)", NOT_MEASURED, exc)
        network.down()
        return None
    progress(phase, 1, 1)
    return network


def peer_urls(network: ProcessNetwork) -> list[str]:
    return [network.deployment.peer_url(org_id) for org_id in network.deployment.peer_ports]


def wait_until_agreed(network: ProcessNetwork, timeout: float = SETTLE_SECONDS) -> bool:
    """Wait until every peer has committed as far as the highest one had when this was called."""
    urls = peer_urls(network)

    def heights() -> list[int]:
        found = []
        for url in urls:
            try:
                found.append(int(httpx.get(url + "/v1/status", timeout=5).json()["height"]))
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                found.append(-1)
        return found

    target = max(heights())
    deadline = time.monotonic() + timeout
    while min(heights()) < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def commit_setup(network: ProcessNetwork, generator: LoadGenerator, progress: ProgressCallback) -> None:
    """Commit the staff, then the first patients, block after block, on every peer."""
    urls = peer_urls(network)
    for number, block in enumerate(generator.setup_blocks(wall_clock_ms()), 1):
        point = offer_rest_load(urls, block, SETUP_RATE, progress, f"etcd network: set-up block {number}")
        if point.valid != len(block):
            raise ReplicatedSetupError(
                f"set-up block {number}: {point.valid} of {len(block)} transactions committed valid; "
                f"see the peers' logs in {network.data_dir / 'logs'}"
            )
        wait_until_agreed(network)


def measure_replicated(
    directory: Path,
    *,
    rate: int | None = None,
    sweep: Sequence[int] | None = None,
    step_seconds: float,
    sustained_seconds: float,
    sustained_tps: int | None = None,
    sustain_retries: int = SUSTAIN_RETRIES,
    progress: ProgressCallback | None = None,
) -> NetworkResult | None:
    """Sweep `sweep` offered rates (default: `sweep_up_to(rate)`), stopping at the first not kept up
    with, then hold the highest rate kept up with (or `sustained_tps`) for `sustained_seconds`,
    stepping down when it falls behind; None when the process network cannot run here."""
    if sweep is None:
        if rate is None:
            raise ValueError("give the sweep's rates or the rate it ends at")
        sweep = sweep_up_to(rate)
    report = progress or no_progress
    network = start_process_network(directory, report)
    if network is None:
        return None
    try:
        described = EmbeddedNetwork(network.data_dir)
        cut_after_ms = described.cutter.time_to_cut_ms
        generator = LoadGenerator(consortium_of(described), request_lag=1)
        commit_setup(network, generator, report)
        urls = peer_urls(network)

        def offer(rate: float, seconds: float, phase: str) -> LoadPoint:
            total = int(rate * seconds)
            signed: list[bytes] = []
            while len(signed) < total:
                signed.extend(generator.block(min(SIGN_CHUNK, total - len(signed)), wall_clock_ms()))
            machine = CpuMeter()  # from the first submission until every peer has committed the load
            machine.start()
            point = offer_rest_load(urls, signed, rate, report, phase, REPLICATED_LATENCY_LIMIT_MS)
            wait_until_agreed(network)
            machine.stop()
            return dataclasses.replace(point, machine_cpu_seconds=machine.busy_seconds, cores=machine.cores)

        # Not recorded: opens the clients' connections and warms the peers' caches.
        offer(sweep[0], min(step_seconds, WARM_UP_SECONDS), "etcd network: warming up")
        points: list[LoadPoint] = []
        for level in sweep:
            points.append(offer(level, step_seconds, f"etcd network: {level} tx/s offered"))
            if not points[-1].kept_up:
                break
        fixed = sustained_tps is not None
        if sustained_tps is None:
            kept = [point.offered_tps for point in points if point.kept_up]
            sustained_tps = int(max(kept)) if kept else int(sweep[0])
        level = sustained_tps
        for attempt in range(1 if fixed else 1 + sustain_retries):
            if attempt:  # a short sweep level can be kept up with where a long run builds a backlog
                level = max(1, int(level * SUSTAIN_STEP_DOWN))
            sustained = offer(level, sustained_seconds, f"etcd network: {level} tx/s for {sustained_seconds:.0f} s")
            if sustained.kept_up:
                break
    finally:
        network.down()
    return NetworkResult("etcd", ORGANISATIONS, tuple(points), sustained, cut_after_ms)
