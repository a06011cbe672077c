"""Fixtures of the security suite: the attack log every test writes to, a record-sharing world on a
running embedded network with a real vault, and the plugin that prints the security summary.

Run alone (`pytest tests/security`), this conftest registers the summary plugin. When the whole suite
runs under pytest-xdist from the repository root, the controller never loads this file; the summary
then needs `tests.security.summary` listed in the root conftest's `pytest_plugins`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ManualClock
from tests.security import summary
from tests.security.attacks import AttackLog
from tests.security.world import SharingWorld, build_world

SUMMARY_PLUGIN = "medledger-security-summary"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(SUMMARY_PLUGIN) and not config.pluginmanager.is_registered(summary):
        config.pluginmanager.register(summary, SUMMARY_PLUGIN)


@pytest.fixture
def attacks(request: pytest.FixtureRequest) -> Iterator[AttackLog]:
    """Where the test logs the attacks it makes (see tests/security/attacks.py)."""
    log = AttackLog(request.node)
    yield log
    log.flush()


@pytest.fixture
def world(tmp_path: Path, clock: ManualClock) -> Iterator[SharingWorld]:
    """Two patients' lab results in St Mary's vault, a TREAT consent for City General, and the staff
    and outsiders the attacks need, on a running embedded network."""
    built = build_world(tmp_path / "net", clock)
    try:
        yield built
    finally:
        built.network.stop()
