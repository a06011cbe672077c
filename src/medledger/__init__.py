"""medledger: a consortium ledger for safe medical data sharing.

Raw records stay encrypted in each institution's vault; the ledger holds their index,
the patients' consents as executable contracts, and a tamper-evident audit trail.
"""

__version__ = "0.1.0"
