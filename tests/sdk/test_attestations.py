"""Block attestations as the SDK checks them (medledger.sdk.attestations): which count, and which
hash a strict majority attests; then over REST, a node that serves forged attestations or makes up
the identity state they are checked against, with and without the consortium's CAs pinned."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from medledger.api import create_app
from medledger.core.identity import CertificateVerifier, MemberIdentity, OrgCA, OrgKind, Role
from medledger.ledger.attestations import BlockAttestation, attest
from medledger.ledger.execution import Signer
from medledger.node.network import EmbeddedNetwork
from medledger.node.service import LedgerService
from medledger.sdk import Credentials, LedgerClient, NoQuorumAttestation, NotTheAttestedBlock, PatientWallet
from medledger.sdk.attestations import attesting_peer, strict_majority_hash
from medledger.sdk.rest import HttpGateway
from tests.conftest import START_MS, member_client

DAY_MS = 86_400_000
BLOCK_HASH, STATE_ROOT = bytes(range(32)), bytes(range(1, 33))


def org_record(ca: OrgCA, status: str = "active") -> dict[str, Any]:
    """An organisation as the identity contract stores it."""
    return {"org_id": ca.org_id, "kind": "hospital", "ca_certificate": ca.certificate.der, "status": status}


def member_record(member: MemberIdentity, status: str = "active") -> dict[str, Any]:
    """A member as the identity contract stores it."""
    cert = member.certificate
    return {
        "cert_id": cert.cert_id,
        "org_id": cert.org_id,
        "role": cert.role.value,
        "name": cert.name,
        "certificate": cert.der,
        "status": status,
    }


def signed_by(member: MemberIdentity, org_id: str | None = None, block_hash: bytes = BLOCK_HASH) -> BlockAttestation:
    return attest(
        7, block_hash, STATE_ROOT, org_id or member.certificate.org_id, member.certificate.cert_id, member.key
    )


@dataclass
class Consortium:
    cas: dict[str, OrgCA]
    peers: dict[str, MemberIdentity]


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    cas = {org_id: OrgCA.create(org_id, OrgKind.HOSPITAL, START_MS) for org_id in ("st-mary", "city-general")}
    peers = {org_id: ca.enrol("peer", Role.PEER, START_MS) for org_id, ca in cas.items()}
    return Consortium(cas, peers)


def test_an_attestation_signed_by_the_organisations_registered_peer_counts(consortium: Consortium) -> None:
    # Prepare
    peer = consortium.peers["st-mary"]
    # Execute
    counted = attesting_peer(
        signed_by(peer), org_record(consortium.cas["st-mary"]), member_record(peer), START_MS, CertificateVerifier()
    )
    # Assert
    assert counted == peer.certificate


def test_attestations_that_are_not_the_named_organisations_peers_count_for_nothing(consortium: Consortium) -> None:
    # Prepare
    mary_ca = consortium.cas["st-mary"]
    mary_peer, city_peer = consortium.peers["st-mary"], consortium.peers["city-general"]
    clinician = mary_ca.enrol("dr-osei", Role.CLINICIAN, START_MS)
    rogue_ca = OrgCA.create("st-mary", OrgKind.HOSPITAL, START_MS)
    rogue_peer = rogue_ca.enrol("peer", Role.PEER, START_MS)
    genuine = signed_by(mary_peer)
    cases: dict[str, tuple[BlockAttestation, Any, Any, int]] = {
        "signed by a clinician, not the peer": (
            signed_by(clinician), org_record(mary_ca), member_record(clinician), START_MS,
        ),
        "City General's peer signing in St Mary's name": (
            signed_by(city_peer, "st-mary"), org_record(mary_ca), member_record(city_peer), START_MS,
        ),
        "peer certificate issued by another CA of the same name": (
            signed_by(rogue_peer), org_record(mary_ca), member_record(rogue_peer), START_MS,
        ),
        "record of another peer under the signer's id": (
            genuine, org_record(mary_ca), member_record(city_peer), START_MS,
        ),
        "block hash changed after signing": (
            dataclasses.replace(genuine, block_hash=os.urandom(32)), org_record(mary_ca), member_record(mary_peer),
            START_MS,
        ),
        "random signature": (
            dataclasses.replace(genuine, signature=os.urandom(64)), org_record(mary_ca), member_record(mary_peer),
            START_MS,
        ),
        "revoked peer": (genuine, org_record(mary_ca), member_record(mary_peer, "revoked"), START_MS),
        "organisation no longer active": (genuine, org_record(mary_ca, "removed"), member_record(mary_peer), START_MS),
        "peer certificate expired": (genuine, org_record(mary_ca), member_record(mary_peer), START_MS + 400 * DAY_MS),
        "unknown member": (genuine, org_record(mary_ca), None, START_MS),
        "member record that is a list": (genuine, org_record(mary_ca), [member_record(mary_peer)], START_MS),
        "certificate that is text": (
            genuine, org_record(mary_ca), {**member_record(mary_peer), "certificate": "pem"}, START_MS,
        ),
        "CA certificate that is garbage": (
            genuine, {**org_record(mary_ca), "ca_certificate": b"\x00" * 40}, member_record(mary_peer), START_MS,
        ),
    }  # fmt: skip
    verifier = CertificateVerifier()
    # Execute
    counted = {
        what: attesting_peer(attestation, organisation, member, at, verifier)
        for what, (attestation, organisation, member, at) in cases.items()
    }
    # Assert
    assert {what: peer for what, peer in counted.items() if peer is not None} == {}


def test_a_strict_majority_of_organisations_decides_and_an_equivocator_has_no_vote(consortium: Consortium) -> None:
    # Prepare: five organisations' votes, made up directly (they are counted, not checked, here)
    genuine = signed_by(consortium.peers["st-mary"])

    def vote(org_id: str, block_hash: bytes = BLOCK_HASH) -> BlockAttestation:
        return dataclasses.replace(genuine, org_id=org_id, block_hash=block_hash)

    other = os.urandom(32)
    # Execute
    three_of_five = strict_majority_hash([vote("a"), vote("b"), vote("c"), vote("d", other)], 5)
    two_of_five = strict_majority_hash([vote("a"), vote("b"), vote("c", other)], 5)
    twice_the_same_org = strict_majority_hash([vote("a"), vote("a"), vote("a"), vote("b")], 5)
    with_an_equivocator = strict_majority_hash([vote("a"), vote("b"), vote("c"), vote("c", other)], 5)
    # Assert
    assert three_of_five == BLOCK_HASH
    assert two_of_five is None
    assert twice_the_same_org is None
    assert with_an_equivocator is None


# over REST -------------------------------------------------------------------------------------


class MisstatingService(LedgerService):
    """A node that serves attestations of a block that does not exist, each signed by a peer of a
    CA it made up, and identity answers in which those CAs are the organisations' own."""

    def __init__(self, honest: LedgerService, fake: Mapping[str, tuple[OrgCA, MemberIdentity]]) -> None:
        super().__init__(honest.peer, honest.orderer, honest.clock)
        self.fake = fake
        self.fake_hash = os.urandom(32)

    def query(self, caller: Signer, contract: str, name: str, args: Mapping[str, Any]) -> Any:
        if (contract, name) == ("identity", "orgs"):
            return [org_record(ca) for ca, _ in self.fake.values()]
        if (contract, name) == ("identity", "member"):
            for _, peer in self.fake.values():
                if args.get("id") == peer.certificate.cert_id:
                    return member_record(peer)
        return super().query(caller, contract, name, args)

    def attestations(self, number: int) -> list[bytes]:
        return [
            attest(number, self.fake_hash, STATE_ROOT, org_id, peer.certificate.cert_id, peer.key).encode()
            for org_id, (_, peer) in self.fake.items()
        ]


