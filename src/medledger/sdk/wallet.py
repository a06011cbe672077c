"""A patient's wallet: an Ed25519 signing key and an X25519 encryption key, held by the patient."""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.public

from medledger.contracts.identity.contract import enrolment_payload, patient_pseudonym
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
