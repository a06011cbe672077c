"""Block execution: validate each transaction, run its contract, and derive the block header.

Order, then execute: the orderer fixes (number, timestamp, transactions); this module turns
them into a block, receipts and state writes, deterministically. Signatures are checked in
bulk first (possibly in parallel, off this thread: a `StreamingSignatureChecker` hands each
outcome over as it arrives, so the first transactions run while later ones are still being
verified); everything else runs in order. The only clock is the block timestamp. The ledger
knows contracts and identities only through the two protocols below, which the contracts
layer implements.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError
from medledger.core.hashing import ZERO_HASH, Hash32, tagged_hash
from medledger.core.merkle import merkle_root
from medledger.core.signing import Domain, signature_is_valid
from medledger.ledger.blocks import Block, BlockHeader, SealedHeader
from medledger.ledger.errors import TransactionRejected
from medledger.ledger.indexed_state import IndexedBlockState
from medledger.ledger.receipts import VALID, Event, Receipt, RejectionCode
from medledger.ledger.state import BlockState, StateReader, TxState, next_state_root
from medledger.ledger.store import LedgerStore
from medledger.ledger.transactions import Transaction, TxId, decode_transaction, raw_transaction_id

GENESIS_TX_TAG = "medledger/genesis/v1"


class SignerKind(enum.StrEnum):
    MEMBER = "member"
    PATIENT = "patient"


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signed a transaction, as resolved from the identity state at block time."""

    kind: SignerKind
    """A member of an organisation (X.509 certificate) or a patient (wallet key)."""
    id: str
    """Certificate id (hex) or patient pseudonym (hex)."""
    public_key: bytes
    """Ed25519 key the signature must verify under."""
    org_id: str | None = None
    """The member's organisation; None for a patient."""
    role: str | None = None
    """The member's role from the certificate; None for a patient."""
    org_kind: str | None = None
    """Kind of the member's organisation (hospital, insurer, ...); None for a patient."""

    @property
    def ref(self) -> str:
        return f"{self.kind.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class TxContext:
    """What a contract function may know about the transaction it runs in."""

    tx_id: TxId
    """Id of the running transaction."""
    tx_index: int
    """Its position in the block."""
    block_number: int
    """Height of the block being built."""
    block_timestamp_ms: int
    """The block's time: the only clock a contract may read."""
    channel: str
    """The ledger's channel name."""
    signer: Signer
    """The resolved signer."""
    events: list[Event] = field(default_factory=list)
    """Events emitted so far (append through `emit`)."""

    def emit(self, contract: str, name: str, **attributes: Any) -> None:
        self.events.append(Event(contract, name, attributes))


class SignerResolver(Protocol):
    """Maps a transaction's signer reference to a key and role, or rejects it."""

    def resolve(self, state: StateReader, signer_ref: str, at_ms: int) -> Signer:
        """Raise TransactionRejected (UNKNOWN_SIGNER, CERT_INVALID, CERT_EXPIRED, CERT_REVOKED)."""


class ContractDispatcher(Protocol):
    """Runs contract functions; the ledger does not know any contract by name."""

    def execute(self, state: TxState, ctx: TxContext, contract: str, function: str, args: Mapping[str, Any]) -> None:
        """Validate, mutate, emit; raise TransactionRejected with a named code on any refusal."""

    def apply_genesis(self, state: TxState, config: Mapping[str, Any], timestamp_ms: int) -> None:
        """Write the founding state (organisations, their CAs and peers) described by `config`."""


SignatureCheck = tuple[bytes, bytes, bytes]
"""(public key, transaction body bytes, signature) in the transaction domain."""


def check_signatures_serially(checks: Sequence[SignatureCheck]) -> list[bool]:
    return [signature_is_valid(Domain.TRANSACTION, pk, payload, sig) for pk, payload, sig in checks]


SignatureChecker = Callable[[Sequence[SignatureCheck]], list[bool]]


class PendingSignatureChecks(Protocol):
    """Outcomes of a batch of checks that may still be running elsewhere."""

    def outcome(self, index: int) -> bool:
        """Whether check `index` verified, waiting for it if need be."""

    def close(self) -> None:
        """Give up on (or finish collecting) whatever is still running."""


