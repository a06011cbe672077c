"""The Python client applications, the CLI and the web backend use to reach a medledger network."""

from medledger.sdk.client import (
    Credentials,
    Gateway,
    LedgerClient,
    NoQuorumAttestation,
    NotTheAttestedBlock,
    ProofRefused,
    SubmitTimeout,
    TransactionFailed,
)
from medledger.sdk.wallet import PatientWallet

__all__ = [
    "Credentials",
    "Gateway",
    "LedgerClient",
    "NoQuorumAttestation",
    "NotTheAttestedBlock",
    "PatientWallet",
    "ProofRefused",
    "SubmitTimeout",
    "TransactionFailed",
]
