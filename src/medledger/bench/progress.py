"""How the harness reports progress: a callable taking (phase, done, total), which the CLI turns
into Rich progress bars and tests ignore."""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]
"""(phase, done, total): `done` of `total` steps of `phase` are finished."""


def no_progress(phase: str, done: int, total: int) -> None:
    """A ProgressCallback that shows nothing."""
