"""The one canonical encoding of medledger: deterministic CBOR (RFC 8949, section 4.2).

Everything that is hashed or signed is encoded here and nowhere else. Allowed values are
None, bool, int, str, bytes, list/tuple and dict with str keys. Floats are refused (no
rounding may differ between peers), and so are tags, indefinite lengths and duplicate
keys. Map keys are ordered length-first, then bytewise (the "canonical" order of cbor2).
`decode` accepts only bytes that `encode` would produce, so one value has exactly one
byte string and its hash is unique.

How it stays cheap. For the allowed types our canonical form is byte for byte DAG-CBOR (the
IPLD codec: shortest heads, definite lengths, text keys ordered length-first then bytewise),
so a value made only of the exact allowed types is written by libipld's compiled DAG-CBOR
encoder after one pass that checks its types, integer range and depth; anything else (a
tuple, an enum member, a refused type, and a byte string libipld would mistake for an IPLD
link, see `_is_link_like`) takes the reference path: a pass that checks it and
puts each map's keys in canonical order, then cbor2. `decode` reads with libipld, checks the
value's types, and re-encodes it: only when the bytes come out identical is the input
canonical (libipld itself accepts, say, an integer in a wider head than needed). Whatever the
fast path does not accept is decoded again by cbor2, which names the fault. The tests hold
both paths to cbor2's canonical mode.
"""

from __future__ import annotations

from typing import Any

import cbor2
import libipld

from medledger.core.errors import EncodingError

CanonicalValue = None | bool | int | str | bytes | list[Any] | tuple[Any, ...] | dict[str, Any]

#: CBOR major types 0 and 1 hold integers in this range; beyond it cbor2 would use bignum tags.
MAX_INT = 2**64 - 1
MIN_INT = -(2**64)

#: Deepest nesting a decoded value may have; deeper input is refused, not recursed into.
MAX_DEPTH = 32

_KEY_ORDERS_KEPT = 8192
"""How many distinct key sequences keep their canonical order remembered (they repeat: a
contract writes the same fields again and again)."""

_key_orders: dict[tuple[Any, ...], tuple[str, ...]] = {}
"""Map keys in insertion order -> the same keys in canonical order."""

_PLAIN = frozenset({str, bytes, bool, type(None)})
"""Types written as they are, whatever their value."""
_FAST_PLAIN = frozenset({str, bool, type(None)})
"""Types libipld writes as they are, whatever their value (not bytes: see `_is_link_like`)."""


def _is_link_like(value: bytes) -> bool:
    """True for a byte string libipld's encoder would write as a CID link (CBOR tag 42) instead of a
    byte string: one that parses as a binary CIDv1 (first byte 1) or a CIDv0 (34 bytes, a sha2-256
    multihash). Such values are encoded by cbor2; this test is wider than libipld's, never narrower."""
    return bool(value) and (value[0] == 0x01 or (len(value) == 34 and value[0] == 0x12 and value[1] == 0x20))


def _is_exact(value: Any, depth: int) -> bool:
    """True when `value` is made only of the exact allowed types (no subclass, no tuple), within
    the integer range and the depth limit: what the compiled encoder may write as it is.

    Scalars inside a container are checked in place (this runs on every value hashed or stored,
    and a call per integer would cost more than the whole check of a string)."""
    kind = type(value)
    if kind in _FAST_PLAIN:
        return True
    if kind is bytes:
        return not _is_link_like(value)
    if kind is int:
        return bool(MIN_INT <= value <= MAX_INT)
    if kind is dict:
        if depth >= MAX_DEPTH and value:
            return False
        for key in value:
            if type(key) is not str:
                return False
        items: Any = value.values()
    elif kind is list:
        if depth >= MAX_DEPTH and value:
            return False
        items = value
    else:
        return False
    for item in items:
        item_kind = type(item)
        if item_kind in _FAST_PLAIN:
            continue
        if item_kind is int:
            if not MIN_INT <= item <= MAX_INT:
                return False
        elif item_kind is bytes:
            if _is_link_like(item):
                return False
        elif not _is_exact(item, depth + 1):
            return False
    return True


