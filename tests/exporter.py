"""A ``tracker serve`` process of its own, and plain HTTP requests to it."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.processes import environment, http_get, stop, wait_for
from tracker.settings import Settings


@dataclass(frozen=True)
class Answer:
    status: int
    challenge: str | None
    """Its WWW-Authenticate header."""
    body: bytes


def ask(
    base: str, path: str, method: str, authorization: str | None, body: bytes | None = None
) -> Answer:
    headers = {} if authorization is None else {"Authorization": authorization}
    request = urllib.request.Request(base + path, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return Answer(answer.status, answer.headers["www-authenticate"], answer.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers["www-authenticate"], exc.read())


@dataclass(frozen=True)
class Exporter:
    base: str
    log: Path


@contextmanager
def exporter(settings: Settings, log: Path) -> Iterator[Exporter]:
    """``tracker serve`` logging to ``log``, once it answers /healthz."""
    base = f"http://127.0.0.1:{settings.exporter_port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker.cli", "serve"],
            env=environment(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:

            def healthy() -> bool:
                if process.poll() is not None:
                    raise SystemExit(f"tracker serve exited: {log.read_text()[-3000:]}")
                return http_get(f"{base}/healthz")[0] == 200

            wait_for(healthy, timeout=60, what="the exporter healthy")
            yield Exporter(base, log)
        finally:
            stop(process)
