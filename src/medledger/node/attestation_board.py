"""Where peers in separate processes exchange block attestations: the `AttestationBoard`, kept in
etcd beside the etcd orderer, or in the relay of a solo orderer served over HTTP.

Each peer publishes its signed (block hash, state root) for every block it commits; every peer
reads the others' and checks each signature against the attesting organisation's peer
certificate before trusting it (neither etcd nor the orderer is trusted for that). The quorum
hash of a height (a strict majority of organisations agreeing) is what a catching-up peer checks
a fetched block against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from medledger.core.errors import EncodingError
from medledger.core.hashing import Hash32
from medledger.ledger.attestations import BlockAttestation
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.execution import SignerKind
from medledger.node.peer import Peer
from medledger.ordering.orderer import OrderingError


class AttestationBoard(ABC):
    """Where a channel's peers post their attestations and read everyone's; it checks no signature."""

    @abstractmethod
    def publish(self, attestation: BlockAttestation) -> None:
        """Post this peer's attestation; OrderingError if the board cannot be reached."""

    @abstractmethod
    def fetch(self, number: int) -> list[BlockAttestation]:
        """Every well-formed attestation posted for block `number`, trusted or not."""

    def fetch_range(self, first: int, end: int) -> list[BlockAttestation]:
        """Every well-formed attestation posted for blocks `first` to `end - 1`; where a read fails, OrderingError
        (unless it fails after the first height, when what was read so far is returned)."""
        found: list[BlockAttestation] = []
        for number in range(first, end):
            try:
                found.extend(self.fetch(number))
            except OrderingError:
                if number == first:
                    raise
                break
        return found

    @abstractmethod
    def close(self) -> None:
        """Let go of whatever connection the board opened itself."""


def decode_attestations(entries: Iterable[bytes]) -> list[BlockAttestation]:
    found = []
    for raw in entries:
        try:
            found.append(BlockAttestation.decode(raw))
        except EncodingError:
            continue  # a broken entry attests nothing
    return found


class KeyValue(Protocol):
    """The part of an etcd client the etcd board needs."""

    def put(self, key: str, value: bytes) -> None: ...

    def get_prefix(self, prefix: str) -> Sequence[tuple[object, bytes]]: ...

    def get_range(self, start: str, end: str, *, serializable: bool = False) -> Sequence[tuple[object, bytes]]: ...


class EtcdAttestationBoard(AttestationBoard):
    """Attestations of one channel in etcd, under /medledger/<channel>/attestations/<height>/<org>."""

    def __init__(self, kv: KeyValue, channel: str) -> None:
        self.kv = kv
        self.prefix = f"/medledger/{channel}/attestations/"

    def publish(self, attestation: BlockAttestation) -> None:
        self.kv.put(f"{self.prefix}{attestation.block_number:012d}/{attestation.org_id}", attestation.encode())

    def fetch(self, number: int) -> list[BlockAttestation]:
        return decode_attestations(raw for _, raw in self.kv.get_prefix(f"{self.prefix}{number:012d}/"))

    def fetch_range(self, first: int, end: int) -> list[BlockAttestation]:
        """One range read over the heights (keys sort by zero-padded height), from the member's own copy:
        the window is polled again, so an entry still in flight is read next time."""
        if end <= first:
            return []
        entries = self.kv.get_range(f"{self.prefix}{first:012d}/", f"{self.prefix}{end:012d}/", serializable=True)
        return decode_attestations(raw for _, raw in entries)

    def close(self) -> None:
        """Nothing to do: the key-value client belongs to whoever made it."""


class Relay(Protocol):
    """An attestation relay: `medledger.ordering.relay` in process, `medledger.ordering.remote` over HTTP."""

    def post(self, number: int, data: bytes) -> object: ...

    def fetch(self, number: int) -> list[bytes]: ...

    def fetch_range(self, first: int, end: int) -> list[bytes]: ...

    def close(self) -> None: ...


class RelayAttestationBoard(AttestationBoard):
    """Attestations in the relay of a solo orderer, which keeps each height's entries by content hash."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def publish(self, attestation: BlockAttestation) -> None:
        self.relay.post(attestation.block_number, attestation.encode())

    def fetch(self, number: int) -> list[BlockAttestation]:
        return decode_attestations(self.relay.fetch(number))

    def fetch_range(self, first: int, end: int) -> list[BlockAttestation]:
        return decode_attestations(self.relay.fetch_range(first, end))

    def close(self) -> None:
        self.relay.close()


def trusted_attestations(peer: Peer, attestations: Iterable[BlockAttestation]) -> list[BlockAttestation]:
    """Those signed by the attesting organisation's registered peer member."""
    last = peer.store.last_header()
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
