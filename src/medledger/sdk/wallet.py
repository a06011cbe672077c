"""A patient's wallet: an Ed25519 signing key and an X25519 encryption key, held by the patient."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nacl.public

from medledger.contracts.identity.contract import enrolment_payload, patient_pseudonym
from medledger.core.errors import MedledgerError
from medledger.core.signing import Domain, SigningKey


@dataclass(frozen=True, slots=True)
class PatientWallet:
    """The keys a patient holds; the ledger knows them only by pseudonym."""

    signing_key: SigningKey = field(repr=False)
    """Signs consents and other patient transactions."""
    encryption_seed: bytes = field(repr=False)
    """32-byte X25519 private key: data keys are sealed to its public half."""

    @classmethod
    def generate(cls) -> PatientWallet:
        return cls(SigningKey.generate(), bytes(nacl.public.PrivateKey.generate()))

    @property
    def sign_public_key(self) -> bytes:
        return self.signing_key.public_key

    @property
    def encryption_public_key(self) -> bytes:
        return bytes(nacl.public.PrivateKey(self.encryption_seed).public_key)

    @property
    def pseudonym(self) -> str:
        return patient_pseudonym(self.sign_public_key)

    @property
    def signer_ref(self) -> str:
        return f"patient:{self.pseudonym}"

    def enrolment_args(self, channel: str) -> dict[str, bytes]:
        """Arguments of identity.register_patient, with the wallet's proof of possession."""
        payload = enrolment_payload(channel, self.sign_public_key, self.encryption_public_key)
        return {
            "sign_key": self.sign_public_key,
            "encryption_key": self.encryption_public_key,
            "enrolment_signature": self.signing_key.sign(Domain.PATIENT_ENROLMENT, payload),
        }


def save_wallet(directory: Path, wallet: PatientWallet) -> Path:
    """Keep a wallet as <pseudonym>.json (0600). A patient's own device would hold this file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{wallet.pseudonym}.json"
    secret = {"sign_seed": wallet.signing_key.seed.hex(), "encryption_seed": wallet.encryption_seed.hex()}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps(secret))
    return path


def load_wallet(directory: Path, pseudonym: str) -> PatientWallet:
    """The wallet saved for `pseudonym` (a unique prefix of it is enough)."""
    matches = sorted(directory.glob(f"{pseudonym}*.json")) if directory.is_dir() else []
    if len(matches) != 1:
        found = "no wallet" if not matches else f"{len(matches)} wallets"
        raise MedledgerError(f"{found} for patient {pseudonym!r} in {directory}")
    try:
        data = json.loads(matches[0].read_text())
        return PatientWallet(SigningKey(bytes.fromhex(data["sign_seed"])), bytes.fromhex(data["encryption_seed"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise MedledgerError(f"{matches[0]} is not a medledger wallet: {exc}") from exc


def list_wallets(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
