"""The solo orderer served over HTTP: the batch wire format, the attestation relay, and what the service and
its clients do with bad input and an orderer that is not there. Ordering itself is in the orderer suite."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from medledger.core.encoding import encode
from medledger.ordering.cutter import CutterConfig
from medledger.ordering.orderer import OrderedBatch, OrderingError
from medledger.ordering.relay import MAX_RANGE, AttestationRefused, AttestationRelay
from medledger.ordering.remote import OrdererUnreachable, RemoteAttestationRelay, RemoteOrderer
from medledger.ordering.solo import SoloOrderer
from medledger.ordering.solo_server import OrdererServer, create_orderer_app


@dataclass
class Served:
    server: OrdererServer
    orderer: SoloOrderer
    relay: AttestationRelay


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    orderer = SoloOrderer(tmp_path / "orderer.sqlite", CutterConfig(max_tx=10, max_bytes=1000, time_to_cut_ms=20))
    relay = AttestationRelay(tmp_path / "relay.sqlite", max_bytes=100, max_per_height=3)
    server = OrdererServer(create_orderer_app(orderer, relay)).start()
    try:
        yield Served(server, orderer, relay)
    finally:
        server.stop()
        orderer.close()
        relay.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# the batch wire format ------------------------------------------------------------------------------
def test_a_batch_survives_its_wire_encoding() -> None:
    # Prepare
    batch = OrderedBatch(7, 1_700_000_000_000, (b"a", b"", b"\xff" * 300), "solo")
    # Execute
    decoded = OrderedBatch.decode(batch.encode())
    # Assert
    assert decoded == batch
    assert decoded.batch_hash == batch.batch_hash


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\x00",
        encode({"number": 1}),
        encode([1, 2, [b"a"]]),
        encode([True, 2, [b"a"], "solo"]),
        encode([1, 2, ["text"], "solo"]),
        encode([1, 2, [b"a"], b"solo"]),
    ],
    ids=["not-cbor", "a-map", "three-fields", "bool-number", "text-transaction", "bytes-orderer"],
)
def test_a_malformed_batch_is_refused_with_an_ordering_error(data: bytes) -> None:
    # Execute / Assert
    with pytest.raises(OrderingError, match="transmitted batch"):
        OrderedBatch.decode(data)


# the attestation relay ---------------------------------------------------------------------------------
def test_the_relay_keeps_an_attestation_once_and_reads_heights_and_ranges(tmp_path: Path) -> None:
    # Prepare
    relay = AttestationRelay(tmp_path / "relay.sqlite")
    # Execute
    first = relay.post(3, b"from st-mary")
    again = relay.post(3, b"from st-mary")
    relay.post(3, b"from city-general")
    relay.post(5, b"later")
    relay.close()
    reopened = AttestationRelay(tmp_path / "relay.sqlite")
    # Assert: idempotent, durable, and read by height or range
    assert (first, again) == (True, False)
    assert sorted(reopened.fetch(3)) == [b"from city-general", b"from st-mary"]
    assert reopened.fetch(4) == []
    assert sorted(reopened.fetch_range(0, 6)) == [b"from city-general", b"from st-mary", b"later"]
    reopened.close()


def test_the_relay_refuses_what_it_cannot_keep(tmp_path: Path) -> None:
    # Prepare
    relay = AttestationRelay(tmp_path / "relay.sqlite", max_bytes=10, max_per_height=2)
    relay.post(1, b"one")
    relay.post(1, b"two")
    # Execute / Assert
    with pytest.raises(AttestationRefused, match="empty"):
        relay.post(1, b"")
    with pytest.raises(AttestationRefused, match="exceeds the limit of 10"):
        relay.post(2, b"x" * 11)
    with pytest.raises(AttestationRefused, match="already holds 2"):
        relay.post(1, b"three")
    with pytest.raises(AttestationRefused, match=f"at most {MAX_RANGE} heights"):
        relay.fetch_range(0, MAX_RANGE + 1)
    relay.close()
    with pytest.raises(OrderingError, match="closed"):
        relay.fetch(1)


def test_the_remote_relay_posts_and_reads_through_the_service(served: Served) -> None:
    # Prepare
    relay = RemoteAttestationRelay(served.server.url)
    # Execute
    relay.post(2, b"signed bytes")
    relay.post(2, b"signed bytes")
    # Assert
    assert relay.fetch(2) == [b"signed bytes"]
    assert relay.fetch_range(0, 3) == [b"signed bytes"]
    with pytest.raises(OrderingError, match="exceeds the limit of 100"):
        relay.post(2, b"x" * 101)
    relay.close()


# the service and its client -------------------------------------------------------------------------------
def test_a_drained_client_leaves_the_orderer_serving_others(served: Served) -> None:
    # Prepare
    first, second = RemoteOrderer(served.server.url), RemoteOrderer(served.server.url)
    first.submit(b"one")
    # Execute
    first.close()
    second.submit(b"two")
    # Assert
    batches = [second.read(1, timeout=5), second.read(2, timeout=5)]
    assert [tx for batch in batches if batch is not None for tx in batch.transactions] == [b"one", b"two"]
    second.close()


def test_a_transaction_over_the_batch_limit_is_refused_by_name(served: Served) -> None:
    # Prepare
    orderer = RemoteOrderer(served.server.url)
    # Execute / Assert
    with pytest.raises(OrderingError, match="1001 bytes exceeds the batch limit of 1000"):
        orderer.submit(b"x" * 1001)
    with pytest.raises(OrderingError, match="no transaction"):
        orderer.submit(b"")
    orderer.close()


def test_bad_numbers_get_422_and_batches_below_the_log_are_absent(served: Served) -> None:
    # Execute
    with httpx.Client(base_url=served.server.url) as client:
        negative = client.get("/v1/batches/-1")
        huge = client.get(f"/v1/batches/{2**64}")
        text = client.get("/v1/batches/one")
        long_wait = client.get("/v1/batches/1", params={"wait": 3600})
        below = client.get("/v1/batches/0")
        not_yet = client.get("/v1/batches/1", params={"wait": 0})
    # Assert
    assert [r.status_code for r in (negative, huge, text, long_wait)] == [422, 422, 422, 422]
    assert below.status_code == 404 and "not in the orderer's log" in below.json()["error"]
    assert not_yet.status_code == 204


def test_an_unreachable_orderer_is_named_in_the_error() -> None:
    # Prepare
    url = f"http://127.0.0.1:{unused_port()}"
    orderer = RemoteOrderer(url, connect_retry_s=0.2)
    relay = RemoteAttestationRelay(url, connect_retry_s=0.2)
    # Execute / Assert
    with pytest.raises(OrdererUnreachable, match=f"nothing answers at {url}"):
        orderer.submit(b"tx")
    with pytest.raises(OrdererUnreachable, match=f"nothing answers at {url}"):
        orderer.read(1, timeout=0.1)
    with pytest.raises(OrdererUnreachable, match=f"nothing answers at {url}"):
        relay.fetch(1)
    orderer.close()  # closing does not fail because the orderer is gone
    relay.close()


def test_a_taken_port_is_named(served: Served) -> None:
    # Execute / Assert
    with pytest.raises(OrderingError, match=f"cannot listen on 127.0.0.1:{served.server.port}"):
        OrdererServer(create_orderer_app(served.orderer, served.relay), port=served.server.port)


def test_a_bad_orderer_address_is_refused() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="must start with http"):
        RemoteOrderer("127.0.0.1:8700")
