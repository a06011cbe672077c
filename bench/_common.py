"""What the scripts in bench/ share: a temporary work directory and a one-line progress printer."""

from __future__ import annotations

import sys
import time


class LineProgress:
    """Prints a phase's progress at most twice a second, on one rewritten line."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self._last > 0.5:
            self._last = now
            end = "\n" if done == total else ""
            sys.stderr.write(f"\r{phase}: {done:,}/{total:,}{end}")
            sys.stderr.flush()
