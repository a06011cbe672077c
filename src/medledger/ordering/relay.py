"""Where peers in separate processes exchange block attestations when no etcd cluster runs: a
durable store on the solo orderer, holding each height's attestations as opaque signed bytes.

The relay never decodes or trusts what it holds: every peer checks each attestation's signature
against the attesting organisation's peer certificate itself. Entries are keyed by their SHA-256,
so posting the same attestation again is harmless and no poster can overwrite another's entry.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from medledger.ordering.orderer import OrderingError

MAX_ATTESTATION_BYTES = 16 * 1024
"""The largest entry taken (a signed attestation is a few hundred bytes)."""
MAX_PER_HEIGHT = 256
"""The most distinct entries one height holds (one per organisation is the norm)."""
MAX_RANGE = 256
"""The most heights one range read covers."""


class AttestationRefused(OrderingError):
    """The relay did not take an entry: empty, too large, or its height is full."""


class AttestationRelay:
    """Attestations per block height in an SQLite file; safe to share between threads."""

    def __init__(
        self, path: Path, *, max_bytes: int = MAX_ATTESTATION_BYTES, max_per_height: int = MAX_PER_HEIGHT
    ) -> None:
        self.max_bytes = max_bytes
        self.max_per_height = max_per_height
        self._db = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # a lost entry costs only a re-read: peers attest every block again on their next commit
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS attestations (number INTEGER NOT NULL, digest BLOB NOT NULL, "
            "data BLOB NOT NULL, PRIMARY KEY (number, digest))"
        )
        self._lock = threading.Lock()
        self._closed = False

    def post(self, number: int, data: bytes) -> bool:
        """Keep `data` as an attestation of block `number`; False if it was there already."""
        if number < 0:
            raise AttestationRefused(f"block number {number} is negative")
        if not data:
            raise AttestationRefused("an empty attestation attests nothing")
        if len(data) > self.max_bytes:
            raise AttestationRefused(f"an attestation of {len(data)} bytes exceeds the limit of {self.max_bytes}")
        digest = hashlib.sha256(data).digest()
        with self._lock:
            self._check_open()
            if self._db.execute("SELECT 1 FROM attestations WHERE number=? AND digest=?", (number, digest)).fetchone():
                return False
            (count,) = self._db.execute("SELECT COUNT(*) FROM attestations WHERE number=?", (number,)).fetchone()
            if count >= self.max_per_height:
                raise AttestationRefused(f"block {number} already holds {count} attestations, the most kept")
            self._db.execute("INSERT INTO attestations VALUES (?, ?, ?)", (number, digest, data))
        return True

    def fetch(self, number: int) -> list[bytes]:
        """Every entry posted for block `number`, in digest order."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT data FROM attestations WHERE number=? ORDER BY digest", (number,)
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def fetch_range(self, first: int, end: int) -> list[bytes]:
        """Every entry posted for blocks `first` to `end - 1`, by height, then digest."""
        if end - first > MAX_RANGE:
            raise AttestationRefused(f"a read covers at most {MAX_RANGE} heights, not {end - first}")
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT data FROM attestations WHERE number>=? AND number<? ORDER BY number, digest", (first, end)
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise OrderingError("the attestation relay is closed")
