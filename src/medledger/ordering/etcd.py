"""The replicated orderer: transactions and batches live in an etcd cluster (Raft; a write is acknowledged once
a majority fsynced it), cut by one or more cutters that race for each height and can never fork.

Keys under `/medledger/<channel>/`:

    txq/<sha256 hex of tx>   a submitted transaction, written create-only (a retried submit is stored once)
    blocks/<n:012d>          batch n: canonical CBOR of the OrderedBatch plus the queue cursor it ends at
    head                     the number of the newest batch; every batch write compares and moves it
    floor                    the lowest batch number compaction has kept
    progress/<reader id>     the height a reader committed (every batch below it)

Cutters can stand by: one with `standby_s` > 0 lets that long pass, once it has a batch ready, for
another cutter to write that height, and then only reads it (adopts it) instead of racing. A
deployment gives its cutters delays of 0, 1, 2, ... steps, so the first writes nearly every batch
(one Raft write per batch instead of one per cutter) and the next takes over when it stops.

The queue is read in (create revision, key) order. Batch n covers exactly the queue entries after the cursor
of batch n-1 up to its own cursor, so a cutter that restarts, or loses a race and adopts the winner's batch,
continues from exactly there. A batch is written only if `head` still names n-1 and `blocks/n` does not exist,
so two cutters never write two different batches for one height, even when one of them is far behind.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice

from medledger.core.encoding import decode, encode
from medledger.core.errors import EncodingError
from medledger.ordering.cutter import BlockCutter, CutterConfig
from medledger.ordering.etcd_client import (
    MAX_TXN_OPS,
    PROPOSAL_TIMEOUT_S,
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdKV,
    KeyValue,
    WatchBatch,
    compare_absent,
    compare_mod_revision,
    compare_value,
    delete_op,
    prefix_end,
    put_op,
    range_kvs,
    range_op,
)
from medledger.ordering.etcd_cluster import DEFAULT_MAX_REQUEST_BYTES
from medledger.ordering.orderer import OrderedBatch, Orderer, OrderingError
from medledger.ordering.solo import Clock, wall_clock_ms

__all__ = ["BatchCompacted", "EtcdKV", "EtcdOrderer", "QueuePosition", "decode_record", "encode_record"]

log = logging.getLogger(__name__)

BATCH_FORMAT = "medledger/etcd-batch/v1"
"""Names the layout of a stored batch record."""
RECORD_OVERHEAD_BYTES = 16 * 1024
"""Room a batch write needs beside its transactions (record fields, cursor, head update, etcd's framing)."""
PER_TX_OVERHEAD_BYTES = 9
"""The most a CBOR byte-string header adds to each transaction in a record."""
SUBMIT_BATCH_BYTES = 2 * 1024 * 1024
"""Most transaction bytes one submit txn carries (at most a quarter of the request limit)."""
ADOPT_PAGE = 64
"""Batches fetched per request when catching up with batches other cutters wrote."""
SCAN_PAGE = 1000
"""Queue entries fetched per request when a cutter rebuilds its view after the watch history was compacted."""
SEED_BATCHES = 8
"""Recent batches whose transactions a (re)starting cutter remembers, to drop resubmitted duplicates."""
REMEMBERED_TX = 100_000
"""How many included transaction digests a cutter keeps to drop duplicates."""
DRAIN_WAIT_S = 5.0
"""How long drain() waits for the cutter to see this orderer's last acknowledged submissions."""


class BatchCompacted(OrderingError):
    """The batch asked for was compacted away after every expected reader committed it; catch up from a peer."""

    def __init__(self, number: int, floor: int) -> None:
        super().__init__(
            f"batch {number} was compacted away (the orderer keeps batches from {floor} on); "
            "fetch the block from another peer"
        )
        self.number = number
        self.floor = floor


@dataclass(frozen=True, slots=True, order=True)
class QueuePosition:
    """Where an entry sits in the queue: ordered by the revision that created it, then by key."""

    revision: int
    key: bytes


QUEUE_START = QueuePosition(0, b"")
"""Before the first queue entry."""


@dataclass(frozen=True, slots=True)
class _Entry:
    position: QueuePosition
    tx: bytes
    digest: bytes
    arrived: float
    """time.monotonic() when this cutter first saw the entry (the time-to-cut runs from the first pending one)."""


@dataclass(eq=False)
class _Submission:
    tx: bytes
    key: bytes
    done: threading.Event = field(default_factory=threading.Event)
    error: OrderingError | None = None


class _Resync(OrderingError):
    """The cutter's view no longer matches etcd (a batch it needs was compacted): rebuild it from `head`."""


def encode_record(batch: OrderedBatch, cursor: QueuePosition) -> bytes:
    """The stored form of batch n: the batch and the queue position of the last entry it covers."""
    return encode(
        {
            "format": BATCH_FORMAT,
            "number": batch.number,
            "timestamp_ms": batch.timestamp_ms,
            "transactions": list(batch.transactions),
            "orderer_id": batch.orderer_id,
            "cursor_revision": cursor.revision,
            "cursor_key": cursor.key,
        }
    )


def decode_record(data: bytes) -> tuple[OrderedBatch, QueuePosition]:
    try:
        record = decode(data)
        if not isinstance(record, dict) or record.get("format") != BATCH_FORMAT:
            raise OrderingError(f"a stored batch is not a {BATCH_FORMAT} record")
        transactions = record["transactions"]
        if not all(isinstance(tx, bytes) for tx in transactions):
            raise OrderingError("a stored batch holds a transaction that is not bytes")
        batch = OrderedBatch(
            int(record["number"]), int(record["timestamp_ms"]), tuple(transactions), str(record["orderer_id"])
        )
        return batch, QueuePosition(int(record["cursor_revision"]), bytes(record["cursor_key"]))
    except (EncodingError, KeyError, TypeError, ValueError) as exc:
        raise OrderingError(f"a stored batch record is malformed: {exc}") from exc


def _number_value(number: int) -> bytes:
    return encode(number)


def _decode_number(data: bytes, what: str) -> int:
    try:
        value = decode(data)
    except EncodingError as exc:
        raise OrderingError(f"the stored {what} is not canonical CBOR: {exc}") from exc
    if not isinstance(value, int) or isinstance(value, bool):
        raise OrderingError(f"the stored {what} is not an integer")
    return value


class _QueueWatcher(threading.Thread):
    """Streams new queue entries (whole revisions at a time) into the cutter's inbox until stopped."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: bytes,
        start_revision: int,
        inbox: queue.Queue[tuple[int, WatchBatch | None]],
        generation: int,
    ) -> None:
        super().__init__(name=f"etcd-queue-watch-{generation}", daemon=True)
        self._client = client
        self._prefix = prefix
        self._next_revision = max(start_revision, 1)
        self._inbox = inbox
        self._generation = generation
        self.stopping = threading.Event()

    def run(self) -> None:
        delay = 0.02
        while not self.stopping.is_set():
            try:
                for batch in self._client.watch(
                    self._prefix, prefix_end(self._prefix), self._next_revision, idle_timeout=1.0
                ):
                    if self.stopping.is_set():
                        return
                    self._inbox.put((self._generation, batch))
                    self._next_revision = max(kv.mod_revision for kv in batch.events) + 1
                delay = 0.02
            except EtcdCompacted:
                self._inbox.put((self._generation, None))  # None: the history is gone, scan the queue instead
                return
            except EtcdError as exc:
                log.debug("queue watch: %s; reconnecting", exc)
                self.stopping.wait(delay)
                delay = min(delay * 2, 0.5)
            except Exception:  # the orderer closed the HTTP client under a stopping watch
                if self.stopping.is_set():
                    return
                raise


class EtcdOrderer(Orderer):
    """An Orderer on an etcd cluster: submit appends to the channel's queue, cutters turn it into batches.

    Run `cutter=True` on as many orderers as you like (one per peer process, say): they race for each height
    and the losers adopt the winner's batch. Every cutter of a channel must use the same CutterConfig.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        channel: str,
        config: CutterConfig | None = None,
        *,
        orderer_id: str,
        clock: Clock = wall_clock_ms,
        first_number: int = 1,
        cutter: bool = True,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        retry_for: float = 15.0,
        submit_writers: int = 2,
        standby_s: float = 0.0,
    ) -> None:
        if not channel or "/" in channel:
            raise ValueError(f"channel name {channel!r} must be non-empty and hold no '/'")
        self.config = config or CutterConfig()
        needed = self.config.max_bytes + PER_TX_OVERHEAD_BYTES * self.config.max_tx + RECORD_OVERHEAD_BYTES
        if needed > max_request_bytes:
            raise OrderingError(
                f"cutter max_bytes={self.config.max_bytes} (max_tx={self.config.max_tx}) needs etcd requests of up "
                f"to {needed} bytes, over the cluster's --max-request-bytes of {max_request_bytes}: lower max_bytes "
                f"to at most {max_request_bytes - PER_TX_OVERHEAD_BYTES * self.config.max_tx - RECORD_OVERHEAD_BYTES}"
                " or raise --max-request-bytes"
            )
        if standby_s < 0:
            raise ValueError(f"standby_s must not be negative, got {standby_s}")
        self.channel = channel
        self.orderer_id = orderer_id
        self.standby_s = standby_s
        """How long a ready batch waits for another cutter to write its height before this one writes it."""
        self.first_number = first_number
        self._clock = clock
        self._client = EtcdClient(endpoints, retry_for=retry_for)
        root = f"/medledger/{channel}/".encode()
        self._txq = root + b"txq/"
        self._blocks = root + b"blocks/"
        self._progress = root + b"progress/"
        self._head = root + b"head"
        self._floor = root + b"floor"
        self._closed = False

        # submissions: callers queue, writer threads group them into one etcd txn each
        self._submit_bytes = max(1, min(SUBMIT_BATCH_BYTES, max_request_bytes // 4))
        self._subs: deque[_Submission] = deque()
        self._subs_cond = threading.Condition()
        self._inflight = 0
        self._accepting = True
        self._writers_stop = False
        self._max_created_revision = 0
        self._writers = [
            threading.Thread(target=self._write_loop, name=f"etcd-submit-{channel}-{i}", daemon=True)
            for i in range(submit_writers)
        ]
        for writer in self._writers:
            writer.start()

        # the cutter's view: batches up to `_cursor` are written; `_entries` are the queue entries after it
        self._next_number = first_number
        self._last_ts = 0
        self._cursor = QUEUE_START
        self._head_known = False
        self._entries: deque[_Entry] = deque()
        self._pending_digests: set[bytes] = set()
        self._block_cutter = BlockCutter(self.config)
        self._ready: deque[int] = deque()
        self._included: OrderedDict[bytes, None] = OrderedDict()
        self._seen_revision = 0
        self._inbox: queue.Queue[tuple[int, WatchBatch | None]] = queue.Queue()
        self._generation = 0
        self._watcher: _QueueWatcher | None = None
        self._resync_mode: str | None = "watch"
        self._cutter_stop = threading.Event()
        self._drain_requested = threading.Event()
        self._drain_target = 0
        self._drain_since = 0.0
        self._cutter_thread: threading.Thread | None = None
        if cutter:
            self._cutter_thread = threading.Thread(target=self._cut_loop, name=f"etcd-cutter-{channel}", daemon=True)
            self._cutter_thread.start()

    # keys ----------------------------------------------------------------------------------------
    def block_key(self, number: int) -> bytes:
        return self._blocks + f"{number:012d}".encode()

    def queue_key(self, tx: bytes) -> bytes:
        return self._txq + hashlib.sha256(tx).hexdigest().encode()

    # the Orderer interface -------------------------------------------------------------------------
    def submit(self, tx: bytes) -> None:
        """Append `tx` to the queue; returns once etcd acknowledged it (a majority of members fsynced it)."""
        if len(tx) > self.config.max_bytes:
            raise OrderingError(
                f"a transaction of {len(tx)} bytes exceeds the batch limit of {self.config.max_bytes} bytes"
            )
        submission = _Submission(tx, self.queue_key(tx))
        with self._subs_cond:
            if not self._accepting:
                raise OrderingError("the orderer is drained or closed and takes no more transactions")
            self._subs.append(submission)
            self._subs_cond.notify()
        if not submission.done.wait(timeout=self._client.retry_for * 2 + 30):
            raise OrderingError("etcd did not acknowledge the transaction in time; submit it again (it is idempotent)")
        if submission.error is not None:
            raise submission.error

    def read(self, number: int, timeout: float | None = None) -> OrderedBatch | None:
        """Batch `number`, waiting up to `timeout` s (None: forever) for it; BatchCompacted if it is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self.block_key(number)
        while not self._closed:
            try:
                result = self._client.txn([], [range_op(key), range_op(self._floor)])
            except EtcdError:
                if self._closed:
                    return None
                raise
            responses = result.get("responses", [])
            found = range_kvs(responses[0])
            if found:
                return self._batch_from(found[0], number)
            floor = range_kvs(responses[1])
            if floor and number < (low := _decode_number(floor[0].value, "floor")):
                raise BatchCompacted(number, low)
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            start = int(result.get("header", {}).get("revision", 0)) + 1
            written = self._client.wait_for_key(key, start, min(remaining, 1.0))
            if written is not None:
                return self._batch_from(written, number)
        return None

    def _batch_from(self, kv: KeyValue, number: int) -> OrderedBatch:
        batch, _ = decode_record(kv.value)
        if batch.number != number:
            raise OrderingError(f"the record stored as batch {number} says it is batch {batch.number}")
        return batch

    def height(self) -> int:
        head = self._client.get(self._head)
        return self.first_number if head is None else _decode_number(head.value, "head") + 1

    def drain(self) -> None:
        """Stop taking transactions, wait for the ones taken, and (with a cutter) cut what is pending."""
        with self._subs_cond:
            if not self._accepting:
                return
            self._accepting = False
            while self._subs or self._inflight:
                self._subs_cond.wait(0.1)
            self._writers_stop = True
            self._subs_cond.notify_all()
        for writer in self._writers:
            writer.join(timeout=5)
        if self._cutter_thread is not None:
            self._drain_target = self._max_created_revision
            self._drain_since = time.monotonic()
            self._drain_requested.set()
            self._cutter_thread.join(timeout=DRAIN_WAIT_S + self._client.retry_for + 10)

    def close(self) -> None:
        self.drain()
        self._closed = True
        self._cutter_stop.set()
        if self._cutter_thread is not None:
            self._cutter_thread.join(timeout=10)
        self._stop_watcher()
        self._client.close()

    # progress and compaction --------------------------------------------------------------------------
    def report_progress(self, reader_id: str, height: int) -> None:
        """Record that `reader_id` committed every batch below `height`."""
        if not reader_id or "/" in reader_id:
            raise ValueError(f"reader id {reader_id!r} must be non-empty and hold no '/'")
        self._client.put(self._progress + reader_id.encode(), _number_value(height), timeout=PROPOSAL_TIMEOUT_S)

    def progress(self) -> dict[str, int]:
        """The height each reader last reported."""
        kvs, _, _ = self._client.range(self._progress, prefix_end(self._progress))
        return {kv.key[len(self._progress) :].decode(): _decode_number(kv.value, "progress") for kv in kvs}

    def compact(self, expected_readers: Sequence[str]) -> int:
        """Delete the batches (and their queue entries) every expected reader committed, then compact etcd's
        history up to them. Safe to call from several processes at once. Returns the lowest batch kept."""
        for _attempt in range(5):
            floor_kv = self._client.get(self._floor)
            floor = self.first_number if floor_kv is None else _decode_number(floor_kv.value, "floor")
            reported = self.progress()
            if not expected_readers or any(reader not in reported for reader in expected_readers):
                return floor
            head = self._client.get(self._head)
            if head is None:
                return floor
            target = min(min(reported[reader] for reader in expected_readers), _decode_number(head.value, "head"))
            if target <= floor:
                return floor
            last_gone = self._client.get(self.block_key(target - 1))
            if last_gone is None:
                continue  # another process compacted meanwhile: look again
            _, cursor = decode_record(last_gone.value)
            if floor_kv is None:
                guard = compare_absent(self._floor)
            else:
                guard = compare_mod_revision(self._floor, floor_kv.mod_revision)
            result = self._client.txn([guard], [put_op(self._floor, _number_value(target))])
            if not result.get("succeeded"):
                continue
            self._client.delete_range(self._blocks, self.block_key(target))
            self._delete_queue_through(cursor)
            self._client.compact(cursor.revision)
            log.info("%s: compacted batches below %d (etcd revision %d)", self.channel, target, cursor.revision)
            return target
        return floor

    def _delete_queue_through(self, cursor: QueuePosition) -> None:
        kvs, _, _ = self._client.range(
            self._txq, prefix_end(self._txq), keys_only=True, max_create_revision=cursor.revision
        )
        covered = [kv.key for kv in kvs if QueuePosition(kv.create_revision, kv.key) <= cursor]
        for start in range(0, len(covered), MAX_TXN_OPS):
            self._client.txn([], [delete_op(key) for key in covered[start : start + MAX_TXN_OPS]])

    # submission writers ------------------------------------------------------------------------------
    def _take_submissions(self) -> list[_Submission] | None:
        with self._subs_cond:
            while not self._subs and not self._writers_stop:
                self._subs_cond.wait()
            if not self._subs:
                return None
            taken: list[_Submission] = []
            keys: set[bytes] = set()
            size = 0
            while self._subs:
                nxt = self._subs[0]
                is_new = nxt.key not in keys
                if is_new and taken and (len(keys) >= MAX_TXN_OPS or size + len(nxt.tx) > self._submit_bytes):
                    break
                taken.append(self._subs.popleft())
                if is_new:
                    keys.add(nxt.key)
                    size += len(nxt.tx)
            self._inflight += 1
            return taken

    def _write_loop(self) -> None:
        while True:
            taken = self._take_submissions()
            if taken is None:
                return
            unique: dict[bytes, bytes] = {}
            for submission in taken:
                unique.setdefault(submission.key, submission.tx)
            error: OrderingError | None = None
            try:
                self._store_queue_entries(unique)
            except EtcdError as exc:
                error = OrderingError(f"transaction not taken by etcd: {exc}")
            except Exception as exc:  # every caller must hear back: a dead writer would strand them silently
                log.exception("%s: queue write failed", self.channel)
                error = OrderingError(f"transaction not taken: {type(exc).__name__}: {exc}")
            for submission in taken:
                submission.error = error
                submission.done.set()
            with self._subs_cond:
                self._inflight -= 1
                self._subs_cond.notify_all()

    def _store_queue_entries(self, entries: dict[bytes, bytes]) -> None:
        """Create every key that does not exist yet, all in one txn when none does (the common case).

        A flat txn (all compares, then all puts) costs etcd about half of one nested create-only txn per key.
        If some keys exist already (a resubmission, or a retried request whose first answer was lost), the
        failure branch names them and the rest are written by the next round.
        """
        todo = dict(entries)
        while todo:
            keys = list(todo)
            result = self._client.txn(
                [compare_absent(key) for key in keys],
                [put_op(key, todo[key]) for key in keys],
                [range_op(key, keys_only=True) for key in keys],
                timeout=PROPOSAL_TIMEOUT_S,
            )
            if result.get("succeeded"):
                revision = int(result.get("header", {}).get("revision", 0))
                with self._subs_cond:
                    self._max_created_revision = max(self._max_created_revision, revision)
                return
            existing = [
                key for key, response in zip(keys, result.get("responses", []), strict=True) if range_kvs(response)
            ]
            if not existing:
                raise EtcdError("etcd refused a create-only queue write but reports none of its keys as present")
            for key in existing:
                del todo[key]

    # the cutter ---------------------------------------------------------------------------------------
    def _cut_loop(self) -> None:
        try:
            self._cut_until_stopped()
        finally:
            self._stop_watcher()

    def _cut_until_stopped(self) -> None:
        failures = 0
        while not self._cutter_stop.is_set():
            try:
                if self._resync_mode is not None:
                    self._resync(scan=self._resync_mode == "scan")
                if self._step():
                    return
                failures = 0
            except _Resync as exc:
                log.info("%s cutter %s: %s; rebuilding from head", self.channel, self.orderer_id, exc)
                self._resync_mode = "watch"
                self._cutter_stop.wait(0.02)
            except EtcdCompacted as exc:
                log.info("%s cutter %s: %s; scanning the queue", self.channel, self.orderer_id, exc)
                self._resync_mode = "scan"
            except OrderingError as exc:
                failures += 1
                log.warning("%s cutter %s: %s (retrying)", self.channel, self.orderer_id, exc)
                self._resync_mode = self._resync_mode or "watch"
                self._cutter_stop.wait(min(0.05 * 2**failures, 1.0))
            except Exception:  # a cutter that died here would stall the channel without a word: log, rebuild
                failures += 1
                log.exception("%s cutter %s failed; rebuilding from head", self.channel, self.orderer_id)
                self._resync_mode = "watch"
                self._cutter_stop.wait(min(0.05 * 2**failures, 1.0))
            if self._drain_requested.is_set() and time.monotonic() > self._drain_since + DRAIN_WAIT_S + 15:
                log.error("%s cutter %s: gave up cutting the last batch while draining", self.channel, self.orderer_id)
                return

    def _step(self) -> bool:
        """Take what the watch delivered, publish what is cut; True once a requested drain is complete."""
        wait = 0.1
        if self._entries and not self._ready:
            wait = max(0.0, min(wait, self._entries[0].arrived + self.config.time_to_cut_ms / 1000 - time.monotonic()))
        try:
            item: tuple[int, WatchBatch | None] | None = self._inbox.get(timeout=wait)
        except queue.Empty:
            item = None
        while item is not None:
            generation, batch = item
            if generation == self._generation:
                if batch is None:
                    raise EtcdCompacted("the queue's watch history was compacted")
                self._take(batch)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                item = None
        self._publish_ready()
        now = time.monotonic()
        draining = self._drain_requested.is_set()
        caught_up = self._seen_revision >= self._drain_target or now > self._drain_since + DRAIN_WAIT_S
        drain_due = draining and caught_up
        timed_out = bool(self._entries) and now >= self._entries[0].arrived + self.config.time_to_cut_ms / 1000
        if (timed_out or drain_due) and self._block_cutter.pending_count:
            self._ready.append(len(self._block_cutter.cut()))
            self._publish_ready()
        return drain_due and not self._entries

    def _take(self, batch: WatchBatch) -> None:
        now = time.monotonic()
        for kv in sorted(batch.events, key=lambda kv: (kv.create_revision, kv.key)):
            self._seen_revision = max(self._seen_revision, kv.mod_revision)
            self._consider(kv, now)

    def _consider(self, kv: KeyValue, arrived: float) -> None:
        if kv.version != 1:
            return  # an overwrite, not a submission
        position = QueuePosition(kv.create_revision, kv.key)
        if position <= self._cursor or (self._entries and position <= self._entries[-1].position):
            return
        digest = hashlib.sha256(kv.value).digest()
        if kv.key != self._txq + digest.hex().encode():
            log.warning("%s: queue key %r does not name its transaction's hash; ignored", self.channel, kv.key)
            return
        if digest in self._included or digest in self._pending_digests:
            return  # already ordered (a resubmission stored again after compaction) or already pending
        if len(kv.value) > self.config.max_bytes:
            log.warning("%s: dropped a %d-byte transaction over the batch limit", self.channel, len(kv.value))
            return
        self._append(_Entry(position, kv.value, digest, arrived))

    def _append(self, entry: _Entry) -> None:
        self._entries.append(entry)
        self._pending_digests.add(entry.digest)
        for cut in self._block_cutter.append(entry.tx):
            self._ready.append(len(cut))

    def _publish_ready(self) -> None:
        while self._ready:
            if self.standby_s and self._adopt_if_written(self._next_number):
                continue  # another cutter wrote this height: what is left was cut again after its cursor
            count = self._ready[0]
            if self._publish(list(islice(self._entries, count))):
                for _ in range(count):
                    self._pending_digests.discard(self._entries.popleft().digest)
                self._ready.popleft()
            else:
                self._rebuild()

    def _publish(self, entries: list[_Entry]) -> bool:
        """Write the next batch; False if another cutter got the height first (its batches are adopted)."""
        number = self._next_number
        batch = OrderedBatch(
            number, max(self._clock(), self._last_ts), tuple(entry.tx for entry in entries), self.orderer_id
        )
        cursor = entries[-1].position
        key = self.block_key(number)
        if self._head_known:
            head_guard = compare_value(self._head, _number_value(number - 1))
        else:
            head_guard = compare_absent(self._head)
        result = self._client.txn(
            [head_guard, compare_absent(key)],
            [put_op(key, encode_record(batch, cursor)), put_op(self._head, _number_value(number))],
            [range_op(self._head), range_op(key, prefix_end(self._blocks), limit=ADOPT_PAGE)],
            # Bounded like a submission: after a leader's kill the channel stopped cutting for ~3 s, not ~1. A retry of
            # a write that did land finds the height taken, and adopts the batch.
            timeout=PROPOSAL_TIMEOUT_S,
        )
        if result.get("succeeded"):
            self._advance(batch, cursor)
            return True
        responses = result.get("responses", [])
        head = range_kvs(responses[0])
        if not head:
            raise _Resync(f"block {number} exists but the channel has no head")
        self._adopt(_decode_number(head[0].value, "head"), range_kvs(responses[1]))
        return False

    def _adopt_if_written(self, number: int) -> bool:
        """Standing by: wait up to `standby_s` for another cutter to write batch `number`; if one does, adopt
        it (no write of ours) and recut the entries after its cursor. False: nobody did, write it ourselves."""
        key = self.block_key(number)
        found, revision, _ = self._client.range(key, serializable=True)
        if not found:
            written = self._client.wait_for_key(key, revision + 1, self.standby_s)
            if written is None:
                return False
            found = [written]
        self._adopt(number, found)
        self._rebuild()
        return True

    def _adopt(self, head: int, found: list[KeyValue]) -> None:
        """Take on the batches other cutters wrote, up to `head`."""
        if head < self._next_number:
            raise _Resync(f"the head names batch {head} but batch {self._next_number} could not be written")
        while self._next_number <= head:
            if not found:
                found, _, _ = self._client.range(
                    self.block_key(self._next_number), prefix_end(self._blocks), limit=ADOPT_PAGE
                )
            if not found:
                raise _Resync(f"batch {self._next_number} is gone (compacted)")
            for kv in found:
                batch, cursor = decode_record(kv.value)
                if batch.number != self._next_number:
                    raise _Resync(f"batch {self._next_number} is gone (compacted)")
                self._advance(batch, cursor)
                if self._next_number > head:
                    break
            found = []

    def _advance(self, batch: OrderedBatch, cursor: QueuePosition) -> None:
        self._next_number = batch.number + 1
        self._last_ts = max(self._last_ts, batch.timestamp_ms)
        self._cursor = max(self._cursor, cursor)
        self._head_known = True
        for tx in batch.transactions:
            self._included[hashlib.sha256(tx).digest()] = None
        while len(self._included) > REMEMBERED_TX:
            self._included.popitem(last=False)

    def _rebuild(self, entries: list[_Entry] | None = None) -> None:
        """Recut the entries after the cursor from scratch (after adopting batches, or after a resync)."""
        kept = [
            entry
            for entry in (self._entries if entries is None else entries)
            if entry.position > self._cursor and entry.digest not in self._included
        ]
        self._entries = deque()
        self._pending_digests = set()
        self._block_cutter = BlockCutter(self.config)
        self._ready = deque()
        for entry in kept:
            if entry.digest not in self._pending_digests:
                self._append(entry)

    def _resync(self, *, scan: bool) -> None:
        """Rebuild the cutter's view from etcd: the head batch, then the queue after its cursor."""
        self._stop_watcher()
        arrived = {entry.position: entry.arrived for entry in self._entries}
        head = self._client.get(self._head)
        if head is not None:
            number = _decode_number(head.value, "head")
            found, _, _ = self._client.range(
                self.block_key(max(number - SEED_BATCHES + 1, 0)), self.block_key(number + 1)
            )
            if not found or found[-1].key != self.block_key(number):
                raise OrderingError(f"the channel's head names batch {number}, which is missing")
            for kv in found:
                batch, cursor = decode_record(kv.value)
                self._advance(batch, cursor)
        else:
            self._next_number, self._cursor, self._head_known = self.first_number, QUEUE_START, False
        if scan:
            kvs, revision = self._scan_queue(self._cursor)
            now = time.monotonic()
            self._seen_revision = max(self._seen_revision, revision)
            self._entries = deque()
            self._rebuild([])
            for kv in kvs:
                self._consider(kv, arrived.get(QueuePosition(kv.create_revision, kv.key), now))
            start = revision + 1
        else:
            self._rebuild()
            start = max(self._cursor.revision, 1)
        self._start_watcher(start)
        self._resync_mode = None

    def _scan_queue(self, after: QueuePosition) -> tuple[list[KeyValue], int]:
        """Every queue entry after `after`, in queue order, read at one revision (returned too)."""
        found: list[KeyValue] = []
        revision, low = 0, after.revision
        while True:
            kvs, header, more = self._client.range(
                self._txq,
                prefix_end(self._txq),
                limit=SCAN_PAGE,
                revision=revision,
                sort_target="CREATE",
                sort_order="ASCEND",
                min_create_revision=low,
            )
            revision = revision or header
            if not more:
                found.extend(kvs)
                break
            last = max(kv.create_revision for kv in kvs)
            complete = [kv for kv in kvs if kv.create_revision < last]
            if not complete:  # one revision fills a page: read that revision whole
                complete, _, _ = self._client.range(
                    self._txq,
                    prefix_end(self._txq),
                    revision=revision,
                    min_create_revision=last,
                    max_create_revision=last,
                )
                last += 1
            found.extend(complete)
            low = last
        found.sort(key=lambda kv: (kv.create_revision, kv.key))
        return [kv for kv in found if QueuePosition(kv.create_revision, kv.key) > after], revision

    def _start_watcher(self, start_revision: int) -> None:
        self._generation += 1
        self._watcher = _QueueWatcher(self._client, self._txq, start_revision, self._inbox, self._generation)
        self._watcher.start()

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.stopping.set()
            self._watcher = None
        self._generation += 1
