"""The access contract: signed access requests decided on chain, break-glass, deliveries, reviews.

State layout:
  access/decision/<decision_id>                    a decision: permit or deny, with its reason
  access/delivery/<decision_id>/<request_hash>     a vault's delivery of a record under a decision
  access/notice/<pseudonym>/<decision_id>          a break-glass access the patient is told about
  access/review/<decision_id>                      a break-glass access waiting for review
"""

from medledger.contracts.access.contract import (
    ACCESS,
    BREAK_GLASS_TTL_MS,
    PERMIT_TTL_MS,
    decision_key,
    permit_status,
)

__all__ = ["ACCESS", "BREAK_GLASS_TTL_MS", "PERMIT_TTL_MS", "decision_key", "permit_status"]