@runtime_checkable
class StreamingSignatureChecker(Protocol):
    """A SignatureChecker that can also start a batch and hand its outcomes over one by one, so the
    executor can run the first transactions while the later signatures are still being checked."""

    def __call__(self, checks: Sequence[SignatureCheck]) -> list[bool]: ...

    def start(self, checks: Sequence[SignatureCheck]) -> PendingSignatureChecks: ...


@dataclass(frozen=True, slots=True)
class CompletedSignatureChecks:
    """Outcomes that are all known already (a plain SignatureChecker's answer)."""

    outcomes: Sequence[bool]
    """One per check, in order."""

    def outcome(self, index: int) -> bool:
        return self.outcomes[index]

    def close(self) -> None:
        pass


class ReplayIndex(Protocol):
    """Knows which transaction ids the committed chain has consumed."""

    def id_is_consumed(self, tx_id: TxId) -> bool:
        """True when a committed transaction with this id consumed it."""


@runtime_checkable
class BulkReplayIndex(ReplayIndex, Protocol):
    """A ReplayIndex that can also answer for many ids in one look-up (a store's fast path)."""

    def consumed_among(self, tx_ids: Sequence[TxId]) -> set[TxId]:
        """Those of `tx_ids` that committed transactions consumed."""


class ChainView(StateReader, ReplayIndex, Protocol):
    """What executing the next block reads: the chain's tip, its state and its consumed ids. A
    LedgerStore is one; so is a commit pipeline, which shows staged blocks as committed."""

    def height(self) -> int:
        """Number of blocks (the next block number)."""

    def last_header(self) -> SealedHeader | None:
        """The chain's tip."""


@dataclass(frozen=True, slots=True)
class KnownConsumedIds:
    """The answer of a BulkReplayIndex for one block's ids, asked once before executing it."""

    consumed: set[TxId]
    """Which of the block's ids were consumed before the block."""

    def id_is_consumed(self, tx_id: TxId) -> bool:
        return tx_id in self.consumed


def replay_index_for(store: ChainView, decoded: Sequence[Transaction | EncodingError]) -> ReplayIndex:
    """What `execute_transaction` asks about replays: the store itself, or its answer for the whole block."""
    if isinstance(store, BulkReplayIndex):
        return KnownConsumedIds(store.consumed_among([tx.tx_id for tx in decoded if isinstance(tx, Transaction)]))
    return store


def start_signature_checks(checker: SignatureChecker, checks: Sequence[SignatureCheck]) -> PendingSignatureChecks:
    if not checks:
        return CompletedSignatureChecks(())
    if isinstance(checker, StreamingSignatureChecker):
        return checker.start(checks)
    return CompletedSignatureChecks(checker(checks))


@dataclass(frozen=True, slots=True)
class ChainRules:
    """Ledger-wide validation parameters, fixed in genesis."""

    channel: str
    """Name transactions must carry."""
    max_tx_age_ms: int = 24 * 3600 * 1000
    """A transaction signed longer ago than this before the block time is stale."""
    max_tx_skew_ms: int = 10 * 60 * 1000
    """A transaction signed this far after the block time is from the future."""


@dataclass(frozen=True, slots=True)
class ExecutedBlock:
    """The outcome of executing one ordered batch, ready to commit."""

    block: Block
    """The block with its derived header."""
    receipts: tuple[Receipt, ...]
    """One receipt per transaction, in order."""
    writes: Mapping[str, tuple[bytes | None, int]]
    """State writes: key -> (value or None for deletion, index of the writing transaction)."""


class EncodedReceipts(tuple[Receipt, ...]):
    """A block's receipts, in order, together with the canonical bytes each was hashed as, so the
    store writes exactly the bytes the receipts root commits to (and does not encode them again)."""

    encoded: tuple[bytes, ...]
    """`receipt.encode()` of each receipt, in the same order."""

    def __new__(cls, receipts: Sequence[Receipt]) -> EncodedReceipts:
        self = super().__new__(cls, receipts)
        self.encoded = tuple(receipt.encode() for receipt in receipts)
        return self


def encoded_receipts(receipts: Sequence[Receipt]) -> Sequence[bytes]:
    """The canonical bytes of each receipt, reusing those computed at execution when there are any."""
    if isinstance(receipts, EncodedReceipts):
        return receipts.encoded
    return [receipt.encode() for receipt in receipts]


def _reject(tx_id: TxId, code: str, reason: str, reads: int = 0) -> Receipt:
    return Receipt(tx_id, code, reason, (), reads, 0)


