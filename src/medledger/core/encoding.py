"""The one canonical encoding of medledger: deterministic CBOR (RFC 8949, section 4.2).

Everything that is hashed or signed is encoded here and nowhere else. Allowed values are
None, bool, int, str, bytes, list/tuple and dict with str keys. Floats are refused (no
rounding may differ between peers), and so are tags, indefinite lengths and duplicate
keys. Map keys are ordered length-first, then bytewise (the "canonical" order of cbor2).
`decode` accepts only bytes that `encode` would produce, so one value has exactly one
byte string and its hash is unique.
"""

from __future__ import annotations

from typing import Any

import cbor2

from medledger.core.errors import EncodingError

CanonicalValue = None | bool | int | str | bytes | list[Any] | tuple[Any, ...] | dict[str, Any]

#: CBOR major types 0 and 1 hold integers in this range; beyond it cbor2 would use bignum tags.
MAX_INT = 2**64 - 1
MIN_INT = -(2**64)

#: Deepest nesting a decoded value may have; deeper input is refused, not recursed into.
MAX_DEPTH = 32


def _check_value(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodingError(f"value nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise EncodingError(f"integer {value} is outside the 64-bit CBOR range (bignum tags are not allowed)")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodingError(f"map key {key!r} is a {type(key).__name__}; only str keys are allowed")
            _check_value(item, depth + 1)
        return
    if isinstance(value, float):
        raise EncodingError(f"float {value!r} cannot be encoded: use integers (e.g. minor units)")
    raise EncodingError(f"a {type(value).__name__} cannot be encoded canonically")


def encode(value: Any) -> bytes:
    """Encode `value` canonically; raise EncodingError for anything outside the allowed types."""
    _check_value(value, 0)
    try:
        return cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode value: {exc}") from exc


def decode_unchecked(data: bytes) -> Any:
    """Decode bytes already known to be canonical (for example read back from our own store)."""
    try:
        return cbor2.loads(data, allow_duplicate_keys=False, allow_indefinite=False, max_depth=MAX_DEPTH + 1)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise EncodingError(f"not valid CBOR: {exc}") from exc


def decode(data: bytes) -> Any:
    """Decode canonical bytes; raise EncodingError naming the fault for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    value = decode_unchecked(data)
    _check_value(value, 0)
    if cbor2.dumps(value, canonical=True) != data:
        raise EncodingError(
            "bytes are valid CBOR but not in canonical form (key order, integer width or trailing data)"
        )
    return value
