"""Ports a run has to itself."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from harness.isolation import free_port
from harness.processes import tracker
from tracker.settings import Settings


def test_free_ports_are_never_handed_out_twice() -> None:
    # 1,000 draws from the ~28,000 ephemeral ports: about 18 repeats if left to the kernel.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)


@pytest.fixture
def taken() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent() -> Iterator[int]:
    """A port whose listener accepts no connection: a request there times out."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.mark.parametrize("holder", ["taken", "silent"])
def test_a_process_is_not_started_on_a_port_something_listens_on(
    holder: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue(holder)
    url = f"http://127.0.0.1:{port}/healthz"
    with (
        pytest.raises(RuntimeError, match="already listens"),
        tracker("serve", Settings(exporter_port=port), url),
    ):
        pass
