"""The pytest plugin that ends a run with the security summary: attacks tried per class, how many
were refused, the known vulnerabilities (strict xfail), the documented limits, and the crash loop's
count of what was acknowledged and what survived.

It reads the `AttackLog` entries from each test report (they cross from pytest-xdist workers in
`user_properties`) and judges each test's attacks by the test's outcome.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from _pytest.terminal import TerminalReporter

from tests.security.attacks import ATTACK_PROPERTY, AttackClass, EntryKind

SECURITY_DIRECTORY = "tests/security/"


class Verdict:
    """How a test's attacks ended, from its outcome."""

    REFUSED = "refused"
    KNOWN = "known vulnerability (strict xfail)"
    REGRESSION = "NOT REFUSED (test failed)"
    NOT_RUN = "not run (skipped)"


@dataclass
class SecurityTally:
    """Everything the summary needs, gathered report by report."""

    entries: dict[str, list[tuple[str, str, str, int]]] = field(default_factory=dict)
    """Test node id -> its logged (kind, class, description, times)."""
    verdicts: dict[str, str] = field(default_factory=dict)
    """Test node id -> Verdict."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Test node id -> the xfail reason of a known vulnerability."""

    def add(self, report: pytest.TestReport) -> None:
        if not report.nodeid.startswith(SECURITY_DIRECTORY):
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if hasattr(report, "wasxfail"):
                self.verdicts[report.nodeid] = Verdict.KNOWN
                self.reasons[report.nodeid] = str(report.wasxfail)
            elif report.passed:
                self.verdicts[report.nodeid] = Verdict.REFUSED
            elif report.failed:
                self.verdicts[report.nodeid] = Verdict.REGRESSION
            else:
                self.verdicts[report.nodeid] = Verdict.NOT_RUN
        if report.when == "teardown":
            self.entries[report.nodeid] = [
                value for key, value in report.user_properties if key == ATTACK_PROPERTY and isinstance(value, tuple)
            ]

    def _known_lines(self) -> list[str]:
        """The known vulnerabilities, one per xfail reason, with the tests that show each."""
        by_reason: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for nodeid, reason in self.reasons.items():
            test, _, parameter = nodeid.removeprefix(SECURITY_DIRECTORY).partition("[")
            by_reason[reason.removeprefix("VULNERABILITY: ")][test].append(parameter.rstrip("]"))
        if not by_reason:
            return []
        out = ["known vulnerabilities (strict xfail: fix each, then remove its marker):"]
        for number, (reason, tests) in enumerate(sorted(by_reason.items()), start=1):
            out.append(f"  {number}. {reason}")
            for test, parameter_ids in sorted(tests.items()):
                shown = ", ".join(sorted(p for p in parameter_ids if p))
                out.append(f"       {test}" + (f" [{shown}]" if shown else ""))
        return out

    def lines(self) -> list[str]:
        attacks: dict[str, Counter[str]] = defaultdict(Counter)
        limits: dict[str, Counter[str]] = defaultdict(Counter)
        notes: dict[str, list[str]] = defaultdict(list)
        for nodeid, entries in self.entries.items():
            verdict = self.verdicts.get(nodeid, Verdict.NOT_RUN)
            for kind, attack_class, what, times in entries:
                if kind == EntryKind.ATTACK.value:
                    attacks[attack_class][verdict] += times
                elif kind == EntryKind.LIMIT.value:
                    limits[attack_class][what] += times
                else:
                    notes[attack_class].append(what)
        if not attacks and not limits:
            return []
        width = max(len(c.value) for c in AttackClass)
        header = f"{'attack class':<{width}}  {'tried':>6}  {'refused':>7}  {'known':>5}  {'NOT refused':>11}"
        out = [header, "-" * len(header)]
        totals: Counter[str] = Counter()
        for attack_class in AttackClass:
            counts = attacks.get(attack_class.value, Counter())
            tried = sum(counts.values())
            totals.update(counts)
            out.append(
                f"{attack_class.value:<{width}}  {tried:>6}  {counts[Verdict.REFUSED]:>7}  "
                f"{counts[Verdict.KNOWN]:>5}  {counts[Verdict.REGRESSION]:>11}"
            )
            out.extend(f"{'':<4}{note}" for note in notes.get(attack_class.value, []))
        tried = sum(totals.values())
        out.append("-" * len(header))
        if totals[Verdict.REGRESSION]:
            out.append(f"{totals[Verdict.REGRESSION]} of {tried} attacks were NOT refused: see the failures above.")
        else:
            must_refuse = tried - totals[Verdict.KNOWN] - totals[Verdict.NOT_RUN]
            line = f"all {must_refuse} attacks that must be refused were refused"
            if totals[Verdict.KNOWN]:
                line += f"; {totals[Verdict.KNOWN]} succeed through the known vulnerabilities below"
            out.append(line + ".")
        out.extend(self._known_lines())
        if limits:
            out.append("documented limits (not defended yet; docs/threat-model.md says so):")
            for attack_class in AttackClass:
                for what in sorted(limits.get(attack_class.value, {})):
                    out.append(f"  - {what}")
        return out


_TALLY = SecurityTally()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _TALLY.add(report)


def pytest_terminal_summary(terminalreporter: TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    lines = _TALLY.lines()
    if not lines:
        return
    terminalreporter.write_sep("=", "medledger security summary")
    for line in lines:
        terminalreporter.write_line(line)
