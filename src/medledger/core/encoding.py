"""The one canonical encoding of medledger: deterministic CBOR (RFC 8949, section 4.2).

Everything that is hashed or signed is encoded here and nowhere else. Allowed values are
None, bool, int, str, bytes, list/tuple and dict with str keys. Floats are refused (no
rounding may differ between peers), and so are tags, indefinite lengths and duplicate
keys. Map keys are ordered length-first, then bytewise (the "canonical" order of cbor2).
`decode` accepts only bytes that `encode` would produce, so one value has exactly one
byte string and its hash is unique.

How it stays cheap. For the allowed types our canonical form is byte for byte DAG-CBOR (the
IPLD codec: shortest heads, definite lengths, text keys ordered length-first then bytewise),
so libipld's compiled DAG-CBOR encoder writes it. What libipld writes beyond our types shows
in its bytes: a float as a 0xfb head (DAG-CBOR writes every float in 64 bits), an IPLD link
as tag 42 (0xd8 0x2a), and nesting as container heads (0x80-0xbb). `encode` therefore first
lets libipld write the value and keeps the bytes when none of that can be in them
(`_plainly_exact`); otherwise - a byte string or an integer may hold those bytes too, or
libipld refused the value - it checks the value's types, integer range and depth in one pass
and, for anything but the exact allowed types (a tuple, a refused type, a byte string libipld
would mistake for a link, see `_is_link_like`), takes the reference path: a pass that checks
it and puts each map's keys in canonical order, then cbor2. A subclass of an allowed type (an
enum member, say) is written as its underlying value on both paths. `decode` reads with
libipld and re-encodes: only when the bytes come out identical, and the value holds nothing
refused, is the input canonical (libipld itself accepts, say, an integer in a wider head than
needed). Whatever the fast path does not accept is decoded again by cbor2, which names the
fault. The tests hold both paths to cbor2's canonical mode.
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


_SUSPECT_BYTES = bytes(range(0x80, 0xBC)) + b"\xd8\xfb"
"""Container heads (arrays 0x80-0x9b, maps 0xa0-0xbb), the head of tag 42 and that of a float."""
_UNSUSPECT_BYTES = bytes(byte for byte in range(256) if byte not in _SUSPECT_BYTES)


def _plainly_exact(encoded: bytes) -> bool:
    """True when libipld's bytes for a value cannot hold a float, an IPLD link or nesting deeper
    than MAX_DEPTH: they contain no 0xfb, no tag 42, and at most MAX_DEPTH bytes that could be a
    container head (a nesting too deep needs MAX_DEPTH + 1 containers). False says nothing about
    the value (hashes and integers hold such bytes too): it then gets the full check."""
    suspects = encoded.translate(None, _UNSUSPECT_BYTES)
    if len(suspects) > MAX_DEPTH or b"\xfb" in suspects:
        return False
    return b"\xd8" not in suspects or b"\xd8\x2a" not in encoded


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
    """A subclass instance as its underlying value, whatever its own conversions say (libipld
    reads the underlying value too)."""
    if isinstance(value, int):
        return _prepare(int.__int__(value), depth)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes(memoryview(value))
    if isinstance(value, dict):
        return _prepare(dict(dict.items(value)), depth)
    if isinstance(value, (list, tuple)):
        return _prepare(list.copy(value) if isinstance(value, list) else list(tuple.__iter__(value)), depth)
    raise _refuse(value)


def encode(value: Any) -> bytes:
    """Encode `value` canonically; raise EncodingError for anything outside the allowed types."""
    try:
        encoded = libipld.encode_dag_cbor(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        encoded = None  # a tuple, a refused type, a lone surrogate...: the reference path takes or names it
    if encoded is not None and (_plainly_exact(encoded) or _is_exact(value, 0)):
        return encoded
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
    try:
        canonical = libipld.encode_dag_cbor(value) == data
    except (ValueError, TypeError, OverflowError, RecursionError):
        canonical = False
    if canonical and (_plainly_exact(data) or _is_exact(value, 0)):
        return value
    return _decode_reference(data)
