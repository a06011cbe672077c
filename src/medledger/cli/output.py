"""The consoles every command prints through. When output is not a terminal (a pipe, a log, CI)
tables get 160 columns so that ids and hashes are never cut."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
