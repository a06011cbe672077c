"""The audit trail: FHIR-AuditEvent-shaped entries every contract appends, kept per patient.

State layout:
  audit/patient/<pseudonym>/<block:012d>.<tx:05d>.<n:02d>   one entry

The key orders entries by block, transaction and position, so a prefix scan reads a patient's
trail in the order things happened. Entries live in world state and are committed by the
chain like everything else: changing one is detected by `medledger verify`.
"""

from medledger.contracts.audit.trail import (
    AUDIT,
    AuditAction,
    AuditOutcome,
    append_audit,
    audit_prefix,
)

__all__ = ["AUDIT", "AuditAction", "AuditOutcome", "append_audit", "audit_prefix"]
