"""The solo orderer: one in-process sequencer, the embedded default.

Batches are written to an SQLite log (synchronously) before any peer can read them, so a
restarted process finds every batch it ever handed out, and a peer that fell behind can
catch up from the log. A transaction is taken into memory first: one the process had taken
but not yet cut (at most `time_to_cut_ms` worth) is gone if it crashes, and is submitted again.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medledger.core.encoding import decode_unchecked, encode
from medledger.ordering.cutter import BlockCutter, CutterConfig
from medledger.ordering.orderer import OrderedBatch, Orderer, OrderingError

Clock = Callable[[], int]
"""Returns the current time in ms since the epoch."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _CutRequest:
    done: threading.Event = field(default_factory=threading.Event)
    """Set once whatever was pending is in the log."""


class SoloOrderer(Orderer):
    """A single sequencer thread: queue in, cutter, durable log, condition-variable delivery."""

    def __init__(
        self,
        log_path: Path,
        config: CutterConfig | None = None,
        *,
        clock: Clock = wall_clock_ms,
        first_number: int = 1,
        queue_limit: int = 200_000,
        orderer_id: str = "solo",
    ) -> None:
        self.config = config or CutterConfig()
        self.orderer_id = orderer_id
        self._clock = clock
        self._cutter = BlockCutter(self.config)
        self._queue: queue.Queue[bytes | _CutRequest | None] = queue.Queue(maxsize=queue_limit)
        self._db = sqlite3.connect(Path(log_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batches (number INTEGER PRIMARY KEY, timestamp_ms INTEGER NOT NULL, "
            "orderer TEXT NOT NULL, transactions BLOB NOT NULL)"
        )
        self._db_lock = threading.Lock()
        self._log_closed = False
        row = self._db.execute("SELECT MAX(number), MAX(timestamp_ms) FROM batches").fetchone()
        self._next = first_number if row[0] is None else int(row[0]) + 1
        self._last_ts = 0 if row[1] is None else int(row[1])
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="solo-orderer", daemon=True)
        self._thread.start()

    def submit(self, tx: bytes) -> None:
        if self._closed:
            raise OrderingError("the orderer is closed")
        try:
            self._queue.put(tx, timeout=5)
        except queue.Full as exc:
            raise OrderingError("the orderer's queue is full; retry later") from exc

    def cut_now(self, timeout: float = 10.0) -> int:
        """Cut what is pending into a batch now instead of at the time to cut; the height once it is logged."""
        if self._closed:
            return self.height()
        request = _CutRequest()
        try:
            self._queue.put(request, timeout=5)
        except queue.Full as exc:
            raise OrderingError("the orderer's queue is full; retry later") from exc
        deadline = time.monotonic() + timeout
        while not request.done.wait(0.05) and self._thread.is_alive() and time.monotonic() < deadline:
            pass
        return self.height()

    def height(self) -> int:
        with self._cond:
            return self._next

    def read(self, number: int, timeout: float | None = None) -> OrderedBatch | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while number >= self._next and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
        with self._db_lock:
            if self._log_closed:
                return None
            row = self._db.execute(
                "SELECT timestamp_ms, orderer, transactions FROM batches WHERE number=?", (number,)
            ).fetchone()
        if row is None:
            return None
        return OrderedBatch(number, row[0], tuple(decode_unchecked(row[2])), row[1])

    def drain(self) -> None:
        """Stop taking transactions and cut whatever is pending; batches stay readable."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        self.drain()
        with self._db_lock:
            if not self._log_closed:
                self._log_closed = True
                self._db.close()

    # the sequencer thread ----------------------------------------------------------------
    def _run(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = b""
            if item is None:
                self._publish(self._cutter.cut())
                return
            if isinstance(item, _CutRequest):
                self._publish(self._cutter.cut())
                deadline = None
                item.done.set()
                continue
            if item:
                was_empty = self._cutter.pending_count == 0
                batches = self._cutter.append(item)
                for batch in batches:
                    self._publish(batch)
                if self._cutter.pending_count == 0:
                    deadline = None
                elif was_empty or batches:
                    deadline = time.monotonic() + self.config.time_to_cut_ms / 1000
            if deadline is not None and time.monotonic() >= deadline:
                self._publish(self._cutter.cut())
                deadline = None

    def _publish(self, transactions: list[bytes]) -> None:
        if not transactions:
            return
        timestamp = max(self._clock(), self._last_ts)
        number = self._next
        with self._db_lock:
            self._db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?)", (number, timestamp, self.orderer_id, encode(transactions))
            )
        self._last_ts = timestamp
        with self._cond:
            self._next = number + 1
            self._cond.notify_all()
