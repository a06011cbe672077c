"""One abstract test suite for the Orderer interface, run against every backend: the solo orderer in
process, the etcd orderer, and the solo orderer served over HTTP and reached through RemoteOrderer."""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medledger.ordering.cutter import CutterConfig
from medledger.ordering.etcd import EtcdOrderer
from medledger.ordering.etcd_cluster import EtcdCluster
from medledger.ordering.orderer import Orderer, OrderingError
from medledger.ordering.relay import AttestationRelay
from medledger.ordering.remote import RemoteOrderer
from medledger.ordering.solo import SoloOrderer
from medledger.ordering.solo_server import OrdererServer, create_orderer_app

OrdererFactory = Callable[[CutterConfig], Orderer]


def read_all(orderer: Orderer, expected_tx: int, timeout: float = 10.0) -> list[list[bytes]]:
    batches: list[list[bytes]] = []
    number, seen, deadline = 1, 0, time.monotonic() + timeout
    while seen < expected_tx and time.monotonic() < deadline:
        batch = orderer.read(number, timeout=0.5)
        if batch is None:
            continue
        assert batch.number == number
        batches.append(list(batch.transactions))
        seen += len(batch.transactions)
        number += 1
    return batches


class OrdererSuite(ABC):
    @abstractmethod
    @pytest.fixture
    def factory(self, *args: Any, **kwargs: Any) -> Iterator[OrdererFactory]:
        """Makes orderers of one backend (each backend's fixture asks for what it needs) and closes them after."""

    def test_orders_every_transaction_once_in_numbered_batches(self, factory: OrdererFactory) -> None:
        # Prepare
        orderer = factory(CutterConfig(max_tx=10, time_to_cut_ms=20))
        sent = [f"tx-{i}".encode() for i in range(55)]
        # Execute
        for tx in sent:
            orderer.submit(tx)
        batches = read_all(orderer, len(sent))
        # Assert
        assert [tx for batch in batches for tx in batch] == sent
        assert all(len(batch) <= 10 for batch in batches)
        assert orderer.height() == len(batches) + 1

    def test_a_partial_batch_is_cut_after_the_time_to_cut(self, factory: OrdererFactory) -> None:
        # Prepare
        orderer = factory(CutterConfig(max_tx=1000, time_to_cut_ms=30))
        # Execute
        orderer.submit(b"lonely")
        batch = orderer.read(1, timeout=5)
        # Assert
        assert batch is not None and batch.transactions == (b"lonely",)

    def test_timestamps_never_go_backwards(self, factory: OrdererFactory) -> None:
        # Prepare
        orderer = factory(CutterConfig(max_tx=2, time_to_cut_ms=10))
        # Execute
        for i in range(20):
            orderer.submit(bytes([i]))
        batches = [orderer.read(n, timeout=5) for n in range(1, 11)]
        # Assert
        stamps = [b.timestamp_ms for b in batches if b is not None]
        assert len(stamps) == 10
        assert stamps == sorted(stamps)

    def test_reading_a_batch_not_yet_cut_times_out_with_none(self, factory: OrdererFactory) -> None:
        # Prepare
        orderer = factory(CutterConfig())
        # Execute / Assert
        assert orderer.read(1, timeout=0.05) is None

    def test_a_drained_orderer_refuses_new_transactions(self, factory: OrdererFactory) -> None:
        # Prepare
        orderer = factory(CutterConfig(max_tx=1000, time_to_cut_ms=10_000))
        orderer.submit(b"pending")
        # Execute
        orderer.drain()
        # Assert: what was taken is ordered, nothing more is taken
        batch = orderer.read(1, timeout=5)
        assert batch is not None and batch.transactions == (b"pending",)
        with pytest.raises(OrderingError):
            orderer.submit(b"late")


class TestSoloOrderer(OrdererSuite):
    @pytest.fixture
    def factory(self, tmp_path: Path) -> Iterator[OrdererFactory]:
        made: list[SoloOrderer] = []

        def make(config: CutterConfig) -> Orderer:
            made.append(SoloOrderer(tmp_path / f"orderer-{len(made)}.sqlite", config))
            return made[-1]

        yield make
        for orderer in made:
            orderer.close()

    def test_batches_survive_a_restart(self, tmp_path: Path) -> None:
        # Prepare
        path = tmp_path / "log.sqlite"
        first = SoloOrderer(path, CutterConfig(max_tx=2, time_to_cut_ms=10))
        for i in range(4):
            first.submit(bytes([i]))
        assert first.read(2, timeout=5) is not None
        first.close()
        # Execute
        second = SoloOrderer(path, CutterConfig(max_tx=2, time_to_cut_ms=10))
        second.submit(b"after")
        # Assert
        old = second.read(1, timeout=1)
        new = second.read(3, timeout=5)
        assert old is not None and old.transactions == (b"\x00", b"\x01")
        assert new is not None and new.transactions == (b"after",)
        second.close()


class TestEtcdOrderer(OrdererSuite):
    @pytest.fixture
    def factory(self, etcd_cluster: EtcdCluster) -> Iterator[OrdererFactory]:
        made: list[EtcdOrderer] = []

        def make(config: CutterConfig) -> Orderer:
            channel = f"suite-{uuid.uuid4().hex[:12]}"
            made.append(EtcdOrderer(etcd_cluster.endpoints, channel, config, orderer_id="etcd-suite"))
            return made[-1]

        yield make
        for orderer in made:
            orderer.close()


class TestRemoteSoloOrderer(OrdererSuite):
    @pytest.fixture
    def factory(self, tmp_path: Path) -> Iterator[OrdererFactory]:
        served: list[tuple[OrdererServer, SoloOrderer, AttestationRelay]] = []
        made: list[RemoteOrderer] = []

        def make(config: CutterConfig) -> Orderer:
            solo = SoloOrderer(tmp_path / f"orderer-{len(served)}.sqlite", config)
            relay = AttestationRelay(tmp_path / f"relay-{len(served)}.sqlite")
            server = OrdererServer(create_orderer_app(solo, relay)).start()
            served.append((server, solo, relay))
            made.append(RemoteOrderer(server.url))
            return made[-1]

        yield make
        for orderer in made:
            orderer.close()
        for server, solo, relay in served:
            server.stop()
            solo.close()
            relay.close()
