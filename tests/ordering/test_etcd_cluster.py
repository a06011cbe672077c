"""The local etcd cluster: start, leader, kill and restart a member, stop from a re-attached handle; and
the plain key-value helper the node layer uses."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from medledger.ordering import etcd_cluster as etcd_cluster_module
from medledger.ordering.etcd import EtcdKV
from medledger.ordering.etcd_cluster import ETCD_BINARY_ENV, EtcdCluster, EtcdClusterError, etcd_binary
from tests.ordering.conftest import etcd_port_bases


def test_the_etcd_binary_is_found_without_any_manual_install() -> None:
    # Execute
    binary = etcd_binary()
    # Assert
    assert binary.is_file() and os.access(binary, os.X_OK)


def test_a_named_etcd_binary_that_is_not_executable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    fake = tmp_path / "etcd"
    fake.write_text("not a program")
    fake.chmod(stat.S_IRUSR)
    monkeypatch.setenv(ETCD_BINARY_ENV, str(fake))
    # Execute / Assert
    with pytest.raises(EtcdClusterError, match="not an executable file"):
        etcd_binary()


def test_ports_above_the_ephemeral_range_are_refused(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(EtcdClusterError, match="ports must lie in"):
        EtcdCluster(tmp_path, 3, 32766, 32000)


def test_a_port_already_taken_is_named_before_etcd_starts(tmp_path: Path) -> None:
    # Prepare: something else listens on the first member's client port
    client_base, peer_base = etcd_port_bases(slot=3)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", client_base + 1))
        squatter.listen()
        cluster = EtcdCluster(tmp_path / "etcd", 3, client_base, peer_base)
        # Execute / Assert
        with pytest.raises(EtcdClusterError, match=f"port {client_base + 1} on 127.0.0.1 is taken"):
            cluster.start(timeout=5)
    assert cluster.pids == [None, None, None]


def test_a_cluster_started_by_one_process_is_stopped_by_another(tmp_path: Path) -> None:
    # Prepare: "network up" starts the cluster, records it and exits
    client_base, peer_base = etcd_port_bases(slot=1)
    cluster = EtcdCluster(tmp_path / "etcd", 3, client_base, peer_base)
    started = time.monotonic()
    cluster.start()
    start_seconds = time.monotonic() - started
    cluster.save_state(tmp_path / "cluster.json")
    pids = cluster.pids
    # Execute: "network down" re-attaches from the state file and stops it
    attached = EtcdCluster.attach(tmp_path / "cluster.json")
    leader = attached.leader()
    attached_pids = attached.pids
    stopped = time.monotonic()
    attached.stop()
    stop_seconds = time.monotonic() - stopped
    # Assert
    assert attached_pids == pids and all(pid is not None for pid in pids)
    assert 0 <= leader < 3
    assert attached.pids == [None, None, None]
    assert cluster.pids == [None, None, None]
    assert attached.endpoints == cluster.endpoints
    cluster.close()
    attached.close()
    print(f"cluster start {start_seconds:.2f} s, stop {stop_seconds:.2f} s")


@pytest.mark.parametrize(
    ("name", "cmdline", "running"),
    [
        ("etcd", "", True),  # on its way out: command line released, not yet exited
        ("bash", "", False),  # the pid now names another program
        ("etcd", "etcd --data-dir /elsewhere", False),  # another cluster's etcd
    ],
)
def test_an_attached_cluster_counts_an_exiting_member_as_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, cmdline: str, running: bool
) -> None:
    # Prepare: an attached cluster whose member 0 has a pid, and what /proc says of that pid
    cluster = EtcdCluster(tmp_path / "etcd", 3, *etcd_port_bases(slot=1))
    cluster.save_state(tmp_path / "cluster.json")
    attached = EtcdCluster.attach(tmp_path / "cluster.json")
    attached._pids = [4242, None, None]
    monkeypatch.setattr(etcd_cluster_module, "_process_alive", lambda pid: True)
    monkeypatch.setattr(etcd_cluster_module, "_process_name", lambda pid: name)
    monkeypatch.setattr(etcd_cluster_module, "_process_cmdline", lambda pid: cmdline)
    # Execute / Assert
    assert attached.is_running(0) is running
    cluster.close()
    attached.close()


def test_a_killed_member_restarts_on_its_data_and_rejoins(etcd_cluster: EtcdCluster) -> None:
    # Prepare
    kv = EtcdKV(etcd_cluster.endpoints)
    kv.put("/cluster-test/before", b"1")
    follower = (etcd_cluster.leader() + 1) % 3
    # Execute
    etcd_cluster.kill(follower)
    kv.put("/cluster-test/while-down", b"2")
    down_pid = etcd_cluster.pids[follower]
    etcd_cluster.start_member(follower)
    # Assert: the member serves what was written while it was down
    assert down_pid is None
    member = EtcdKV([etcd_cluster.client_url(follower)])
    assert member.get("/cluster-test/while-down") == b"2"
    assert member.status()["header"]["member_id"] != "0"
    member.close()
    kv.close()


def test_a_member_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    # Prepare: a member whose data directory is a file cannot start
    client_base, peer_base = etcd_port_bases(slot=2)
    cluster = EtcdCluster(tmp_path / "etcd", 1, client_base, peer_base)
    (tmp_path / "etcd").mkdir()
    (tmp_path / "etcd" / "n1").write_text("not a directory")
    # Execute / Assert
    with pytest.raises(EtcdClusterError, match=r"n1 exited while starting; end of .*n1\.log"):
        cluster.start(timeout=10)
    cluster.stop()
    cluster.close()


def test_the_key_value_helper(etcd_cluster: EtcdCluster) -> None:
    # Prepare
    kv = EtcdKV(etcd_cluster.endpoints)
    prefix = "/medledger/kv-test/attestations/000000000007/"
    # Execute
    kv.put(prefix + "org-b", b"B")
    kv.put(prefix.encode() + b"org-a", b"A")
    created = kv.create_if_absent(prefix + "org-c", b"C")
    refused = kv.create_if_absent(prefix + "org-a", b"other")
    listed = kv.get_prefix(prefix, page=2)
    missing = kv.get(prefix + "org-z")
    deleted = kv.delete_prefix(prefix)
    # Assert
    assert (created, refused, missing) == (True, False, None)
    assert listed == [
        (prefix.encode() + org, value) for org, value in ((b"org-a", b"A"), (b"org-b", b"B"), (b"org-c", b"C"))
    ]
    assert deleted == 3 and kv.get_prefix(prefix) == []
    assert kv.status()["version"].startswith("3.")
    kv.close()
