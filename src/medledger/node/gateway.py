"""Gateways: how a client reaches the network. The embedded one submits to the orderer and
reads from one organisation's peer in the same process."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from medledger.ledger.proofs import TransactionProof
from medledger.ledger.receipts import Receipt
from medledger.ledger.transactions import TxId
from medledger.node.attestation_board import quorum_hash
from medledger.node.peer import Peer
from medledger.ordering.orderer import Orderer
from medledger.ordering.solo import Clock


class EmbeddedGateway:
    """Implements the SDK's Gateway protocol in-process."""

    def __init__(self, channel: str, orderer: Orderer, peer: Peer, clock: Clock) -> None:
        self.channel = channel
        self.orderer = orderer
        self.peer = peer
        self._clock = clock

    def now_ms(self) -> int:
        return self._clock()

    def submit(self, tx: bytes) -> None:
        self.orderer.submit(tx)

    def receipt_future(self, tx_id: TxId) -> Future[Receipt]:
        return self.peer.receipt_future(tx_id)

    def query(self, contract: str, name: str, args: Mapping[str, Any]) -> Any:
        return self.peer.query(contract, name, args)

    def transaction_proof(self, tx_id: TxId) -> TransactionProof:
        return self.peer.transaction_proof(tx_id)

    def attested_block_hash(self, number: int) -> bytes | None:
        """The block hash a majority of organisations attested for `number`, if any yet.

        The peer stores the attestations it received with its next commit; those of the newest
        block are stored here first, so a proof can be checked as soon as the quorum has attested."""
        self.peer.flush_attestations()
        return quorum_hash(self.peer, self.peer.store.attestations(number))
