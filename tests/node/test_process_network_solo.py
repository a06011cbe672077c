"""The network as processes on the solo orderer: one `medledger orderer run` process (batch log and
attestation relay) and one peer process per organisation, started by `network up --orderer solo`.

Each test starts and stops its own network. Load is a stream of signed transactions submitted over the
peers' REST APIs (the helpers of the etcd variant's tests); afterwards every peer's ledger is opened
read-only and checked, and the directory is verified as `medledger verify` does. One test, in process,
shows that the orderer's attestation relay is not trusted: a peer counts only what it checked itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medledger.ledger.attestations import attest
from medledger.node.attestation_board import RelayAttestationBoard, quorum_hash, trusted_attestations
from medledger.node.deployment import DeploymentError, ProcessNetwork, organisations
from medledger.node.network import EmbeddedNetwork, NetworkError
from medledger.node.verification import verify_directory
from medledger.ordering.relay import AttestationRelay
from medledger.ordering.remote import RemoteOrderer
from medledger.sdk import LedgerClient, PatientWallet
from tests.node.test_process_network import (
    Load,
    assert_committed_once,
    registrar_client,
    wait_for_agreement,
)

ORG_COUNT = 3
CHANNEL = "medledger"
MEDLEDGER = Path(sys.executable).parent / "medledger"
"""The console script installed beside the interpreter running the tests."""


def port_base(slot: int) -> int:
    """Ports clear of the etcd variant's (9100 + 50 per worker): the orderer on the base, peers above it."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return 9600 + 50 * worker + 10 * slot


@pytest.fixture
def network(tmp_path: Path) -> Iterator[ProcessNetwork]:
    built = ProcessNetwork.create(tmp_path / "net", ORG_COUNT, orderer="solo", peer_port_base=port_base(0))
    built.up(timeout=60)
    try:
        yield built
    finally:
        built.down()


def register_patients(load: Load, client: LedgerClient, count: int) -> None:
    for _ in range(count):
        load.submit(client.prepare("identity", "register_patient", PatientWallet.generate().enrolment_args(CHANNEL)))


def settle(network: ProcessNetwork, load: Load) -> int:
    """Have the orderer cut what it took (closing a client asks for that), then wait until every peer committed
    every acknowledged transaction; the height they agree on."""
    RemoteOrderer(network.deployment.orderer_url).close()
    return wait_for_agreement(network, load.acknowledged)


def assert_verified(network: ProcessNetwork) -> None:
    """What `medledger verify` checks; and each peer holds more attestations than blocks, so it took the other
    organisations' from the orderer's relay, checked their signatures and stored them."""
    report = verify_directory(network.data_dir)
    assert report.ok, report.fault
    assert len(report.peers) == ORG_COUNT
    assert all(peer.attestations > peer.blocks for peer in report.peers.values()), report.peers


def test_peers_agree_and_catch_up_after_a_peer_or_the_orderer_is_killed(network: ProcessNetwork) -> None:
    # Prepare
    client = registrar_client(network)
    load = Load(network, client)
    worker = threading.Thread(target=load.run, args=(CHANNEL,))
    worker.start()
    time.sleep(1)
    # Execute: SIGKILL a peer mid-load, keep loading, restart it
    network.kill_peer("northern-research", signal.SIGKILL)
    time.sleep(1)
    network.start_peer("northern-research")
    network.wait_until_serving(["northern-research"])
    time.sleep(0.5)
    load.stop.set()
    worker.join(timeout=60)
    height_before_crash = settle(network, load)
    peers, orderer_before = network.status()
    # Execute: SIGKILL the orderer once every peer has its batches, look at the network, start it again
    network.kill_orderer(signal.SIGKILL)
    time.sleep(0.5)
    _, orderer_down = network.status()
    network.start_orderer()
    network.wait_until_ordering()
    register_patients(load, client, 10)
    # Assert: nothing lost or doubled; the peers were at the orderer's height with one state root
    assert not load.failures, f"submissions that never got through: {load.failures[:3]}"
    assert height_before_crash > 3
    assert [p.org_id for p in peers] == ["st-mary", "city-general", "northern-research"]
    assert orderer_before["orderer"] == "solo" and orderer_before["running"]
    assert orderer_before["height"] == height_before_crash
    # Assert: status named the silent orderer, and the peers followed it again once it was back
    assert not orderer_down["running"] and network.deployment.orderer_url in orderer_down["error"]
    assert settle(network, load) > height_before_crash
    network.down()
    assert_committed_once(network, load.acknowledged)
    assert_verified(network)


