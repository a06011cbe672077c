"""The records contract: the ledger's index of medical records held in institutions' vaults.

State layout:
  records/entry/<record_id>                      one version of a record's index entry
  records/by-patient/<pseudonym>/<record_id>     index of a patient's records (resource type, date)
The record itself never reaches the ledger: only its hashes, locator and metadata.
"""

from medledger.contracts.records.contract import RECORDS, record_id_for, record_key

__all__ = ["RECORDS", "record_id_for", "record_key"]
