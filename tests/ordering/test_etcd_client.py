"""The etcd client's own HTTP handling, against small fake members (no etcd needed): kept-alive connections a
member closed are replaced without failing over, and a gateway's error answer is named."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from medledger.ordering.etcd_client import EtcdClient, EtcdRequestError


@dataclass
class FakeMember:
    """Answers every request on a connection with one canned answer, then closes that connection without
    saying so (no `Connection: close`): what a member does to a kept-alive connection it drops."""

    status: int
    body: bytes
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += connection.recv(65536)
    return body


@contextlib.contextmanager
def running(status: int, body: bytes) -> Iterator[FakeMember]:
    """A fake member on a port of its own for the duration of the block."""
    member = FakeMember(status, body)
    server = socket.create_server(("127.0.0.1", 0))
    member.url = f"http://127.0.0.1:{server.getsockname()[1]}"

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            member.connections += 1
            with connection:
                member.requests.append(_read_request(connection))
                reason = "OK" if member.status == 200 else "Error"
                head = f"HTTP/1.1 {member.status} {reason}\r\nContent-Type: application/json\r\n"
                connection.sendall(f"{head}Content-Length: {len(member.body)}\r\n\r\n".encode() + member.body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield member
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
        server.close()
        thread.join(timeout=5)


ANSWER = json.dumps({"header": {"revision": "7"}, "kvs": []}).encode()


def test_a_kept_alive_connection_the_member_closed_is_replaced_without_failing_over() -> None:
    # Prepare: two members; the client starts on the first
    with running(200, ANSWER) as first, running(200, ANSWER) as second:
        client = EtcdClient([first.url, second.url], retry_for=2.0)
        try:
            # Execute: three requests; after each answer the first member drops the connection
            revisions = [client.range(b"key-%d" % n)[1] for n in range(3)]
        finally:
            client.close()
    # Assert: every request answered by the first member, each on a connection of its own; none failed over
    assert revisions == [7, 7, 7]
    assert first.connections == 3 and second.connections == 0
    assert [json.loads(body)["key"] for body in first.requests] == ["a2V5LTA=", "a2V5LTE=", "a2V5LTI="]


def test_a_gateway_error_answer_is_named_with_its_grpc_code() -> None:
    # Prepare
    too_large = json.dumps({"code": 3, "message": "etcdserver: request is too large"}).encode()
    with running(400, too_large) as member:
        client = EtcdClient([member.url], retry_for=2.0)
        try:
            # Execute
            with pytest.raises(EtcdRequestError) as refused:
                client.put(b"key", b"value")
        finally:
            client.close()
    # Assert: refused at once (not retried), naming etcd's message and code
    assert refused.value.code == 3
    assert "request is too large" in str(refused.value)
    assert member.connections == 1


def test_an_error_answer_that_is_not_json_names_the_http_status() -> None:
    with running(502, b"<html>bad gateway</html>") as member:
        client = EtcdClient([member.url], retry_for=2.0)
        try:
            with pytest.raises(EtcdRequestError, match="HTTP 502: <html>bad gateway"):
                client.get(b"key")
        finally:
            client.close()