def test_the_network_resumes_with_the_same_state_after_down_and_up(network: ProcessNetwork) -> None:
    # Prepare
    client = registrar_client(network)
    load = Load(network, client)
    register_patients(load, client, 20)
    retried = client.prepare("identity", "register_patient", PatientWallet.generate().enrolment_args(CHANNEL))
    load.submit(retried)
    height_before = settle(network, load)
    roots_before = {p.state_root for p in network.status()[0]}
    # Execute: stop everything, start again on the same directory
    network.down()
    stopped = network.status()
    network.up(timeout=60)
    resumed = network.status()
    load.submit(retried)
    register_patients(load, client, 5)
    # Assert: stopped, then back at the same height and state root, then moving on
    assert all(p.height is None for p in stopped[0]) and not stopped[1]["running"]
    assert {p.height for p in resumed[0]} == {height_before}
    assert {p.state_root for p in resumed[0]} == roots_before
    assert resumed[1]["height"] == height_before
    assert settle(network, load) > height_before
    receipt = client.gateway.receipt_future(retried.tx_id).result(timeout=30)
    assert receipt.is_valid
    network.down()
    assert_committed_once(network, load.acknowledged)
    assert_verified(network)


# the attestation relay ---------------------------------------------------------------------------------
def test_peers_check_what_the_relay_hands_them_and_forgeries_count_for_nothing(tmp_path: Path) -> None:
    # Prepare: an embedded network's genuine attestations of genesis, and two forgeries, all on the relay
    board = RelayAttestationBoard(AttestationRelay(tmp_path / "relay.sqlite"))
    with EmbeddedNetwork.create(tmp_path / "net", organisations(ORG_COUNT)) as net:
        reader = net.peers["northern-research"]
        genesis = reader.store.block(0)
        assert genesis is not None
        genuine = [a for peer in net.peers.values() for a in peer.store.attestations(0) if a.org_id == peer.org_id]
        st_mary, city_general = net.member_identity("st-mary", "peer"), net.member_identity("city-general", "peer")
        fake_hash = bytes(32)
        forged = [
            # st-mary's peer signs in city-general's name
            attest(0, fake_hash, fake_hash, "city-general", st_mary.certificate.cert_id, st_mary.key),
            # city-general's peer certificate, but not its key
            attest(0, fake_hash, fake_hash, "city-general", city_general.certificate.cert_id, st_mary.key),
        ]
        for attestation in [*forged, *genuine]:
            board.publish(attestation)
        # Execute
        relayed = board.fetch(0)
        trusted = trusted_attestations(reader, relayed)
        agreed = quorum_hash(reader, relayed)
    board.close()
    # Assert: the relay hands out everything; only the genuine ones count
    assert len(relayed) == len(genuine) + len(forged)
    assert sorted(a.org_id for a in trusted) == sorted(a.org_id for a in genuine)
    assert all(a.block_hash == genesis.hash for a in trusted)
    assert agreed == genesis.hash


# the command line -------------------------------------------------------------------------------------
def medledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(MEDLEDGER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, output


def test_network_up_runs_on_the_solo_orderer_from_the_command_line(tmp_path: Path) -> None:
    # Prepare
    data_dir = str(tmp_path / "net")
    base = port_base(1)
    # Execute
    up = medledger(
        "network",
        "up",
        "--orderer",
        "solo",
        "--orgs",
        "3",
        "--peer-port-base",
        str(base),
        "--data-dir",
        data_dir,
        cwd=tmp_path,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        with pytest.raises(DeploymentError, match="network on the solo orderer, not etcd"):
            ProcessNetwork.open_or_create(Path(data_dir), "etcd")
    finally:
        down = medledger("network", "down", "--data-dir", data_dir, cwd=tmp_path)
    verified = medledger("verify", data_dir, cwd=tmp_path)
    # Assert: up started the orderer and the peers and showed them; down stopped them; the ledgers verify
    assert f"solo orderer at http://127.0.0.1:{base}: ordering" in up.stdout
    assert up.stdout.count("serving") == 3, up.stdout
    assert down.returncode == 0 and "network stopped" in down.stdout
    assert json.loads((tmp_path / "net" / "network.json").read_text())["deployment"]["orderer_port"] == base
    assert verified.returncode == 0 and "3 ledger(s) verified" in verified.stdout, verified.stdout


def test_bad_network_input_gets_one_clear_line(tmp_path: Path) -> None:
    # Execute
    unknown = medledger("network", "up", "--orderer", "raft", "--data-dir", str(tmp_path / "a"), cwd=tmp_path)
    with pytest.raises(DeploymentError) as clash:
        ProcessNetwork.create(tmp_path / "b", 3, orderer="solo", peer_port_base=9700, orderer_port=9702)
    with pytest.raises(NetworkError) as missing:
        ProcessNetwork(tmp_path / "none")
    # Assert
    assert_one_line_error(unknown, "unknown orderer 'raft'", "etcd, solo")
    assert "orderer port 9702 is also a peer's port" in str(clash.value)
    assert "holds no medledger network" in str(missing.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
