"""Where peers in separate processes exchange block attestations: a prefix in etcd.

Each peer publishes its signed (block hash, state root) for every block it commits, under
/medledger/<channel>/attestations/<height>/<org>; every peer reads the others' and checks each
signature against the attesting organisation's peer certificate before trusting it. The quorum
hash of a height (a strict majority of organisations agreeing) is what a catching-up peer checks
a fetched block against.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from medledger.core.errors import EncodingError
from medledger.core.hashing import Hash32
from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.execution import SignerKind
from medledger.node.peer import Peer


class KeyValue(Protocol):
    """The part of an etcd client the board needs."""

    def put(self, key: str, value: bytes) -> None: ...

    def get_prefix(self, prefix: str) -> Sequence[tuple[object, bytes]]: ...


class EtcdAttestationBoard:
    """Attestations of one channel in etcd."""

    def __init__(self, kv: KeyValue, channel: str) -> None:
        self.kv = kv
        self.prefix = f"/medledger/{channel}/attestations/"

    def publish(self, attestation: BlockAttestation) -> None:
        self.kv.put(f"{self.prefix}{attestation.block_number:012d}/{attestation.org_id}", attestation.encode())

    def fetch(self, number: int) -> list[BlockAttestation]:
        found = []
        for _, raw in self.kv.get_prefix(f"{self.prefix}{number:012d}/"):
            try:
                found.append(BlockAttestation.decode(raw))
            except EncodingError:
                continue  # a broken entry attests nothing
        return found


def trusted_attestations(peer: Peer, attestations: Iterable[BlockAttestation]) -> list[BlockAttestation]:
    """Those signed by the attesting organisation's registered peer member."""
    last = peer.store.last_block()
    at = 0 if last is None else last.header.timestamp_ms
    trusted = []
    for attestation in attestations:
        try:
            signer = peer.resolver.resolve(peer.store, f"member:{attestation.signer}", at)
        except TransactionRejected:
            continue
        if signer.kind is not SignerKind.MEMBER or signer.org_id != attestation.org_id or signer.role != "peer":
            continue
        if attestation.signature_is_valid(signer.public_key):
            trusted.append(attestation)
    return trusted


def quorum_hash(peer: Peer, attestations: Iterable[BlockAttestation]) -> Hash32 | None:
    """The block hash a strict majority of the network's organisations attested, if any."""
    organisations = len(peer.query("identity", "orgs", {}))
    votes = Counter({a.org_id: a.block_hash for a in trusted_attestations(peer, attestations)}.values())
    for block_hash, count in votes.items():
        if 2 * count > organisations:
            return block_hash
    return None
