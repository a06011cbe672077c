"""SHA-256 hashing, plain and domain-separated.

A tagged hash binds the purpose of a digest into it, so a transaction id can never be
mistaken for a block hash even if their payload bytes were equal.
"""

from __future__ import annotations

import hashlib

Hash32 = bytes
"""A 32-byte SHA-256 digest."""

HASH_SIZE = 32


def sha256(data: bytes) -> Hash32:
    """Plain SHA-256 of `data`."""
    return hashlib.sha256(data).digest()


_tag_prefixes: dict[str, bytes] = {}
"""Tag -> its length-prefixed bytes (a handful of constant tags, hashed on every transaction)."""


def _tag_prefix(tag: str) -> bytes:
    prefix = _tag_prefixes.get(tag)
    if prefix is None:
        tag_bytes = tag.encode("ascii")
        prefix = len(tag_bytes).to_bytes(1, "big") + tag_bytes
        if len(_tag_prefixes) < 1024:
            _tag_prefixes[tag] = prefix
    return prefix


def tagged_hash(tag: str, data: bytes) -> Hash32:
    """SHA-256 over a length-prefixed domain tag followed by `data`."""
    return hashlib.sha256(_tag_prefix(tag) + data).digest()


ZERO_HASH: Hash32 = bytes(HASH_SIZE)
"""The 'no predecessor' hash: previous hash of the genesis block, state root before it."""
