"""The consent contract: a patient's FHIR-Consent-shaped grants, their revocation, and the
deterministic check "is this access permitted at block time t".

State layout:
  consent/entry/<consent_id>                     the consent
  consent/by-patient/<pseudonym>/<consent_id>    index of a patient's consents
"""

from medledger.contracts.consent.contract import CONSENT, consent_key, patient_consents
from medledger.contracts.consent.policy import (
    ACTIONS,
    PURPOSES,
    AccessQuery,
    ConsentDecision,
    evaluate_consents,
)

__all__ = [
    "ACTIONS",
    "CONSENT",
    "PURPOSES",
    "AccessQuery",
    "ConsentDecision",
    "consent_key",
    "evaluate_consents",
    "patient_consents",
]
