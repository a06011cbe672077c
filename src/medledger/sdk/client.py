"""LedgerClient: sign a call, submit it, wait for its commit, read state, fetch and check proofs.

Errors a client raises on purpose:

    MedledgerError
    ├── SubmitTimeout            no receipt in time
    ├── TransactionFailed        committed as rejected
    └── ProofRefused             a proof the client will not trust
        ├── NoQuorumAttestation  no strict majority of organisations attested its block (in time)
        └── NotTheAttestedBlock  the quorum attested another block at that height
"""

from __future__ import annotations

import time
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

PROOF_TIMEOUT_S = 5.0
"""How long LedgerClient.proof waits, by default, for a quorum to attest the proof's block."""
FIRST_ATTESTATION_POLL_S = 0.01
LAST_ATTESTATION_POLL_S = 0.25


class SubmitTimeout(MedledgerError):
    """No receipt arrived in time. The transaction may still commit: resubmit the same bytes to find out."""


class TransactionFailed(MedledgerError):
    """A transaction was committed as rejected; `receipt` says why."""

    def __init__(self, receipt: Receipt) -> None:
        super().__init__(f"transaction {receipt.tx_id.hex()[:16]} rejected: {receipt.code}: {receipt.reason}")
        self.receipt = receipt


class ProofRefused(MedledgerError):
    """A transaction proof that is not checked against a block the quorum of organisations attested."""

    def __init__(self, block_number: int, message: str) -> None:
        super().__init__(message)
        self.block_number = block_number


class NoQuorumAttestation(ProofRefused):
    """No strict majority of organisations attested the proof's block within the time allowed.

    The newest block gathers its attestations within moments of its commit; a block that stays
    unattested is one the other organisations did not commit as the node showed it."""


class NotTheAttestedBlock(ProofRefused):
    """A strict majority of organisations attested another block at the proof's height."""


class Gateway(Protocol):
    """What a client needs from the network."""

    channel: str

    def now_ms(self) -> int: ...

    def submit(self, tx: bytes) -> None: ...

    def receipt_future(self, tx_id: TxId) -> Future[Receipt]: ...

    def query(self, contract: str, name: str, args: Mapping[str, Any]) -> Any: ...

    def transaction_proof(self, tx_id: TxId) -> TransactionProof: ...

    def attested_block_hash(self, number: int) -> bytes | None:
        """The hash a strict majority of organisations attested for block `number`, None if none (yet)."""
        ...


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

    def proof(self, tx_id: TxId, *, timeout: float = PROOF_TIMEOUT_S) -> ProvenTransaction:
        """Fetch the inclusion proof of a transaction and check it against the block hash a strict
        majority of organisations attested. The newest block's attestations arrive just after its
        commit, so this waits up to `timeout` seconds for a quorum; NoQuorumAttestation if none comes,
        NotTheAttestedBlock if the quorum attested another block."""
        proven = verify_transaction_proof(self.gateway.transaction_proof(tx_id))
        deadline = time.monotonic() + timeout
        pause = FIRST_ATTESTATION_POLL_S
        while (attested := self.gateway.attested_block_hash(proven.block_number)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoQuorumAttestation(
                    proven.block_number,
                    f"no majority of organisations attested block {proven.block_number} within {timeout} s: "
                    "the proof is not trusted; retry later or ask another organisation's node",
                )
            time.sleep(min(pause, left))
            pause = min(2 * pause, LAST_ATTESTATION_POLL_S)
        if attested != proven.block_hash:
            raise NotTheAttestedBlock(
                proven.block_number,
                f"block {proven.block_number} in the proof is not the block the quorum attested "
                f"({proven.block_hash.hex()[:16]}… against {attested.hex()[:16]}…): the node's copy differs",
            )
        return proven
