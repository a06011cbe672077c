"""Fixtures for the etcd ordering tests: a 3-node etcd cluster per test module, on ports that differ per
pytest-xdist worker (and stay clear of the process-network tests' 24000-24600), and a fresh channel per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from medledger.ordering.etcd_cluster import EtcdCluster, port_is_free

ETCD_PORT_BASE = 26000
"""Worker k uses client ports 26000 + 100k + 1..3 and peer ports 26000 + 100k + 11..13 (slot 0)."""


def worker_index() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def etcd_port_bases(slot: int = 0, size: int = 3) -> tuple[int, int]:
    """(client port base, peer port base) for this worker; `slot` (0-3) separates clusters alive at once.

    If another test run on this machine holds those ports, the same layout 1000 ports higher is tried."""
    for shift in range(0, 6000, 1000):
        base = ETCD_PORT_BASE + shift + 100 * worker_index() + 20 * slot
        ports = [base + i for i in range(1, size + 1)] + [base + 10 + i for i in range(1, size + 1)]
        if all(port_is_free(port) for port in ports):
            return base, base + 10
    raise RuntimeError("no free etcd ports for the tests between 26000 and 32000")


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    client_base, peer_base = etcd_port_bases()
    cluster = EtcdCluster(
        tmp_path_factory.mktemp("etcd"), 3, client_base, peer_base, quota_backend_bytes=256 * 1024 * 1024
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.close()


@pytest.fixture
def channel() -> str:
    """A channel no other test uses, so tests can share one cluster."""
    return f"test-{uuid.uuid4().hex[:12]}"
