"""Tests of the canonical encoder: golden vectors, refusal of every non-canonical input, and round trips.

The golden vectors in tests/vectors/encoding.json were generated once with `encode` and then checked by
hand against RFC 8949: every entry that RFC 8949 Appendix A also lists (0 -> 00, 23 -> 17, 24 -> 1818,
255 -> 18ff, 256 -> 190100, 1000000 -> 1a000f4240, 2**64-1 -> 1bffffffffffffffff, -1 -> 20,
-1000 -> 3903e7, "a" -> 6161, "ü" -> 62c3bc, h'01020304' -> 4401020304, [1, [2, 3], [4, 5]] ->
8301820203820405, {} -> a0, {"a": 1, "b": [2, 3]} -> a26161016162820203, ...) has the Appendix A bytes,
repeated in RFC_8949_APPENDIX_A below so that a regenerated file cannot drift silently. The map
vectors were checked against section 4.2.1: {"b": 1, "aa": 2, "a": 3} encodes its keys as a, b, aa
(a361610361620162616102), and {"é": 1, "z": 2, "ab": 3} as z, ab, é, since "é" is two UTF-8 bytes
sorting after "ab". For text keys the length-first order of cbor2's canonical mode and the bytewise
order of encoded keys in RFC 8949 section 4.2.1 agree, because the length is in the key's head.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.core.encoding import MAX_DEPTH, decode, encode
from medledger.core.errors import EncodingError

VECTORS_PATH = Path(__file__).parent.parent / "vectors" / "encoding.json"

RFC_8949_APPENDIX_A: dict[str, str] = {
    "uint-0": "00",
    "uint-1": "01",
    "uint-10": "0a",
    "uint-23-last-immediate": "17",
    "uint-24-first-one-byte": "1818",
    "uint-100": "1864",
    "uint-1000": "1903e8",
    "uint-1000000": "1a000f4240",
    "uint-2^64-1-largest": "1bffffffffffffffff",
    "nint-minus-2^64-smallest": "3bffffffffffffffff",
    "nint-minus-1": "20",
    "nint-minus-10": "29",
    "nint-minus-100": "3863",
    "nint-minus-1000": "3903e7",
    "text-empty": "60",
    "text-a": "6161",
    "text-IETF": "6449455446",
    "text-quote-backslash": "62225c",
    "text-u-umlaut": "62c3bc",
    "text-water-cjk": "63e6b0b4",
    "bytes-empty": "40",
    "bytes-01020304": "4401020304",
    "false": "f4",
    "true": "f5",
    "null": "f6",
    "array-empty": "80",
    "array-1-2-3": "83010203",
    "array-nested": "8301820203820405",
    "array-25-items": "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
    "map-empty": "a0",
    "map-a-1-b-array": "a26161016162820203",
    "array-with-map": "826161a161626163",
    "map-five-keys": "a56161614161626142616361436164614461656145",
}
"""Vectors whose bytes are printed in RFC 8949 Appendix A, copied from the RFC by hand."""

HAND_CHECKED: dict[str, str] = {
    "uint-255-last-one-byte": "18ff",
    "uint-256-first-two-byte": "190100",
    "uint-65536-first-four-byte": "1a00010000",
    "uint-4294967296-first-eight-byte": "1b0000000100000000",
    "uint-2^63-1": "1b7fffffffffffffff",
    "nint-minus-25-first-one-byte": "3818",
    "text-zoe-tokyo": "6b5a6fc3ab20e69db1e4baac",
    "map-length-first-order": "a361610361620162616102",
    "map-utf8-byte-length-order": "a3617a026261620362c3a901",
}
"""Vectors not in Appendix A, worked out by hand from RFC 8949 sections 3.1 and 4.2.1."""


def value_from_json(description: Any) -> Any:
    """Rebuild a vector's value: a JSON object whose only key is "hex" is a byte string."""
    if isinstance(description, dict):
        if set(description) == {"hex"}:
            return bytes.fromhex(description["hex"])
        return {key: value_from_json(item) for key, item in description.items()}
    if isinstance(description, list):
        return [value_from_json(item) for item in description]
    return description


