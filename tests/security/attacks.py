"""The record of what the security suite attacked: each test names the attacks it tries, by class.

A test calls `AttackLog.tried(...)` before it attacks; the verdict comes from the test's outcome
(passed: refused; strict xfail: a known vulnerability; failed: a regression). Known limits, which the
threat model documents as not defended, are logged with `AttackLog.limit(...)`, and facts such as the
crash loop's counts with `AttackLog.note(...)`. The entries travel in the test report's
`user_properties`, so they reach the pytest-xdist controller that prints the summary.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

import pytest

ATTACK_PROPERTY = "medledger-attack"
"""Key of the `user_properties` entries this module writes."""


class AttackClass(enum.StrEnum):
    """The classes of attack of docs/threat-model.md, in the order the summary prints them."""

    SIGNATURES = "forged, replayed, re-ordered and cross-domain signatures"
    IDENTITY = "certificates, impersonation and patient keys"
    VAULT = "vault delivery requests"
    REST = "REST API authentication and input"
    TAMPER = "tampering with stored bytes"
    BYZANTINE = "Byzantine peers and orderer"
    CRASH = "crash safety (SIGKILL during commit)"
    FUZZ = "malformed input (fuzzed decoders)"


class EntryKind(enum.StrEnum):
    """What one logged entry is."""

    ATTACK = "attack"
    """An attack the system must refuse."""
    LIMIT = "limit"
    """A documented limit: the attack succeeds today, and the threat model says so."""
    NOTE = "note"
    """A fact to print under the class (counts of the crash loop, for instance)."""


@dataclass
class AttackLog:
    """Collects one test's attacks; `flush` writes them into the test item's `user_properties`."""

    item: pytest.Item
    """The running test."""
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(kind, class, description) -> how many times."""

    def tried(self, attack_class: AttackClass, what: str, times: int = 1) -> None:
        """Log an attack about to be made; the test's outcome says whether it was refused."""
        self.counts[(EntryKind.ATTACK.value, attack_class.value, what)] += times

    def limit(self, attack_class: AttackClass, what: str) -> None:
        """Log an attack the threat model documents as not defended (the test shows it succeeds)."""
        self.counts[(EntryKind.LIMIT.value, attack_class.value, what)] += 1

    def note(self, attack_class: AttackClass, what: str) -> None:
        """Log a fact to print under the class."""
        self.counts[(EntryKind.NOTE.value, attack_class.value, what)] += 1

    def flush(self) -> None:
        for (kind, attack_class, what), times in sorted(self.counts.items()):
            self.item.user_properties.append((ATTACK_PROPERTY, (kind, attack_class, what, times)))
        self.counts.clear()
