"""The identity contract: organisations, their members and roles, patients by pseudonym, revocation.

State layout (values are canonical CBOR maps):
  identity/org/<org_id>             organisation: kind, CA certificate, status
  identity/org-proposal/<org_id>    a proposed organisation and the organisations approving it
  identity/member/<cert_id>         member: certificate, organisation, role, status
  identity/patient/<pseudonym>      patient: signing and encryption keys, enrolling organisation
"""

from medledger.contracts.identity.contract import (
    IDENTITY,
    apply_genesis,
    member_key,
    org_key,
    patient_key,
    patient_pseudonym,
)
from medledger.contracts.identity.resolver import IdentityResolver

__all__ = ["IDENTITY", "IdentityResolver", "apply_genesis", "member_key", "org_key", "patient_key", "patient_pseudonym"]