def _canonical_key(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded


def _key_order(keys: tuple[Any, ...]) -> tuple[str, ...]:
    """The canonical order of a map's keys (refusing any key that is not text)."""
    order = _key_orders.get(keys)
    if order is not None:
        return order
    for key in keys:
        if not isinstance(key, str):
            raise EncodingError(f"map key {key!r} is a {type(key).__name__}; only str keys are allowed")
    try:
        order = tuple(str.__str__(key) for key in sorted(keys, key=_canonical_key))
    except UnicodeEncodeError as exc:
        raise EncodingError(f"map key is not valid Unicode text: {exc}") from exc
    if len(_key_orders) >= _KEY_ORDERS_KEPT:
        _key_orders.clear()
    _key_orders[keys] = order
    return order


def _refuse(value: Any) -> EncodingError:
    if isinstance(value, float):
        return EncodingError(f"float {value!r} cannot be encoded: use integers (e.g. minor units)")
    return EncodingError(f"a {type(value).__name__} cannot be encoded canonically")


def _prepare(value: Any, depth: int) -> Any:
    """`value` checked, with every map's keys in canonical order and subclasses of the allowed
    types (an enum member, say) replaced by their plain value."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is int:
        if MIN_INT <= value <= MAX_INT:
            return value
        raise EncodingError(f"integer {value} is outside the 64-bit CBOR range (bignum tags are not allowed)")
    if kind is dict:
        if depth >= MAX_DEPTH and value:
            raise EncodingError(f"value nests deeper than {MAX_DEPTH} levels")
        prepared = {}
        for key in _key_order(tuple(value)):
            item = value[key]
            prepared[key] = item if type(item) in _PLAIN else _prepare(item, depth + 1)
        return prepared
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH and value:
            raise EncodingError(f"value nests deeper than {MAX_DEPTH} levels")
        return [item if type(item) in _PLAIN else _prepare(item, depth + 1) for item in value]
    return _prepare_subclass(value, depth)


def _prepare_subclass(value: Any, depth: int) -> Any:
    if isinstance(value, int):
        return _prepare(int(value), depth)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, (dict, list, tuple)):
        return _prepare(dict(value) if isinstance(value, dict) else list(value), depth)
    raise _refuse(value)


def encode(value: Any) -> bytes:
    """Encode `value` canonically; raise EncodingError for anything outside the allowed types."""
    if _is_exact(value, 0):
        try:
            return libipld.encode_dag_cbor(value)
        except (ValueError, TypeError, OverflowError, RecursionError):
            pass  # e.g. a lone surrogate in a string: the reference path names the fault
    prepared = _prepare(value, 0)
    try:
        return cbor2.dumps(prepared)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot encode value: {exc}") from exc


def _cbor2_loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data, allow_duplicate_keys=False, allow_indefinite=False, max_depth=MAX_DEPTH + 1)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise EncodingError(f"not valid CBOR: {exc}") from exc


def decode_unchecked(data: bytes) -> Any:
    """Decode bytes already known to be canonical (for example read back from our own store)."""
    try:
        return libipld.decode_dag_cbor(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return _cbor2_loads(data)


_NOT_CANONICAL = "bytes are valid CBOR but not in canonical form (key order, integer width or trailing data)"


def _check_decoded(value: Any, depth: int) -> None:
    """Refuse a decoded value `encode` could not have produced: a disallowed type, or a map whose
    keys did not come in canonical order."""
    kind = type(value)
    if kind in _PLAIN:
        return
    if kind is int:
        if not MIN_INT <= value <= MAX_INT:
            raise EncodingError(f"integer {value} is outside the 64-bit CBOR range (bignum tags are not allowed)")
        return
    if kind is dict:
        if depth >= MAX_DEPTH and value:
            raise EncodingError(f"value nests deeper than {MAX_DEPTH} levels")
        keys = tuple(value)
        if _key_order(keys) != keys:
            raise EncodingError(_NOT_CANONICAL)
        for item in value.values():
            if type(item) not in _PLAIN:
                _check_decoded(item, depth + 1)
        return
    if kind is list:
        if depth >= MAX_DEPTH and value:
            raise EncodingError(f"value nests deeper than {MAX_DEPTH} levels")
        for item in value:
            if type(item) not in _PLAIN:
                _check_decoded(item, depth + 1)
        return
    raise _refuse(value)


def _decode_reference(data: bytes) -> Any:
    """The reference decoder: cbor2, the value's types and key order checked, then re-encoded."""
    value = _cbor2_loads(data)
    _check_decoded(value, 0)
    try:
        canonical = cbor2.dumps(value)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise EncodingError(f"cannot re-encode decoded value: {exc}") from exc
    if canonical != data:
        raise EncodingError(_NOT_CANONICAL)
    return value


def decode(data: bytes) -> Any:
    """Decode canonical bytes; raise EncodingError naming the fault for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        value = libipld.decode_dag_cbor(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return _decode_reference(data)
    if _is_exact(value, 0):
        try:
            if libipld.encode_dag_cbor(value) == data:
                return value
        except (ValueError, TypeError, OverflowError, RecursionError):
            pass
    return _decode_reference(data)