def assert_same_value(actual: Any, expected: Any) -> None:
    """Equality that also tells True from 1 and bytes from str, at every level."""
    assert type(actual) is type(expected), f"{actual!r} is a {type(actual).__name__}, not {type(expected).__name__}"
    if isinstance(expected, dict):
        assert set(actual) == set(expected)
        for key in expected:
            assert_same_value(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for actual_item, expected_item in zip(actual, expected, strict=True):
            assert_same_value(actual_item, expected_item)
    else:
        assert actual == expected


def load_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return vectors


VECTORS = load_vectors()


def nested_lists(depth: int) -> Any:
    """A value whose innermost item sits `depth` containers deep."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# golden vectors ---------------------------------------------------------------------------


def test_vector_file_has_unique_names_and_the_required_shape() -> None:
    # Prepare
    names = [vector["name"] for vector in VECTORS]
    # Execute
    shapes = {frozenset(vector) for vector in VECTORS}
    # Assert
    assert len(names) == len(set(names))
    assert shapes == {frozenset({"name", "value", "cbor_hex"})}


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_encode_matches_vector(vector: dict[str, Any]) -> None:
    # Prepare
    value = value_from_json(vector["value"])
    # Execute
    encoded = encode(value)
    # Assert
    assert encoded.hex() == vector["cbor_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_decode_matches_vector(vector: dict[str, Any]) -> None:
    # Prepare
    expected = value_from_json(vector["value"])
    # Execute
    decoded = decode(bytes.fromhex(vector["cbor_hex"]))
    # Assert
    assert_same_value(decoded, expected)


@pytest.mark.parametrize(
    ("name", "cbor_hex"),
    [*RFC_8949_APPENDIX_A.items(), *HAND_CHECKED.items()],
    ids=[*RFC_8949_APPENDIX_A, *HAND_CHECKED],
)
def test_vector_file_agrees_with_hand_checked_bytes(name: str, cbor_hex: str) -> None:
    # Prepare
    by_name = {vector["name"]: vector for vector in VECTORS}
    # Execute
    vector = by_name[name]
    # Assert
    assert vector["cbor_hex"] == cbor_hex


def test_map_keys_are_written_length_first_then_bytewise() -> None:
    # Prepare
    value = {"b": 1, "aa": 2, "a": 3, "é": 4, "ab": 5}
    # Execute
    written_order = list(cbor2.loads(encode(value)))
    # Assert
    assert written_order == ["a", "b", "aa", "ab", "é"]


# refused values ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, 0.0, float("nan"), [1, 2.0], {"amount": 0.1}], ids=repr)
def test_floats_are_refused_naming_float(value: Any) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(EncodingError, match="float"):
        encode(value)


@pytest.mark.parametrize("cbor_hex", ["f93c00", "fa3fc00000", "fb3ff8000000000000", "8201f93c00"])
def test_encoded_floats_are_refused_by_decode(cbor_hex: str) -> None:
    # Prepare
    data = bytes.fromhex(cbor_hex)
    # Execute / Assert
    with pytest.raises(EncodingError, match="float"):
        decode(data)


@pytest.mark.parametrize("key", [1, b"key", None, True, (1, 2)], ids=repr)
def test_non_text_map_keys_are_refused(key: Any) -> None:
    # Prepare
    value = {"nested": {key: "value"}}
    # Execute / Assert
    with pytest.raises(EncodingError, match="only str keys"):
        encode(value)


@pytest.mark.parametrize("value", [{1, 2}, object(), bytearray(b"x"), complex(1, 2)], ids=lambda v: type(v).__name__)
def test_other_python_types_are_refused_naming_the_type(value: Any) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(EncodingError, match=type(value).__name__):
        encode(value)


def test_a_tuple_encodes_as_the_list_with_the_same_items() -> None:
    # Prepare
    items = (1, "a", b"b")
    # Execute
    encoded = encode(items)
    # Assert
    assert encoded == encode(list(items))
    assert decode(encoded) == list(items)


class _LyingInt(int):
    def __int__(self) -> int:
        return 7

    def __index__(self) -> int:
        return 7


class _LyingBytes(bytes):
    def __bytes__(self) -> bytes:
        return b"other"


class _LyingDict(dict):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return iter(["other"])

    def keys(self) -> Any:
        return ["other"]


def test_a_subclass_is_written_as_its_underlying_value_on_both_paths() -> None:
    # Prepare: subclasses whose own conversions lie; a tuple around them forces the reference path
    lying = [_LyingInt(3), _LyingBytes(b"ab"), _LyingDict(a=1)]
    plain = [3, b"ab", {"a": 1}]
    # Execute
    direct, through_reference = encode(lying), encode(tuple(lying))
    # Assert
    assert direct == through_reference == cbor2.dumps(plain, canonical=True)


SUSPECT_LOOKING = {
    "float-head-in-bytes": b"\xfb" * 9,
    "tag-42-head-in-bytes": b"\xd8\x2a" * 3,
    "container-heads-in-bytes": bytes(range(0x80, 0xBC)),
    "container-heads-in-an-int": 0x9B9B9B9B9B9B9B9B,
}
"""Values whose encoding holds the bytes of a float, a link or many containers without being one."""


@pytest.mark.parametrize("scalar", list(SUSPECT_LOOKING.values()), ids=list(SUSPECT_LOOKING))
def test_bytes_that_only_look_like_a_float_link_or_nesting_are_written_and_read_back(scalar: Any) -> None:
    # Prepare
    value = {"inner": [scalar, {"again": scalar}], "scalar": scalar}
    # Execute
    encoded = encode(value)
    # Assert
    assert encoded == cbor2.dumps(value, canonical=True)
    assert decode(encoded) == value


LINK_LIKE_BYTES = {
    "cidv1-raw-identity": "01550003616263",
    "cidv1-dag-cbor-sha256": "01711220" + "ab" * 32,
    "cidv0-sha256": "1220" + "cd" * 32,
    "random-looking-cidv1": "016952149bb12baace001dd1114a3fcf9f2913a8e3e6ceeb2a39d05b5f20203f",
}
"""Byte strings that parse as IPLD links (CIDs): a DAG-CBOR encoder writes them as tag 42."""


@pytest.mark.parametrize("data_hex", list(LINK_LIKE_BYTES.values()), ids=list(LINK_LIKE_BYTES))
def test_bytes_that_look_like_an_ipld_link_stay_a_plain_byte_string(data_hex: str) -> None:
    # Prepare
    data = bytes.fromhex(data_hex)
    value = {"signature": data, "items": [data, 1]}
    # Execute
    encoded = encode(value)
    # Assert: byte for byte what cbor2's canonical mode writes (no tag), and it decodes back
    assert encoded == cbor2.dumps(value, canonical=True)
    assert encode(data) == cbor2.dumps(data)
    assert decode(encoded) == value


@pytest.mark.parametrize("data_hex", list(LINK_LIKE_BYTES.values()), ids=list(LINK_LIKE_BYTES))
def test_the_link_tag_form_of_such_bytes_is_refused(data_hex: str) -> None:
    # Prepare: tag 42 around the byte string with the 0x00 multibase prefix, as DAG-CBOR writes a link
    data = bytes.fromhex(data_hex)
    tagged = cbor2.dumps(cbor2.CBORTag(42, b"\x00" + data))
    # Execute / Assert
    with pytest.raises(EncodingError):
        decode(tagged)


# refused bytes ----------------------------------------------------------------------------

NON_CANONICAL: dict[str, str] = {
    "unsorted-map-keys": "a2616201616101",
    "map-keys-bytewise-not-length-first": "a262616101616202",
    "int-23-in-one-byte-width": "1817",
    "int-0-in-one-byte-width": "1800",
    "int-255-in-two-byte-width": "1900ff",
    "int-65535-in-four-byte-width": "1a0000ffff",
    "int-1-in-eight-byte-width": "1b0000000000000001",
    "negative-int-minus-1-in-one-byte-width": "3800",
    "text-length-in-longer-width": "780161",
    "bytes-length-in-longer-width": "5801ff",
    "array-length-in-longer-width": "980101",
    "map-length-in-longer-width": "b801616101",
    "indefinite-array": "9fff",
    "indefinite-array-with-item": "9f01ff",
    "indefinite-map": "bfff",
    "indefinite-text": "7f6161ff",
    "indefinite-bytes": "5f4101ff",
    "duplicate-keys": "a2616101616102",
    "trailing-byte": "0000",
    "trailing-array": "8080",
    "truncated-array": "830102",
    "truncated-text": "6261",
    "empty-input": "",
    "datetime-tag": "c11a00000000",
    "uri-tag": "d8206161",
    "unknown-tag": "d9d9f700",
    "undefined": "f7",
    "simple-value": "f820",
    "bignum-with-leading-zero": "c24a00010000000000000000",
    "int-key": "a1016161",
}
"""Valid or almost valid CBOR that `encode` never produces, each with what makes it non-canonical."""


@pytest.mark.parametrize("cbor_hex", list(NON_CANONICAL.values()), ids=list(NON_CANONICAL))
def test_non_canonical_bytes_are_refused(cbor_hex: str) -> None:
    # Prepare
    data = bytes.fromhex(cbor_hex)
    # Execute / Assert
    with pytest.raises(EncodingError):
        decode(data)


def test_decode_names_a_non_canonical_form() -> None:
    # Prepare
    data = bytes.fromhex("1817")
    # Execute / Assert
    with pytest.raises(EncodingError, match="not in canonical form"):
        decode(data)


def test_decode_names_duplicate_keys() -> None:
    # Prepare
    data = bytes.fromhex("a2616101616102")
    # Execute / Assert
    with pytest.raises(EncodingError, match=r"[Dd]uplicate"):
        decode(data)


def test_decode_refuses_what_is_not_bytes() -> None:
    # Prepare
    text: Any = "00"
    # Execute / Assert
    with pytest.raises(EncodingError, match="expected bytes, got str"):
        decode(text)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    # Prepare
    data = encode({"a": [1, b"x"]})
    # bytes-like, though not the annotated `bytes`: decode copies whatever buffer it is given
    as_bytearray: Any = bytearray(data)
    as_memoryview: Any = memoryview(data)
    # Execute
    from_bytearray, from_memoryview = decode(as_bytearray), decode(as_memoryview)
    # Assert
    assert from_bytearray == from_memoryview == {"a": [1, b"x"]}


# nesting depth ----------------------------------------------------------------------------


def test_nesting_up_to_max_depth_round_trips() -> None:
    # Prepare
    value = nested_lists(MAX_DEPTH)
    # Execute
    decoded = decode(encode(value))
    # Assert
    assert decoded == value


def test_encode_refuses_nesting_deeper_than_max_depth() -> None:
    # Prepare
    value = nested_lists(MAX_DEPTH + 1)
    # Execute / Assert
    with pytest.raises(EncodingError, match=f"deeper than {MAX_DEPTH}"):
        encode(value)


def test_encode_refuses_deep_nesting_of_maps() -> None:
    # Prepare
    value: Any = {}
    for _ in range(MAX_DEPTH + 1):
        value = {"k": value}
    # Execute / Assert
    with pytest.raises(EncodingError, match=f"deeper than {MAX_DEPTH}"):
        encode(value)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, MAX_DEPTH + 2, 10_000])
def test_decode_refuses_nesting_deeper_than_max_depth(depth: int) -> None:
    # Prepare: `depth` one-item arrays around a 0, hand-built so the encoder's own limit is not in the way
    data = b"\x81" * depth + b"\x00"
    # Execute / Assert
    with pytest.raises(EncodingError):
        decode(data)


# round trips ------------------------------------------------------------------------------

INT_RANGE = st.integers(min_value=-(2**64), max_value=2**64 - 1)
"""Integers CBOR holds in major types 0 and 1; larger ones would need bignum tags."""

SCALARS = st.none() | st.booleans() | INT_RANGE | st.text(max_size=20) | st.binary(max_size=20)

VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@given(VALUES)
def test_decode_inverts_encode(value: Any) -> None:
    # Prepare
    encoded = encode(value)
    # Execute
    decoded = decode(encoded)
    # Assert
    assert_same_value(decoded, value)
    assert encode(decoded) == encoded


@given(st.dictionaries(st.text(max_size=8), VALUES, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_encoding_of_a_map_does_not_depend_on_insertion_order(value: dict[str, Any], rng: random.Random) -> None:
    # Prepare
    items = list(value.items())
    rng.shuffle(items)
    shuffled, reversed_ = dict(items), dict(reversed(items))
    # Execute
    encodings = {encode(value), encode(shuffled), encode(reversed_)}
    # Assert
    assert len(encodings) == 1


@given(st.dictionaries(st.text(max_size=30), st.integers(min_value=0, max_value=23), max_size=10))
def test_map_keys_follow_length_then_bytes_order(value: dict[str, int]) -> None:
    # Prepare
    expected_order = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
    # Execute
    written_order = list(cbor2.loads(encode(value)))
    # Assert
    assert written_order == expected_order


@given(VALUES)
def test_the_direct_and_the_reference_path_write_the_same_bytes(value: Any) -> None:
    # Prepare: the value as it is (written by libipld) and inside a tuple (the checked reference path)
    wrapped = (value,)
    # Execute
    direct, through_reference = encode(value), encode(wrapped)
    # Assert
    assert direct == cbor2.dumps(value, canonical=True)
    assert through_reference == cbor2.dumps([value], canonical=True)
