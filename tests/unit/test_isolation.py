"""Ports a run has to itself."""

from __future__ import annotations

import http.server
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


def test_a_process_is_not_started_on_a_port_something_answers(taken: int) -> None:
    url = f"http://127.0.0.1:{taken}/healthz"
    with (
        pytest.raises(RuntimeError, match="already answers"),
        tracker("serve", Settings(exporter_port=taken), url),
    ):
        pass
