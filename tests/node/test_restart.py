"""Restarts: a peer restarted under load, a whole network reopened from its data directory, and a
peer that missed blocks while stopped, all resume at the state the other peers hold."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from medledger.core.identity import Role
from medledger.ledger.attestations import BlockAttestation
from medledger.node.network import EmbeddedNetwork
from medledger.sdk import Credentials, LedgerClient, PatientWallet
from tests.conftest import ManualClock, member_client

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
"""A peer whose thread dies (and so stops following the orderer) fails the test."""

_locators = itertools.count()


def _enrol_patient(registrar: LedgerClient, channel: str) -> PatientWallet:
    wallet = PatientWallet.generate()
    registrar.submit("identity", "register_patient", wallet.enrolment_args(channel))
    return wallet


def _register(client: LedgerClient, patient: PatientWallet, count: int) -> None:
    """Register `count` records at once and check that every one is applied."""
    futures = []
    for _ in range(count):
        index = next(_locators)
        args = {
            "patient": patient.pseudonym,
            "resource_type": "Condition",
            "clinical_date": "2024-02-29",
            "content_hash": hashlib.sha256(b"%d" % index).digest(),
            "locator": f"vault://restart/{index}",
        }
        futures.append(client.send(client.prepare("records", "register", args)))
    for future in futures:
        LedgerClient.wait(future)


def _positions(network: EmbeddedNetwork) -> dict[str, tuple[int, bytes, bytes]]:
    return {s.org_id: (s.height, s.block_hash, s.state_root) for s in network.statuses()}


def _assert_in_agreement(network: EmbeddedNetwork) -> None:
    statuses = network.statuses()
    assert len(statuses) == len(network.orgs)
    assert len({(s.height, s.block_hash, s.state_root) for s in statuses}) == 1, _positions(network)
    assert all(s.diverged == () for s in statuses)


def _orderer_height(network: EmbeddedNetwork) -> int:
    assert network.orderer is not None
    return network.orderer.height()


def test_peer_restarted_under_load_resumes_with_the_others(network: EmbeddedNetwork) -> None:
    # Prepare
    registrar, _ = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    patient = _enrol_patient(registrar, network.channel)
    stop_load = threading.Event()

    def load() -> int:
        rounds = 0
        while not stop_load.is_set():
            _register(registrar, patient, 10)
            rounds += 1
        return rounds

    restarted = ("northern-research", "health-authority")
    before = {org: network.peers[org] for org in restarted}
    # Execute
    with ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(load)
        for org in restarted:
            start = _orderer_height(network)
            while _orderer_height(network) < start + 3 and not job.done():
                network.peers["st-mary"].wait_for_height(start + 3, timeout=0.1)
            network.restart_peer(org)
        resumed_at = _orderer_height(network)
        while _orderer_height(network) < resumed_at + 3 and not job.done():
            network.peers["st-mary"].wait_for_height(resumed_at + 3, timeout=0.1)
        stop_load.set()
        rounds = job.result()
    synced = network.wait_until_synced()
    # Assert
    assert synced
    assert rounds > 0
    assert all(network.peers[org] is not before[org] for org in restarted)
    assert network.peers["northern-research"].store.height() > resumed_at
    _assert_in_agreement(network)


def test_network_reopened_from_its_directory_resumes_and_commits(network: EmbeddedNetwork, clock: ManualClock) -> None:
    # Prepare
    registrar, identity = member_client(network, "city-general", "registrar", Role.REGISTRAR)
    patient = _enrol_patient(registrar, network.channel)
    _register(registrar, patient, 20)
    assert network.wait_until_synced()
    before = _positions(network)
    network.stop()
    # Execute
    reopened = EmbeddedNetwork(network.data_dir, clock=clock).start()
    try:
        resumed = _positions(reopened)
        client = LedgerClient(reopened.gateway("city-general"), Credentials.of_member(identity))
        _register(client, patient, 20)
        synced = reopened.wait_until_synced()
        # Assert
        assert resumed == before
        assert synced
        _assert_in_agreement(reopened)
        assert reopened.statuses()[0].height > next(iter(before.values()))[0]
        assert len(client.query("records", "by_patient", patient=patient.pseudonym)) == 40
    finally:
        reopened.stop()


def test_peer_that_missed_blocks_catches_up_from_the_orderer_log(network: EmbeddedNetwork) -> None:
    # Prepare
    registrar, _ = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    patient = _enrol_patient(registrar, network.channel)
    assert network.wait_until_synced()
    lagging = network.peers["mutual-health"]
    lagging.stop()
    behind = lagging.store.height()
    for _ in range(5):
        _register(registrar, patient, 8)
    target = _orderer_height(network)
    others = [peer for org, peer in network.peers.items() if org != "mutual-health"]
    assert all(peer.wait_for_height(target, timeout=30) for peer in others)
    assert lagging.store.height() == behind < target
    time.sleep(0.3)  # let the last block's attestations reach every peer; racing them is the next test's subject
    # Execute
    restarted = network.restart_peer("mutual-health")
    synced = network.wait_until_synced()
    # Assert
    assert synced
    assert restarted.store.height() == target
    _assert_in_agreement(network)
    assert len(restarted.query("records", "by_patient", {"patient": patient.pseudonym})) == 40
    _register(registrar, patient, 5)
    assert network.wait_until_synced()
    _assert_in_agreement(network)


def test_peer_restarted_while_attestations_are_in_flight_leaves_the_others_following(
    network: EmbeddedNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    registrar, _ = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    patient = _enrol_patient(registrar, network.channel)
    assert network.wait_until_synced()
    network.peers["mutual-health"].stop()
    slow = network.peers["northern-research"]
    receive = slow.receive_attestation

    def slow_receive(attestation: BlockAttestation) -> Any:
        time.sleep(0.5)  # a busy peer: broadcasters reach the next peers half a second later
        return receive(attestation)

    monkeypatch.setattr(slow, "receive_attestation", slow_receive)
    _register(registrar, patient, 1)
    # Execute
    restarted = network.restart_peer("mutual-health")  # closed while the others still broadcast the block to it
    time.sleep(1.0)
    tx = registrar.prepare("identity", "register_patient", PatientWallet.generate().enrolment_args(network.channel))
    registrar.gateway.submit(tx.encoded)
    LedgerClient.wait(restarted.receipt_future(tx.tx_id), timeout=10)
    synced = network.wait_until_synced(timeout=3)
    # Assert
    assert synced, f"peers stopped following the orderer: {_heights(network)} of {_orderer_height(network)}"
    _assert_in_agreement(network)


def _heights(network: EmbeddedNetwork) -> dict[str, int]:
    return {org: peer.store.height() for org, peer in network.peers.items()}
