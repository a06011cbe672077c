"""The master key file: created once with mode 0600, refused when its guarantees are gone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from medledger.vault import MasterKeyError, load_or_create_master_key


def test_a_new_key_is_32_private_bytes_and_is_kept(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "keys" / "vault-master.key"
    # Execute
    created = load_or_create_master_key(path)
    loaded = load_or_create_master_key(path)
    # Assert
    assert len(created) == 32 and created == loaded
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["vault-master.key"]


def test_two_keys_are_different(tmp_path: Path) -> None:
    # Execute / Assert
    assert load_or_create_master_key(tmp_path / "a.key") != load_or_create_master_key(tmp_path / "b.key")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o602])
def test_a_key_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    # Prepare
    path = tmp_path / "master.key"
    load_or_create_master_key(path)
    path.chmod(mode)
    # Execute / Assert
    with pytest.raises(MasterKeyError, match=rf"has mode {mode:04o}: group or others .*chmod 600"):
        load_or_create_master_key(path)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_key_of_the_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    # Prepare
    path = tmp_path / "master.key"
    path.write_bytes(b"k" * size)
    path.chmod(0o600)
    # Execute / Assert
    with pytest.raises(MasterKeyError, match=rf"is {size} bytes, a master key is 32"):
        load_or_create_master_key(path)


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    # Prepare
    target = tmp_path / "real.key"
    load_or_create_master_key(target)
    link = tmp_path / "link.key"
    link.symlink_to(target)
    # Execute / Assert
    with pytest.raises(MasterKeyError, match="is not a regular file"):
        load_or_create_master_key(link)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "master.key"
    keys: list[bytes] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait()
        keys.append(load_or_create_master_key(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    # Execute
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Assert
    assert len(keys) == 8 and len(set(keys)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
