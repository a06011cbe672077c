"""LedgerClient: sign a call, submit it, wait for its commit, read state, fetch and check proofs."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol

from medledger.core.errors import MedledgerError
from medledger.core.identity import MemberIdentity
from medledger.core.signing import SigningKey
from medledger.ledger.proofs import ProvenTransaction, TransactionProof, verify_transaction_proof
from medledger.ledger.receipts import Receipt
from medledger.ledger.transactions import Transaction, TransactionBody, TxId, new_nonce, sign_transaction
from medledger.sdk.wallet import PatientWallet


class SubmitTimeout(MedledgerError):
    """No receipt arrived in time. The transaction may still commit: resubmit the same bytes to find out."""


class TransactionFailed(MedledgerError):
    """A transaction was committed as rejected; `receipt` says why."""

    def __init__(self, receipt: Receipt) -> None:
        super().__init__(f"transaction {receipt.tx_id.hex()[:16]} rejected: {receipt.code}: {receipt.reason}")
        self.receipt = receipt


class Gateway(Protocol):
    """What a client needs from the network."""

    channel: str

    def now_ms(self) -> int: ...

    def submit(self, tx: bytes) -> None: ...

    def receipt_future(self, tx_id: TxId) -> Future[Receipt]: ...

    def query(self, contract: str, name: str, args: Mapping[str, Any]) -> Any: ...

    def transaction_proof(self, tx_id: TxId) -> TransactionProof: ...

    def attested_block_hash(self, number: int) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who signs: a member's certificate id or a patient's pseudonym, and the key."""

    signer_ref: str
    """``member:<cert id>`` or ``patient:<pseudonym>``."""
    key: SigningKey = field(repr=False)
    """The Ed25519 key registered for that signer."""

    @classmethod
    def of_member(cls, identity: MemberIdentity) -> Credentials:
        return cls(f"member:{identity.certificate.cert_id}", identity.key)

    @classmethod
    def of_patient(cls, wallet: PatientWallet) -> Credentials:
        return cls(wallet.signer_ref, wallet.signing_key)


class LedgerClient:
    """Signs transactions as one member or patient and talks to the network through a gateway."""

    def __init__(self, gateway: Gateway, credentials: Credentials) -> None:
        self.gateway = gateway
        self.credentials = credentials

    def prepare(self, contract: str, function: str, args: Mapping[str, Any]) -> Transaction:
        """Sign a call without sending it."""
        body = TransactionBody(
            channel=self.gateway.channel,
            contract=contract,
            function=function,
            args=dict(args),
            signer=self.credentials.signer_ref,
            nonce=new_nonce(),
            timestamp_ms=self.gateway.now_ms(),
        )
        return sign_transaction(body, self.credentials.key)

    def send(self, tx: Transaction) -> Future[Receipt]:
        """Submit signed transaction bytes; the future resolves with its receipt. Safe to repeat."""
        future = self.gateway.receipt_future(tx.tx_id)
        if not future.done():
            self.gateway.submit(tx.encoded)
        return future

    def submit(
        self, contract: str, function: str, args: Mapping[str, Any], *, timeout: float = 30.0, check: bool = True
    ) -> Receipt:
        """Sign, submit and wait for the receipt; with `check`, raise TransactionFailed if rejected."""
        return self.wait(self.send(self.prepare(contract, function, args)), timeout=timeout, check=check)

    @staticmethod
    def wait(future: Future[Receipt], *, timeout: float = 30.0, check: bool = True) -> Receipt:
        try:
            receipt = future.result(timeout=timeout)
        except FutureTimeout as exc:
            raise SubmitTimeout(f"no receipt within {timeout} s") from exc
        if check and not receipt.is_valid:
            raise TransactionFailed(receipt)
        return receipt

    def query(self, contract: str, name: str, **args: Any) -> Any:
        return self.gateway.query(contract, name, args)

    def proof(self, tx_id: TxId) -> ProvenTransaction:
        """Fetch the inclusion proof of a transaction and check it against the attested block hash."""
        proof = self.gateway.transaction_proof(tx_id)
        proven = verify_transaction_proof(proof)
        attested = self.gateway.attested_block_hash(proven.block_number)
        if attested is not None and attested != proven.block_hash:
            raise MedledgerError(f"block {proven.block_number} in the proof is not the block the quorum attested")
        return proven
