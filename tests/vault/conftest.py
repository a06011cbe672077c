"""Fixtures for the vault tests: a real PostgreSQL server and a fresh schema per test.

The server is the one named by MEDLEDGER_TEST_POSTGRES_DSN, or else the throw-away cluster that
scripts/postgres-test-server starts (installing PostgreSQL if needed), so `make test` needs no
setup step. When no server can be had, PostgreSQL tests fail under CI (env CI set) and are
skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

DSN_VARIABLE = "MEDLEDGER_TEST_POSTGRES_DSN"
SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres-test-server"
SCRIPT_TIMEOUT_S = 900
"""Long enough for apt-get to install PostgreSQL on a fresh machine."""


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _no_postgres(reason: str) -> NoReturn:
    if running_under_ci():
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL for the vault tests: {reason} (set {DSN_VARIABLE} or fix {SERVER_SCRIPT})")


def _start_test_server() -> str:
    try:
        result = subprocess.run(
            [str(SERVER_SCRIPT)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _no_postgres(f"{SERVER_SCRIPT.name} could not run: {exc}")
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        _no_postgres(f"{SERVER_SCRIPT.name} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return lines[-1]


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """A DSN that logs in to a running PostgreSQL server (a failure or skip is cached for the session)."""
    dsn = os.environ.get(DSN_VARIABLE) or _start_test_server()
    try:
        with psycopg.connect(dsn, connect_timeout=10) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        _no_postgres(f"cannot connect to {dsn.split('@')[-1]}: {exc}")
    return dsn


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name no other test uses; dropped with everything in it afterwards."""
    schema = f"vault_test_{secrets.token_hex(6)}"
    yield schema
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
