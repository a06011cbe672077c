"""The vault master key file: 32 random bytes, readable by its owner only.

The master key wraps every object's data key; losing it loses the vault, leaking it leaks every
record. So the file is created atomically with mode 0600 and never replaced, and a file that is
the wrong size or that group or others may read or write is refused rather than repaired.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from medledger.vault.crypto import DATA_KEY_SIZE, new_data_key
from medledger.vault.errors import MasterKeyError

MASTER_KEY_SIZE = DATA_KEY_SIZE
"""Bytes in a master key (32)."""


def load_or_create_master_key(path: Path | str) -> bytes:
    """The master key in `path`, created (32 random bytes, mode 0600) if the file does not exist."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        _create_master_key_file(path)
    return _load_master_key(path)


def _create_master_key_file(path: Path) -> None:
    # Written in full to a private temporary file, then hard-linked into place: link() never
    # replaces an existing file, so two processes starting together end up with one key.
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {path}: {exc}") from exc
    try:
        with os.fdopen(descriptor, "wb") as file:  # mkstemp creates it with mode 0600
            file.write(new_data_key())
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary_name, path)
        except FileExistsError:
            return  # created meanwhile by another process: load theirs
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {path}: {exc}") from exc
    finally:
        Path(temporary_name).unlink(missing_ok=True)


def _load_master_key(path: Path) -> bytes:
    try:
        status = path.lstat()
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {path}: {exc}") from exc
    if not stat.S_ISREG(status.st_mode):
        raise MasterKeyError(f"master key file {path} is not a regular file (a symlink or a directory?)")
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise MasterKeyError(
            f"master key file {path} has mode {mode:04o}: group or others may read or write it. "
            f"Run 'chmod 600 {path}', and if others could read it, treat the key as leaked"
        )
    if status.st_size != MASTER_KEY_SIZE:
        raise MasterKeyError(
            f"master key file {path} is {status.st_size} bytes, a master key is {MASTER_KEY_SIZE}: the file is "
            "truncated or not a master key. Restore it from backup; a new key cannot open existing objects"
        )
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {path}: {exc}") from exc
    if len(key) != MASTER_KEY_SIZE:
        raise MasterKeyError(f"master key file {path} changed while it was read: {len(key)} bytes")
    return key