def _decode_all(transactions: Sequence[bytes]) -> list[Transaction | EncodingError]:
    decoded: list[Transaction | EncodingError] = []
    for raw in transactions:
        try:
            decoded.append(decode_transaction(raw))
        except EncodingError as exc:
            decoded.append(exc)
    return decoded


def _precheck_signatures(
    committed: StateReader,
    resolver: SignerResolver,
    decoded: Sequence[Transaction | EncodingError],
    at_ms: int,
    checker: SignatureChecker,
) -> tuple[dict[int, tuple[bytes, int]], PendingSignatureChecks]:
    """Start, in one batch, checking the signature of every transaction whose signer is already
    committed; return tx index -> (key checked, position in the batch), and the batch."""
    positions: dict[int, tuple[bytes, int]] = {}
    checks: list[SignatureCheck] = []
    for index, tx in enumerate(decoded):
        if isinstance(tx, EncodingError):
            continue
        try:
            signer = resolver.resolve(committed, tx.body.signer, at_ms)
        except TransactionRejected:
            continue
        positions[index] = (signer.public_key, len(checks))
        checks.append((signer.public_key, tx.body_bytes, tx.signature))
    return positions, start_signature_checks(checker, checks)


def execute_transaction(
    block_state: BlockState,
    store: ReplayIndex,
    dispatcher: ContractDispatcher,
    resolver: SignerResolver,
    rules: ChainRules,
    tx: Transaction,
    tx_index: int,
    block_number: int,
    timestamp_ms: int,
    consumed_in_block: set[TxId],
    prechecked: tuple[bytes, bool] | None,
) -> tuple[Receipt, dict[str, bytes | None]]:
    """Validate and run one decoded transaction; return its receipt and its writes (empty if rejected)."""
    body = tx.body
    if body.channel != rules.channel:
        return _reject(tx.tx_id, RejectionCode.WRONG_CHANNEL, f"channel {body.channel!r} is not {rules.channel!r}"), {}
    try:
        signer = resolver.resolve(block_state, body.signer, timestamp_ms)
    except TransactionRejected as exc:
        return _reject(tx.tx_id, exc.code, exc.reason), {}
    if prechecked is not None and prechecked[0] == signer.public_key:
        signature_ok = prechecked[1]
    else:
        signature_ok = signature_is_valid(Domain.TRANSACTION, signer.public_key, tx.body_bytes, tx.signature)
    if not signature_ok:
        reason = f"signature does not verify under the key of {body.signer}"
        return _reject(tx.tx_id, RejectionCode.BAD_SIGNATURE, reason), {}
    if tx.tx_id in consumed_in_block or store.id_is_consumed(tx.tx_id):
        reason = f"transaction {tx.tx_id.hex()} was already accepted: a replay"
        return _reject(tx.tx_id, RejectionCode.DUPLICATE_TX, reason), {}
    consumed_in_block.add(tx.tx_id)
    if body.timestamp_ms < timestamp_ms - rules.max_tx_age_ms:
        reason = f"signed at {body.timestamp_ms}, more than {rules.max_tx_age_ms} ms before block time {timestamp_ms}"
        return _reject(tx.tx_id, RejectionCode.STALE_TX, reason), {}
    if body.timestamp_ms > timestamp_ms + rules.max_tx_skew_ms:
        reason = f"signed at {body.timestamp_ms}, more than {rules.max_tx_skew_ms} ms after block time {timestamp_ms}"
        return _reject(tx.tx_id, RejectionCode.FUTURE_TX, reason), {}
    tx_state = TxState(block_state)
    ctx = TxContext(tx.tx_id, tx_index, block_number, timestamp_ms, rules.channel, signer)
    try:
        dispatcher.execute(tx_state, ctx, body.contract, body.function, body.args)
    except TransactionRejected as exc:
        return _reject(tx.tx_id, exc.code, exc.reason, tx_state.reads), {}
    except Exception as exc:  # a contract bug must reject deterministically, never stop the peer
        reason = f"contract {body.contract}.{body.function} failed: {type(exc).__name__}: {exc}"
        return _reject(tx.tx_id, "CONTRACT_FAILURE", reason, tx_state.reads), {}
    receipt = Receipt(tx.tx_id, VALID, "", tuple(ctx.events), tx_state.reads, len(tx_state.writes))
    return receipt, tx_state.writes