class ForgingService(LedgerService):
    """A node that serves, instead of the genuine attestations, ones of a block that does not exist
    in every organisation's name, all signed with its own peer's key."""

    def attestations(self, number: int) -> list[bytes]:
        fake_hash = os.urandom(32)
        own = self.peer.identity
        return [
            attest(number, fake_hash, STATE_ROOT, org_id, own.certificate.cert_id, own.key).encode()
            for org_id in ("st-mary", "city-general", "northern-research", "mutual-health", "health-authority")
        ]


@dataclass
class Registered:
    network: EmbeddedNetwork
    credentials: Credentials
    tx_id: bytes
    block_number: int
    honest: LedgerService


@pytest.fixture
def registered(network: EmbeddedNetwork) -> Iterator[Registered]:
    """A patient enrolled through St Mary's registrar, and St Mary's node's honest service."""
    client, registrar = member_client(network, "st-mary", "registrar", Role.REGISTRAR)
    receipt = client.submit("identity", "register_patient", PatientWallet.generate().enrolment_args(network.channel))
    assert network.wait_until_synced() and network.orderer is not None
    location = network.peers["st-mary"].store.locate(receipt.tx_id)
    assert location is not None
    honest = LedgerService(network.peers["st-mary"], network.orderer, network.clock)
    yield Registered(network, Credentials.of_member(registrar), receipt.tx_id, location.block_number, honest)


