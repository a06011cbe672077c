"""The replicated network: the same load on the same five peers, ordered by a 3-node etcd cluster.

The etcd backend (`medledger.ordering.etcd.EtcdOrderer` on `medledger.ordering.etcd_cluster.
EtcdCluster`) is built separately; until both exist this measurement reports "not measured"
and the JSON carries null for `etcd_tps` and `etcd_p99_ms`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medledger.bench.network import NetworkResult, OrdererFactory, measure_network
from medledger.bench.progress import ProgressCallback
from medledger.node.network import EmbeddedNetwork
from medledger.ordering.orderer import Orderer, OrderingError

log = logging.getLogger(__name__)

NOT_MEASURED = "not measured: etcd backend unavailable"
CLIENT_PORT_BASE = 24_370
PEER_PORT_BASE = 24_380
"""Ports of the benchmark's cluster (below 32768, apart from the tests' and the deployment's)."""


def etcd_backend() -> tuple[Any, Any] | None:
    """(EtcdOrderer, EtcdCluster) if the etcd backend is installed, else None."""
    try:
        orderer_module = importlib.import_module("medledger.ordering.etcd")
        cluster_module = importlib.import_module("medledger.ordering.etcd_cluster")
        return orderer_module.EtcdOrderer, cluster_module.EtcdCluster
    except (ImportError, AttributeError):
        return None


def etcd_orderer_factory(data_dir: Path) -> OrdererFactory | None:
    """An OrdererFactory starting a 3-node loopback etcd cluster in `data_dir`; None without etcd."""
    backend = etcd_backend()
    if backend is None:
        return None
    orderer_class, cluster_class = backend

    @contextlib.contextmanager
    def factory(network: EmbeddedNetwork) -> Iterator[Orderer]:
        cluster = cluster_class(data_dir, size=3, client_port_base=CLIENT_PORT_BASE, peer_port_base=PEER_PORT_BASE)
        cluster.start()
        try:
            orderer: Orderer = orderer_class(cluster.endpoints, network.channel, network.cutter, orderer_id="bench")
            try:
                yield orderer
            finally:
                orderer.close()
        finally:
            cluster.stop()

    return factory


def measure_replicated(
    directory: Path,
    *,
    rate: int,
    step_seconds: float,
    sustained_seconds: float,
    factory: OrdererFactory | None = None,
    progress: ProgressCallback | None = None,
) -> NetworkResult | None:
    """The network figures on etcd ordering at the embedded network's sustained `rate` (a short
    sweep up to it first); None when no etcd backend (or `factory`) is available."""
    factory = factory or etcd_orderer_factory(directory / "etcd")
    if factory is None:
        return None
    try:
        return measure_network(
            directory / "net",
            factory,
            orderer_name="etcd",
            sweep=sorted({max(50, rate // 2), rate}),
            step_seconds=step_seconds,
            sustained_seconds=sustained_seconds,
            sustained_tps=rate,
            progress=progress,
        )
    except OrderingError as exc:  # the cluster would not start here (a port taken, say): not measured
        log.warning("%s (%s)", NOT_MEASURED, exc)
        return None
