"""World state: a versioned key-value map, and the overlays a block and a transaction write into.

Contracts see a `TxState`: reads fall through to the block's pending writes and then to the
committed state; writes stay in the transaction's overlay until it succeeds. The state root
is a hash chain over each block's sorted writes, so equal roots mean equal histories of state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from medledger.core.encoding import decode_unchecked, encode
from medledger.core.hashing import Hash32, sha256, tagged_hash

STATE_ROOT_TAG = "medledger/state-root/v1"
MAX_KEY_LENGTH = 512


class StateReader(Protocol):
    """Read access to committed world state."""

    def get_state(self, key: str) -> bytes | None:
        """The stored value of `key`, or None."""

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Keys starting with `prefix`, in byte order, after `start_after`, at most `limit`."""


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with `prefix` (None: unbounded)."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def check_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or "\x00" in key:
        raise ValueError(f"state key {key!r} must be a non-empty string of at most {MAX_KEY_LENGTH} chars without NUL")


def next_state_root(previous_root: Hash32, block_number: int, writes: Mapping[str, bytes | None]) -> Hash32:
    """Chain the previous root with the digest of this block's writes (a deletion is None)."""
    delta = encode([[key, writes[key]] for key in sorted(writes)])
    return chain_state_root(previous_root, block_number, sha256(delta))


def chain_state_root(previous_root: Hash32, block_number: int, delta_digest: Hash32) -> Hash32:
    """The state root after a block whose sorted writes, encoded as one list, hash to `delta_digest`."""
    return tagged_hash(STATE_ROOT_TAG, previous_root + block_number.to_bytes(8, "big") + delta_digest)


def overlay_scan(
    base: StateReader,
    pending: Mapping[str, bytes | None],
    prefix: str,
    start_after: str | None,
    limit: int | None,
) -> list[tuple[str, bytes]]:
    """Scan `base` as if the `pending` writes (None: deleted) had been applied to it."""
    mine = {k: v for k, v in pending.items() if k.startswith(prefix) and (start_after is None or k > start_after)}
    if not mine:  # the common case (nothing pending under the prefix): the base's answer as it is
        return base.scan_state(prefix, start_after, limit)
    base_limit = None if limit is None else limit + len(mine)
    merged: dict[str, bytes | None] = dict(base.scan_state(prefix, start_after, base_limit))
    merged.update(mine)
    items = sorted((k, v) for k, v in merged.items() if v is not None)
    return items if limit is None else items[:limit]


class BlockState:
    """The pending writes of a block being executed, over the committed state."""

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.writes: dict[str, tuple[bytes | None, int]] = {}
        """key -> (value or None for a deletion, index of the transaction that wrote it)."""

    def get_state(self, key: str) -> bytes | None:
        if key in self.writes:
            return self.writes[key][0]
        return self.base.get_state(key)

    def scan_state(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        pending = {key: value for key, (value, _) in self.writes.items()}
        return overlay_scan(self.base, pending, prefix, start_after, limit)

    def apply(self, tx_index: int, writes: Mapping[str, bytes | None]) -> None:
        for key, value in writes.items():
            self.writes[key] = (value, tx_index)

    def plain_writes(self) -> dict[str, bytes | None]:
        return {key: value for key, (value, _) in self.writes.items()}


class TxState:
    """What a contract function reads and writes: buffered, discarded if the transaction fails."""

    def __init__(self, block_state: StateReader) -> None:
        self._base = block_state
        self.writes: dict[str, bytes | None] = {}
        self.reads = 0

    # raw bytes ------------------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes | None:
        self.reads += 1
        if key in self.writes:
            return self.writes[key]
        return self._base.get_state(key)

    def put_bytes(self, key: str, value: bytes) -> None:
        check_key(key)
        self.writes[key] = value

    # canonical values -----------------------------------------------------------------
    def get(self, key: str) -> Any | None:
        """The decoded value at `key`, or None."""
        raw = self.get_bytes(key)
        return None if raw is None else decode_unchecked(raw)

    def exists(self, key: str) -> bool:
        return self.get_bytes(key) is not None

    def put(self, key: str, value: Any) -> None:
        """Store `value` canonically encoded."""
        self.put_bytes(key, encode(value))

    def delete(self, key: str) -> None:
        check_key(key)
        self.writes[key] = None

    def scan(self, prefix: str, start_after: str | None = None, limit: int | None = None) -> Iterator[tuple[str, Any]]:
        """Decoded (key, value) pairs under `prefix`, this transaction's own writes included."""
        self.reads += 1
        for key, raw in overlay_scan(self._base, self.writes, prefix, start_after, limit):
            yield key, decode_unchecked(raw)
