"""The installed `medledger` command: the demo runs, continues on an existing network and verifies;
bad input ends with a clear one-line message and a non-zero exit code, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medledger.ledger.sqlite_store import SQLiteLedgerStore

MEDLEDGER = Path(sys.executable).parent / "medledger"
"""The console script installed beside the interpreter running the tests."""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so rich does not wrap the lines the tests look for.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(MEDLEDGER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def record_count(data_dir: Path, org_id: str = "st-mary") -> int:
    store = SQLiteLedgerStore(data_dir / "peers" / org_id / "ledger.sqlite")
    try:
        return len(store.scan_state("records/entry/"))
    finally:
        store.close()


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_console_script_is_installed() -> None:
    assert MEDLEDGER.is_file() and os.access(MEDLEDGER, os.X_OK), MEDLEDGER


def test_demo_runs_verifies_and_continues(tmp_path: Path) -> None:
    # Prepare
    data_dir = tmp_path / "demo"
    # Execute
    first = run("demo", "--data-dir", str(data_dir), "--records", "150", "--fresh", cwd=tmp_path)
    records_after_first = record_count(data_dir) if first.returncode == 0 else -1
    verified = run("verify", str(data_dir), cwd=tmp_path)
    second = run("demo", "--data-dir", str(data_dir), "--records", "150", cwd=tmp_path)
    verified_again = run("verify", str(data_dir), cwd=tmp_path)
    # Assert
    assert first.returncode == 0, first.stdout + first.stderr
    agreement = next(line for line in first.stdout.splitlines() if "all peers hold the same state root" in line)
    assert "yes" in agreement
    assert "150 (0 rejected)" in first.stdout
    shared = int(re.search(r"ingested (\d+) records", first.stdout).group(1))  # type: ignore[union-attr]
    assert records_after_first == 150 + shared
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout and "5 ledger(s) verified" in verified.stdout
    assert "1 vault(s) verified" in verified.stdout
    assert second.returncode == 0, second.stdout + second.stderr
    assert "yes" in next(line for line in second.stdout.splitlines() if "same state root" in line)
    assert record_count(data_dir) == 300 + 2 * shared
    assert verified_again.returncode == 0, verified_again.stdout + verified_again.stderr
    for result in (first, verified, second, verified_again):
        assert_no_traceback(result)


def test_verify_of_a_missing_directory_fails_with_one_line(tmp_path: Path) -> None:
    # Execute
    result = run("verify", "/nonexistent", cwd=tmp_path)
    # Assert
    assert result.returncode != 0
    assert_no_traceback(result)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "/nonexistent" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("demo", "--records", "0"),
        ("demo", "--records", "abc"),
        ("demo", "--records", "-5"),
        ("frobnicate",),
        ("verify",),
    ],
    ids=["records-zero", "records-not-a-number", "records-negative", "unknown-command", "verify-without-dir"],
)
def test_usage_errors_exit_2_without_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    # Execute
    result = run(*args, cwd=tmp_path)
    # Assert
    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "Usage" in result.stderr or "Error" in result.stderr, result.stderr
    assert not (tmp_path / "demo-data").exists()


def test_demo_fresh_refuses_to_wipe_a_directory_that_is_not_a_network(tmp_path: Path) -> None:
    # Prepare
    precious = tmp_path / "precious"
    (precious / "notes").mkdir(parents=True)
    (precious / "thesis.txt").write_text("four years of work\n")
    (precious / "notes" / "day1.md").write_bytes(b"\x00\x01 binary too")
    before = snapshot(precious)
    # Execute
    result = run("demo", "--data-dir", str(precious), "--records", "10", "--fresh", cwd=tmp_path)
    # Assert
    assert result.returncode != 0
    assert_no_traceback(result)
    assert "refusing" in result.stderr and str(precious) in result.stderr, result.stderr
    assert snapshot(precious) == before


def test_the_log_level_comes_from_the_environment_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    # Prepare
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    script = (
        "import logging, sys\n"
        "from medledger.cli.main import configure_logging\n"
        "configure_logging()\n"
        "logging.getLogger('medledger.test').info('cutter rebuilt')\n"
        "logging.getLogger('medledger.test').debug('not shown')\n"
    )
    # Execute
    info = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "MEDLEDGER_LOG_LEVEL": "info"},
        capture_output=True,
        text=True,
        check=False,
    )
    default = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    wrong = subprocess.run(
        [str(MEDLEDGER), "version"],
        cwd=tmp_path,
        env={**env, "MEDLEDGER_LOG_LEVEL": "loud"},
        capture_output=True,
        text=True,
        check=False,
    )
    # Assert: the line carries its date and time; warning is the default; a wrong level exits 2, naming it
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO medledger.test: cutter rebuilt$", info.stderr, re.M)
    assert "not shown" not in info.stderr
    assert default.stderr == ""
    assert wrong.returncode == 2
    assert "MEDLEDGER_LOG_LEVEL='loud'" in wrong.stdout + wrong.stderr
    assert_no_traceback(wrong)