def execute_block(
    store: ChainView,
    dispatcher: ContractDispatcher,
    resolver: SignerResolver,
    rules: ChainRules,
    number: int,
    timestamp_ms: int,
    transactions: Sequence[bytes],
    orderer_metadata: Mapping[str, Any],
    checker: SignatureChecker = check_signatures_serially,
) -> ExecutedBlock:
    """Execute an ordered batch on top of `store` (not yet committed) and build its block."""
    previous = store.last_header()
    if previous is None or previous.number != number - 1:
        raise ValueError(f"block {number} cannot follow height {store.height()}")
    if timestamp_ms < previous.header.timestamp_ms:
        raise ValueError(f"block {number} time {timestamp_ms} is before its predecessor's")
    decoded = _decode_all(transactions)
    positions, pending = _precheck_signatures(store, resolver, decoded, timestamp_ms, checker)
    replays = replay_index_for(store, decoded)
    block_state = IndexedBlockState(store)
    consumed_in_block: set[TxId] = set()
    receipts: list[Receipt] = []
    try:
        for index, (raw, tx) in enumerate(zip(transactions, decoded, strict=True)):
            if isinstance(tx, EncodingError):
                receipts.append(_reject(raw_transaction_id(raw), RejectionCode.MALFORMED, str(tx)))
                continue
            position = positions.get(index)
            prechecked = None if position is None else (position[0], pending.outcome(position[1]))
            receipt, writes = execute_transaction(
                block_state,
                replays,
                dispatcher,
                resolver,
                rules,
                tx,
                index,
                number,
                timestamp_ms,
                consumed_in_block,
                prechecked,
            )
            receipts.append(receipt)
            if writes:
                block_state.apply(index, writes)
    finally:
        pending.close()
    return _seal(
        previous.hash,
        previous.header.state_root,
        number,
        timestamp_ms,
        transactions,
        receipts,
        block_state,
        orderer_metadata,
    )


def _seal(
    previous_hash: Hash32,
    previous_state_root: Hash32,
    number: int,
    timestamp_ms: int,
    transactions: Sequence[bytes],
    receipts: Sequence[Receipt],
    block_state: BlockState,
    orderer_metadata: Mapping[str, Any],
) -> ExecutedBlock:
    sealed = EncodedReceipts(receipts)
    header = BlockHeader(
        number=number,
        previous_hash=previous_hash,
        timestamp_ms=timestamp_ms,
        tx_count=len(transactions),
        tx_root=merkle_root(transactions),
        receipts_root=merkle_root(sealed.encoded),
        state_root=next_state_root(previous_state_root, number, block_state.plain_writes()),
        orderer=orderer_metadata,
    )
    return ExecutedBlock(Block.from_header(header, tuple(transactions)), sealed, dict(block_state.writes))


def genesis_transaction(config: Mapping[str, Any]) -> bytes:
    """The single transaction of block 0: the network's founding configuration, unsigned."""
    return encode({"genesis": dict(config)})


def execute_genesis(
    store: LedgerStore, dispatcher: ContractDispatcher, config: Mapping[str, Any], timestamp_ms: int
) -> ExecutedBlock:
    """Build block 0 from the founding configuration. Its hash is the network's trust anchor."""
    if store.height() != 0:
        raise ValueError("genesis can only be executed on an empty store")
    raw = genesis_transaction(config)
    block_state = BlockState(store)
    tx_state = TxState(block_state)
    dispatcher.apply_genesis(tx_state, config, timestamp_ms)
    block_state.apply(0, tx_state.writes)
    receipt = Receipt(tagged_hash(GENESIS_TX_TAG, raw), VALID, "", (), tx_state.reads, len(tx_state.writes))
    return _seal(ZERO_HASH, ZERO_HASH, 0, timestamp_ms, [raw], [receipt], block_state, {"orderer": "genesis"})


def genesis_config_of(block: Block) -> dict[str, Any]:
    """Read the founding configuration back out of block 0."""
    value = decode(block.transactions[0])
    if not isinstance(value, dict) or not isinstance(value.get("genesis"), dict):
        raise EncodingError("block 0 does not hold a genesis configuration")
    return dict(value["genesis"])


def chain_rules_of(config: Mapping[str, Any]) -> ChainRules:
    """The validation rules a genesis configuration fixes."""
    rules = dict(config.get("rules", {}))
    return ChainRules(channel=str(config["channel"]), **rules)
