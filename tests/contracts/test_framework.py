"""The contract framework's argument parsing under concurrency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 300


@pytest.mark.parametrize("mode", ["registered", "unregistered"])
def test_threads_parsing_a_schema_they_meet_for_the_first_time_do_not_crash_the_process(mode: str) -> None:
    """msgspec publishes a Struct's type cache before filling it in: a thread converting the same schema
    meanwhile read an empty field and the process died (segmentation fault). Four threads at a time parse
    each of 300 fresh schemas, in a child process switching threads as often as it can: registered as
    contract functions first, and never registered (`parse_args` prepares those at first use)."""
    # Execute
    child = subprocess.run(
        [sys.executable, "-m", "tests.contracts.concurrent_schemas", str(ROUNDS), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Assert
    assert child.returncode == 0, f"exit {child.returncode}: {child.stderr[-2000:]}"
    assert child.stdout.strip() == f"parsed {ROUNDS} rounds"
    assert child.stderr == ""
