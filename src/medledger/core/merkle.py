"""RFC 6962 Merkle trees: the root of a list of leaves and proofs that one leaf is in it.

Leaves and inner nodes are hashed with distinct one-byte prefixes, so a leaf can never pass
for a node; proofs are checked against the root alone with RFC 9162 section 2.1.3.2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medledger.core.errors import MerkleProofError
from medledger.core.hashing import HASH_SIZE, Hash32, sha256

Root = Hash32
"""The hash at the top of a Merkle tree."""

LEAF_PREFIX = b"\x00"
"""Prefix of every leaf before hashing (RFC 6962 section 2.1)."""

NODE_PREFIX = b"\x01"
"""Prefix of every pair of child hashes before hashing (RFC 6962 section 2.1)."""

EMPTY_ROOT: Root = sha256(b"")
"""The root of a tree with no leaves: the hash of the empty string."""


def leaf_hash(leaf: bytes) -> Hash32:
    """The hash of one raw leaf as it sits at the bottom of the tree."""
    return sha256(LEAF_PREFIX + leaf)


def node_hash(left: Hash32, right: Hash32) -> Hash32:
    """The hash of an inner node over its two children."""
    return sha256(NODE_PREFIX + left + right)


def _next_level(level: list[Hash32]) -> list[Hash32]:
    # An unpaired last node is promoted unchanged: building bottom-up this way gives exactly
    # the tree of RFC 6962's largest-power-of-two split, without recursion or slice copies.
    parents = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2 == 1:
        parents.append(level[-1])
    return parents


def merkle_root(leaves: Sequence[bytes]) -> Root:
    """The RFC 6962 root of `leaves` (raw leaf bytes, hashed here); EMPTY_ROOT for no leaves."""
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def inclusion_path_length(leaf_index: int, tree_size: int) -> int:
    """How many sibling hashes a proof for `leaf_index` in a tree of `tree_size` leaves holds."""
    length = 0
    index, size = leaf_index, tree_size
    while size > 1:
        if index ^ 1 < size:
            length += 1
        index >>= 1
        size = (size + 1) >> 1
    return length


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """The sibling hashes that lead from one leaf up to the root of its tree."""

    leaf_index: int
    """Position of the proven leaf, counted from 0."""

    tree_size: int
    """Number of leaves in the tree the proof was taken from."""

    path: tuple[bytes, ...]
    """Sibling hashes from the leaf's level upwards (RFC 6962 audit path order)."""

    def __post_init__(self) -> None:
        for label, value in (("leaf_index", self.leaf_index), ("tree_size", self.tree_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MerkleProofError(f"{label} must be a non-negative integer, got {value!r}")
        if not isinstance(self.path, tuple):
            raise MerkleProofError(f"path must be a tuple of hashes, got {type(self.path).__name__}")
        for position, sibling in enumerate(self.path):
            if not isinstance(sibling, bytes) or len(sibling) != HASH_SIZE:
                raise MerkleProofError(f"path[{position}] is not a {HASH_SIZE}-byte hash")

    def to_dict(self) -> dict[str, Any]:
        """The proof as a plain dict, ready for the canonical encoder."""
        return {"leaf_index": self.leaf_index, "tree_size": self.tree_size, "path": list(self.path)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MerkleProof:
        """Rebuild a proof from `to_dict` output; raise MerkleProofError for any other shape."""
        if not isinstance(data, Mapping):
            raise MerkleProofError(f"a Merkle proof is a map, got {type(data).__name__}")
        expected_keys = {"leaf_index", "tree_size", "path"}
        if set(data) != expected_keys:
            raise MerkleProofError(f"a Merkle proof has exactly the keys {sorted(expected_keys)}, got {sorted(data)}")
        path = data["path"]
        if not isinstance(path, (list, tuple)):
            raise MerkleProofError(f"path must be a list of hashes, got {type(path).__name__}")
        return cls(leaf_index=data["leaf_index"], tree_size=data["tree_size"], path=tuple(path))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The proof that `leaves[index]` is in the tree of `leaves`."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(leaves):
        raise MerkleProofError(f"leaf index {index!r} is out of range for a tree of {len(leaves)} leaves")
    path: list[Hash32] = []
    level = [leaf_hash(leaf) for leaf in leaves]
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        # A node without a sibling is promoted, so it contributes nothing to the path.
        if sibling < len(level):
            path.append(level[sibling])
        position >>= 1
        level = _next_level(level)
    return MerkleProof(leaf_index=index, tree_size=len(leaves), path=tuple(path))


def verify_inclusion(root: Root, leaf: bytes, proof: MerkleProof) -> None:
    """Raise MerkleProofError unless `proof` leads from raw `leaf` to `root`.

    The left/right choices follow from the index and the tree size, so a proof does not verify
    with another index. A root does not commit to its tree size, though: a size whose audit
    path has the same shape (leaf 0 of 3 leaves and of 4) verifies too, so take `tree_size`
    from the same signed header as `root`.
    """
    if len(root) != HASH_SIZE:
        raise MerkleProofError(f"root must be a {HASH_SIZE}-byte hash, got {len(root)} bytes")
    if proof.leaf_index >= proof.tree_size:
        raise MerkleProofError(f"leaf index {proof.leaf_index} is not below tree size {proof.tree_size}")
    expected_length = inclusion_path_length(proof.leaf_index, proof.tree_size)
    if len(proof.path) != expected_length:
        raise MerkleProofError(
            f"path has {len(proof.path)} hashes; a proof for leaf {proof.leaf_index} "
            f"of a {proof.tree_size}-leaf tree has {expected_length}"
        )
    # RFC 9162 section 2.1.3.2. Walking the index and the last index together tells at every
    # level whether the sibling is on the left, on the right, or absent (a promoted node).
    index = proof.leaf_index
    last_index = proof.tree_size - 1
    computed = leaf_hash(leaf)
    for sibling in proof.path:
        if last_index == 0:
            raise MerkleProofError("path is longer than the tree is tall")
        if index & 1 or index == last_index:
            computed = node_hash(sibling, computed)
            if not index & 1:
                while index and not index & 1:
                    index >>= 1
                    last_index >>= 1
        else:
            computed = node_hash(computed, sibling)
        index >>= 1
        last_index >>= 1
    if last_index != 0:
        raise MerkleProofError("path is shorter than the tree is tall")
    if computed != root:
        raise MerkleProofError(
            f"leaf {proof.leaf_index} of {proof.tree_size} leads to root {computed.hex()}, "
            f"not the expected {root.hex()}"
        )


def inclusion_is_valid(root: Root, leaf: bytes, proof: MerkleProof) -> bool:
    """True when `proof` leads from raw `leaf` to `root`."""
    try:
        verify_inclusion(root, leaf, proof)
    except MerkleProofError:
        return False
    return True
