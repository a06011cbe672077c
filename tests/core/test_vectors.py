"""Golden vectors for hashing and Merkle trees (tests/vectors/hashing.json, merkle.json) checked against core.

The vectors were generated once from the current implementation and then checked against outside
references: SHA-256 of "" and "abc" are the FIPS 180-2 values, tagged hashes are recomputed here from
hashlib by their definition, and the `rfc6962-ct-*` roots and proofs are the Certificate Transparency
reference vectors (the `merkle_tree_test` suite of RFC 6962's reference implementation), repeated
below so that a regenerated file cannot drift silently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from medledger.core.errors import MerkleProofError
from medledger.core.hashing import sha256, tagged_hash
from medledger.core.merkle import MerkleProof, inclusion_is_valid, inclusion_proof, merkle_root, verify_inclusion
from medledger.ledger.blocks import BLOCK_HASH_TAG, block_hash
from medledger.ledger.transactions import TX_ID_TAG, transaction_id

VECTORS_DIR = Path(__file__).parent.parent / "vectors"

FIPS_180_2_SHA256: dict[str, str] = {
    "": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "616263": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
}
"""SHA-256 of "" and "abc" as published (FIPS 180-2 appendix B.1 and the empty-string digest)."""

CT_REFERENCE_ROOTS: dict[int, str] = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
"""Certificate Transparency reference roots over the first n of its eight reference leaves."""

CT_REFERENCE_PROOF_5_1 = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
]
"""Certificate Transparency reference audit path of leaf 1 in the 5-leaf tree."""


def load(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))


HASHING: list[dict[str, Any]] = load("hashing.json")
MERKLE: dict[str, list[dict[str, Any]]] = load("merkle.json")
ROOTS = MERKLE["roots"]
PROOFS = MERKLE["proofs"]


def leaves_of(vector: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(leaf) for leaf in vector["leaves"]]


def proof_of(vector: dict[str, Any]) -> MerkleProof:
    return MerkleProof(
        leaf_index=vector["leaf_index"],
        tree_size=vector["tree_size"],
        path=tuple(bytes.fromhex(sibling) for sibling in vector["path"]),
    )


def names(vectors: list[dict[str, Any]]) -> list[str]:
    return [vector["name"] for vector in vectors]


# hashing ----------------------------------------------------------------------------------


def test_hashing_vectors_cover_both_functions_and_both_tags() -> None:
    # Prepare
    kinds = {(vector["function"], vector["tag"]) for vector in HASHING}
    # Execute
    vector_names = names(HASHING)
    # Assert
    assert kinds == {("sha256", None), ("tagged_hash", TX_ID_TAG), ("tagged_hash", BLOCK_HASH_TAG)}
    assert len(vector_names) == len(set(vector_names))


@pytest.mark.parametrize("vector", HASHING, ids=names(HASHING))
def test_hash_matches_vector(vector: dict[str, Any]) -> None:
    # Prepare
    data = bytes.fromhex(vector["input_hex"])
    # Execute
    digest = sha256(data) if vector["function"] == "sha256" else tagged_hash(vector["tag"], data)
    # Assert
    assert digest.hex() == vector["digest_hex"]


@pytest.mark.parametrize("vector", HASHING, ids=names(HASHING))
def test_hash_vector_agrees_with_its_definition(vector: dict[str, Any]) -> None:
    # Prepare: recompute from hashlib, with the tag prefixed by its one-byte length
    data = bytes.fromhex(vector["input_hex"])
    prefix = b""
    if vector["tag"] is not None:
        tag = vector["tag"].encode("ascii")
        prefix = bytes([len(tag)]) + tag
    # Execute
    digest = hashlib.sha256(prefix + data).hexdigest()
    # Assert
    assert digest == vector["digest_hex"]


@pytest.mark.parametrize(("input_hex", "digest_hex"), list(FIPS_180_2_SHA256.items()), ids=["empty", "abc"])
def test_sha256_vectors_are_the_published_digests(input_hex: str, digest_hex: str) -> None:
    # Prepare
    sha256_vectors = [vector for vector in HASHING if vector["function"] == "sha256"]
    # Execute
    found = [vector["digest_hex"] for vector in sha256_vectors if vector["input_hex"] == input_hex]
    # Assert
    assert found == [digest_hex]


@pytest.mark.parametrize("vector", [v for v in HASHING if v["tag"] is not None], ids=lambda v: v["name"])
def test_ledger_ids_use_the_vector_tags(vector: dict[str, Any]) -> None:
    # Prepare
    data = bytes.fromhex(vector["input_hex"])
    # Execute
    digest = transaction_id(data) if vector["tag"] == TX_ID_TAG else block_hash(data)
    # Assert
    assert digest.hex() == vector["digest_hex"]


def test_tagged_hashes_differ_by_tag_and_from_plain_sha256() -> None:
    # Prepare
    by_input: dict[str, set[str]] = {}
    # Execute
    for vector in HASHING:
        by_input.setdefault(vector["input_hex"], set()).add(vector["digest_hex"])
    # Assert
    assert all(len(digests) == 3 for digests in by_input.values())


# Merkle roots -----------------------------------------------------------------------------


def test_merkle_vectors_cover_the_required_trees() -> None:
    # Prepare
    letters = [b"", b"a", b"b", b"c", b"d", b"e", b"f"]
    # Execute
    letter_trees = {
        len(vector["leaves"]): leaves_of(vector) for vector in ROOTS if vector["name"].startswith("letters")
    }
    five_leaf_indices = sorted(vector["leaf_index"] for vector in PROOFS if vector["name"].startswith("letters-5-"))
    # Assert
    assert sorted(letter_trees) == [0, 1, 2, 3, 4, 5, 7]
    assert all(leaves == letters[:size] for size, leaves in letter_trees.items())
    assert five_leaf_indices == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("vector", ROOTS, ids=names(ROOTS))
def test_merkle_root_matches_vector(vector: dict[str, Any]) -> None:
    # Prepare
    leaves = leaves_of(vector)
    # Execute
    root = merkle_root(leaves)
    # Assert
    assert root.hex() == vector["root"]


@pytest.mark.parametrize(("size", "root_hex"), list(CT_REFERENCE_ROOTS.items()))
def test_ct_root_vectors_are_the_published_roots(size: int, root_hex: str) -> None:
    # Prepare
    by_name = {vector["name"]: vector for vector in ROOTS}
    # Execute
    vector = by_name[f"rfc6962-ct-{size}"]
    # Assert
    assert vector["root"] == root_hex
    assert len(vector["leaves"]) == size


# Merkle proofs ----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", PROOFS, ids=names(PROOFS))
def test_proof_vector_is_the_proof_core_builds(vector: dict[str, Any]) -> None:
    # Prepare
    leaves = leaves_of(vector)
    # Execute
    built = inclusion_proof(leaves, vector["leaf_index"])
    # Assert
    assert built == proof_of(vector)
    assert merkle_root(leaves).hex() == vector["root"]


@pytest.mark.parametrize("vector", PROOFS, ids=names(PROOFS))
def test_proof_vector_verifies_against_its_root(vector: dict[str, Any]) -> None:
    # Prepare
    leaf = leaves_of(vector)[vector["leaf_index"]]
    # Execute / Assert
    verify_inclusion(bytes.fromhex(vector["root"]), leaf, proof_of(vector))


def test_ct_proof_vector_is_the_published_path() -> None:
    # Prepare
    by_name = {vector["name"]: vector for vector in PROOFS}
    # Execute
    vector = by_name["rfc6962-ct-5-leaf-1"]
    # Assert
    assert vector["path"] == CT_REFERENCE_PROOF_5_1


@pytest.mark.parametrize("vector", PROOFS, ids=names(PROOFS))
def test_proof_vector_fails_for_a_changed_leaf(vector: dict[str, Any]) -> None:
    # Prepare
    leaf = leaves_of(vector)[vector["leaf_index"]] + b"!"
    # Execute / Assert
    with pytest.raises(MerkleProofError, match="leads to root"):
        verify_inclusion(bytes.fromhex(vector["root"]), leaf, proof_of(vector))


@pytest.mark.parametrize("vector", PROOFS, ids=names(PROOFS))
def test_proof_vector_fails_for_every_other_index(vector: dict[str, Any]) -> None:
    # Prepare
    leaf = leaves_of(vector)[vector["leaf_index"]]
    root = bytes.fromhex(vector["root"])
    path = tuple(bytes.fromhex(sibling) for sibling in vector["path"])
    other_indices = [index for index in range(vector["tree_size"]) if index != vector["leaf_index"]]
    # Execute
    outcomes = [
        inclusion_is_valid(root, leaf, MerkleProof(index, vector["tree_size"], path)) for index in other_indices
    ]
    # Assert
    assert not any(outcomes)


@pytest.mark.parametrize("vector", PROOFS, ids=names(PROOFS))
def test_proof_vector_fails_against_another_trees_root(vector: dict[str, Any]) -> None:
    # Prepare
    leaf = leaves_of(vector)[vector["leaf_index"]]
    other_roots = {bytes.fromhex(other["root"]) for other in ROOTS} - {bytes.fromhex(vector["root"])}
    # Execute
    outcomes = [inclusion_is_valid(root, leaf, proof_of(vector)) for root in other_roots]
    # Assert
    assert other_roots
    assert not any(outcomes)