def rest_client(
    registered: Registered, service: LedgerService, trusted_cas: Mapping[str, bytes] | None = None
) -> tuple[TestClient, HttpGateway, LedgerClient]:
    http = TestClient(create_app(service), raise_server_exceptions=False)
    gateway = HttpGateway(http, registered.network.channel, registered.credentials, trusted_cas=trusted_cas)
    gateway.now_ms = registered.network.clock  # type: ignore[method-assign]
    return http, gateway, LedgerClient(gateway, registered.credentials)


def test_attestations_a_node_forges_with_its_own_key_make_no_quorum(registered: Registered) -> None:
    # Prepare
    forging = ForgingService(registered.honest.peer, registered.honest.orderer, registered.honest.clock)
    http, gateway, client = rest_client(registered, forging)
    # Execute
    with http:
        attested = gateway.attested_block_hash(registered.block_number)
        with pytest.raises(NoQuorumAttestation) as refused:
            client.proof(registered.tx_id, timeout=0.2)
    # Assert
    assert attested is None
    assert refused.value.block_number == registered.block_number


def test_a_node_making_up_the_identity_state_is_caught_only_by_pinned_cas(registered: Registered) -> None:
    # Prepare: the node replaces every organisation's CA with one it holds
    network = registered.network
    fake = {}
    for org in network.orgs:
        ca = OrgCA.create(org.org_id, org.kind, START_MS)
        fake[org.org_id] = (ca, ca.enrol("peer", Role.PEER, START_MS))
    misstating = MisstatingService(registered.honest, fake)
    genesis_cas = {org.org_id: network.ca(org.org_id).certificate.der for org in network.orgs}
    unpinned_http, unpinned, unpinned_client = rest_client(registered, misstating)
    pinned_http, pinned, pinned_client = rest_client(registered, misstating, trusted_cas=genesis_cas)
    # Execute
    with unpinned_http, pinned_http:
        believed = unpinned.attested_block_hash(registered.block_number)
        with pytest.raises(NotTheAttestedBlock):
            unpinned_client.proof(registered.tx_id)
        pinned_answer = pinned.attested_block_hash(registered.block_number)
        with pytest.raises(NoQuorumAttestation):
            pinned_client.proof(registered.tx_id, timeout=0.2)
    # Assert: unpinned, the client follows the node's identity state; pinned, the forgery counts for nothing
    assert believed == misstating.fake_hash
    assert pinned_answer is None


def test_with_pinned_cas_the_honest_nodes_proof_checks(registered: Registered) -> None:
    # Prepare
    network = registered.network
    genesis_cas = {org.org_id: network.ca(org.org_id).certificate.der for org in network.orgs}
    http, _, client = rest_client(registered, registered.honest, trusted_cas=genesis_cas)
    # Execute
    with http:
        proven = client.proof(registered.tx_id)
    # Assert
    block = network.peers["st-mary"].store.block(registered.block_number)
    assert block is not None and proven.block_hash == block.hash
