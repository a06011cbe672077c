"""The typed error tree shared by every layer of medledger.

    MedledgerError
    ├── EncodingError            bytes that are not canonical medledger CBOR
    ├── SignatureError           a signature that does not verify for its domain
    ├── CertificateError         an X.509 certificate that is malformed, foreign or expired
    ├── MerkleProofError         an inclusion proof that does not lead to the root
    ├── LedgerError              (medledger.ledger) storage, validation, integrity
    ├── OrderingError            (medledger.ordering)
    └── ContractError            (medledger.contracts) a named rejection of a transaction

Every error says what was wrong; where the user can act, it says what to do.
"""

from __future__ import annotations


class MedledgerError(Exception):
    """Root of every error medledger raises on purpose."""


class EncodingError(MedledgerError):
    """Bytes that do not decode as canonical medledger CBOR, or a value that cannot be encoded."""


class SignatureError(MedledgerError):
    """A signature that does not verify under its key and domain."""


class CertificateError(MedledgerError):
    """A certificate that is malformed, not issued by the claimed CA, or outside its validity."""


class MerkleProofError(MedledgerError):
    """A Merkle inclusion proof that is malformed or does not lead to the expected root."""
