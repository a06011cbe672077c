"""Tests of the RFC 6962 Merkle tree: roots against a recursive reference, proofs and their rejections."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.core.encoding import decode, encode
from medledger.core.errors import MerkleProofError
from medledger.core.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    inclusion_is_valid,
    inclusion_proof,
    merkle_root,
    verify_inclusion,
)


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written as the RFC states it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + reference_root(leaves[:split]) + reference_root(leaves[split:])).digest()


def reference_path(leaves: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """RFC 6962 section 2.1.1 PATH(m, D[n]), written as the RFC states it."""
    if len(leaves) <= 1:
        return ()
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return (*reference_path(leaves[:split], index), reference_root(leaves[split:]))
    return (*reference_path(leaves[split:], index - split), reference_root(leaves[:split]))


def path_sides(index: int, tree_size: int) -> tuple[str, ...]:
    """On which side each sibling of the RFC 6962 audit path sits, from the leaf upwards."""
    if tree_size <= 1:
        return ()
    split = 1 << ((tree_size - 1).bit_length() - 1)
    if index < split:
        return (*path_sides(index, split), "right")
    return (*path_sides(index - split, tree_size - split), "left")


def make_leaves(count: int, salt: bytes = b"") -> list[bytes]:
    return [salt + f"leaf-{i}".encode() for i in range(count)]


@pytest.mark.parametrize("size", range(18))
def test_root_equals_recursive_reference(size: int) -> None:
    # Prepare
    leaves = make_leaves(size)

    # Execute
    root = merkle_root(leaves)

    # Assert
    assert root == reference_root(leaves)


def test_empty_root_is_hash_of_empty_string() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_root_of_known_vector() -> None:
    # RFC 6962 test data (certificate-transparency-go merkle tests): the eight-leaf tree.
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    assert merkle_root(leaves).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize("size", range(1, 34))
def test_every_proof_of_every_index_verifies(size: int) -> None:
    # Prepare
    leaves = make_leaves(size)
    root = merkle_root(leaves)

    for index in range(size):
        # Execute
        proof = inclusion_proof(leaves, index)

        # Assert
        verify_inclusion(root, leaves[index], proof)
        assert inclusion_is_valid(root, leaves[index], proof)
        assert proof.tree_size == size
        assert proof.leaf_index == index
        assert proof.path == reference_path(leaves, index)


@pytest.mark.parametrize("index", [-1, 5, 6])
def test_proof_for_out_of_range_index_is_refused(index: int) -> None:
    with pytest.raises(MerkleProofError, match="out of range"):
        inclusion_proof(make_leaves(5), index)


def test_no_proof_exists_in_an_empty_tree() -> None:
    with pytest.raises(MerkleProofError):
        inclusion_proof([], 0)


def test_changed_leaf_fails() -> None:
    # Prepare
    leaves = make_leaves(11)
    proof = inclusion_proof(leaves, 4)

    # Execute / Assert
    with pytest.raises(MerkleProofError, match="not the expected"):
        verify_inclusion(merkle_root(leaves), b"forged", proof)


@pytest.mark.parametrize("size", [2, 3, 7, 8, 13, 16, 33])
def test_changed_index_with_same_path_fails(size: int) -> None:
    # Prepare
    leaves = make_leaves(size)
    root = merkle_root(leaves)

    for index in range(size):
        proof = inclusion_proof(leaves, index)
        for other_index in range(size):
            if other_index == index:
                continue
            moved = MerkleProof(leaf_index=other_index, tree_size=size, path=proof.path)

            # Execute / Assert
            assert not inclusion_is_valid(root, leaves[index], moved)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 12, 17])
def test_changed_tree_size_fails_unless_the_path_has_the_same_shape(size: int) -> None:
    # The root does not commit to the tree size: the proof for leaf 0 of 3 leaves is also a
    # proof for leaf 0 of a 4-leaf tree whose right half hashes to leaf 2's hash. So a changed
    # size fails exactly when it changes the path's shape; callers take the size from a signed header.
    leaves = make_leaves(size)
    root = merkle_root(leaves)

    for index in range(size):
        proof = inclusion_proof(leaves, index)
        for other_size in range(1, 2 * size + 2):
            if other_size == size:
                continue
            resized = MerkleProof(leaf_index=index, tree_size=other_size, path=proof.path)
            same_shape = index < other_size and path_sides(index, other_size) == path_sides(index, size)

            # Execute / Assert
            assert inclusion_is_valid(root, leaves[index], resized) is same_shape


@pytest.mark.parametrize(("size", "other_size"), [(3, 2), (3, 4), (5, 6), (8, 7), (8, 9), (17, 16), (17, 18)])
def test_changed_tree_size_fails_for_the_last_leaf(size: int, other_size: int) -> None:
    # Prepare
    leaves = make_leaves(size)
    proof = inclusion_proof(leaves, size - 1)
    resized = MerkleProof(leaf_index=size - 1, tree_size=other_size, path=proof.path)

    # Execute / Assert
    with pytest.raises(MerkleProofError):
        verify_inclusion(merkle_root(leaves), leaves[-1], resized)


def test_index_not_below_tree_size_is_named() -> None:
    proof = MerkleProof(leaf_index=4, tree_size=4, path=())
    with pytest.raises(MerkleProofError, match="not below tree size"):
        verify_inclusion(merkle_root(make_leaves(4)), b"x", proof)


@pytest.mark.parametrize("size", [2, 5, 9, 32])
def test_truncated_or_extended_path_fails(size: int) -> None:
    # Prepare
    leaves = make_leaves(size)
    root = merkle_root(leaves)

    for index in range(size):
        proof = inclusion_proof(leaves, index)
        truncated = MerkleProof(index, size, proof.path[:-1])
        extended = MerkleProof(index, size, (*proof.path, bytes(32)))
        extended_front = MerkleProof(index, size, (bytes(32), *proof.path))

        # Execute / Assert
        for bad in (truncated, extended, extended_front):
            with pytest.raises(MerkleProofError, match="path has"):
                verify_inclusion(root, leaves[index], bad)


def test_proof_from_another_tree_of_same_size_fails() -> None:
    # Prepare
    leaves = make_leaves(13)
    other_leaves = make_leaves(13, salt=b"other-")
    other_leaves[6] = leaves[6]

    for index in range(13):
        other_proof = inclusion_proof(other_leaves, index)

        # Execute / Assert
        assert not inclusion_is_valid(merkle_root(leaves), leaves[index], other_proof)


def test_changed_path_hash_fails() -> None:
    leaves = make_leaves(9)
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, 3)
    for position in range(len(proof.path)):
        path = list(proof.path)
        path[position] = bytes(b ^ 1 for b in path[position])
        assert not inclusion_is_valid(root, leaves[3], MerkleProof(3, 9, tuple(path)))


def test_root_of_wrong_length_is_refused() -> None:
    leaves = make_leaves(3)
    with pytest.raises(MerkleProofError, match="32-byte"):
        verify_inclusion(merkle_root(leaves)[:31], leaves[0], inclusion_proof(leaves, 0))


@pytest.mark.parametrize(
    ("leaf_index", "tree_size", "path"),
    [(-1, 3, ()), (0, -1, ()), (True, 3, ()), (0, 3, (b"short",)), (0, 3, ["not", "tuple"])],
)
def test_malformed_proof_is_refused(leaf_index: int, tree_size: int, path: tuple[bytes, ...]) -> None:
    with pytest.raises(MerkleProofError):
        MerkleProof(leaf_index=leaf_index, tree_size=tree_size, path=path)


def test_proof_round_trips_through_canonical_encoding() -> None:
    # Prepare
    leaves = make_leaves(21)
    proof = inclusion_proof(leaves, 13)

    # Execute
    decoded = MerkleProof.from_dict(decode(encode(proof.to_dict())))

    # Assert
    assert decoded == proof
    assert proof.to_dict() == {"leaf_index": 13, "tree_size": 21, "path": list(proof.path)}


@pytest.mark.parametrize(
    "data",
    [
        {"leaf_index": 0, "tree_size": 1},
        {"leaf_index": 0, "tree_size": 1, "path": [], "extra": 1},
        {"leaf_index": 0, "tree_size": 1, "path": b""},
        {"leaf_index": "0", "tree_size": 1, "path": []},
        [0, 1, []],
    ],
)
def test_from_dict_refuses_other_shapes(data: object) -> None:
    with pytest.raises(MerkleProofError):
        MerkleProof.from_dict(data)  # type: ignore[arg-type]


def test_large_tree_is_fast() -> None:
    # A recursive, slicing implementation takes far longer than this on 100k leaves.
    leaves = make_leaves(100_000)
    started = time.perf_counter()
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, 76_543)
    elapsed = time.perf_counter() - started
    verify_inclusion(root, leaves[76_543], proof)
    assert elapsed < 5.0


@given(
    leaves=st.lists(st.binary(max_size=40), min_size=1, max_size=80, unique=True),
    data=st.data(),
)
def test_property_proofs_verify_and_bind_the_leaf(leaves: list[bytes], data: st.DataObject) -> None:
    # Prepare
    index = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1))
    forged_leaf = data.draw(st.binary(max_size=40).filter(lambda leaf: leaf != leaves[index]))
    root = merkle_root(leaves)

    # Execute
    proof = inclusion_proof(leaves, index)

    # Assert
    assert root == reference_root(leaves)
    assert inclusion_is_valid(root, leaves[index], proof)
    assert not inclusion_is_valid(root, forged_leaf, proof)
    other_index = data.draw(st.integers(min_value=0, max_value=len(leaves)))
    if other_index != index:
        assert not inclusion_is_valid(root, leaves[index], MerkleProof(other_index, len(leaves), proof.path))
