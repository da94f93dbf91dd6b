"""Headless Chromium for the end-to-end tests: where it is, the flags every run shares, and
a client of the DevTools protocol for tests that look inside the browser."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.services import ROOT

HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Headless, and asking nothing of the network on its own account."""


def _find() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def executable() -> str:
    """Debian's chromium, installed by deploy/local/tools.sh when missing; else the test skips."""
    if found := _find():
        return found
    script = ROOT / "deploy/local/tools.sh"
    result = subprocess.run(["bash", str(script), "chromium"], capture_output=True, text=True)
    if found := _find():
        return found
    pytest.skip(
        f"chromium is not installed and {script.name} could not install it: "
        f"{(result.stderr or result.stdout)[-400:]}"
    )


class DevTools:
    """The DevTools protocol over Chromium's ``--remote-debugging-pipe``: no port to find
    and no websocket client to depend on. Messages are JSON, each ended by a NUL byte."""

    def __init__(self, commands: int, replies: int) -> None:
        self._commands = commands
        self._ids = itertools.count(1)
        self._arrived = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._closed = False
        self._events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, args=(replies,), daemon=True)
        self._reader.start()

    def _read(self, replies: int) -> None:
        pending = b""
        while chunk := os.read(replies, 1 << 16):
            *messages, pending = (pending + chunk).split(b"\0")
            with self._arrived:
                for message in map(json.loads, messages):
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                self._arrived.notify_all()
        with self._arrived:
            self._closed = True
            self._arrived.notify_all()

    def call(
        self, method: str, session: str | None = None, timeout: float = 30.0, **params: Any
    ) -> dict[str, Any]:
        """The result of ``method``, sent to the browser or to a page's ``session``."""
        number = next(self._ids)
        message = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        with self._arrived:
            if not self._arrived.wait_for(lambda: number in self._replies or self._closed, timeout):
                raise TimeoutError(f"{method}: no answer from Chromium within {timeout} s")
            if self._closed:
                raise RuntimeError(f"{method}: Chromium closed the protocol pipe")
            reply = self._replies.pop(number)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    def events(self, method: str, session: str) -> list[dict[str, Any]]:
        """The ``params`` of the events named ``method`` that ``session`` sent, in order."""
        with self._arrived:
            return [
                e["params"]
                for e in self._events
                if (e["method"], e.get("sessionId")) == (method, session)
            ]

    def wait(self, method: str, session: str, count: int, timeout: float = 30.0) -> None:
        """Until ``session`` has sent ``count`` events named ``method``."""
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: len(self.events(method, session)) >= count, timeout
            ):
                raise TimeoutError(f"{count} {method} not seen within {timeout} s")

    def join(self) -> None:
        """Wait for the reader to see the pipe closed (the browser gone), before closing it."""
        self._reader.join(timeout=15)


class Tab:
    """One page of a :func:`devtools` browser: its own protocol session."""

    def __init__(self, browser: DevTools) -> None:
        self.browser = browser
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        attached = browser.call("Target.attachToTarget", targetId=target, flatten=True)
        self.session: str = attached["sessionId"]
        self._loads = 0
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, self.session, **params)

    def events(self, method: str) -> list[dict[str, Any]]:
        """The ``params`` of this page's events named ``method``, in order."""
        return self.browser.events(method, self.session)

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its ``load`` event."""
        self.call("Page.navigate", url=url)
        self._loads += 1
        self.browser.wait("Page.loadEventFired", self.session, self._loads)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page; a thrown error fails the test."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise AssertionError(f"{expression}: {details.get('exception', details)}")
        return answer["result"].get("value")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM Chromium and its helpers (its process group), SIGKILL if they linger."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def devtools(executable: str, profile: Path, *flags: str) -> Iterator[DevTools]:
    """Headless Chromium with ``profile`` as its user data directory, driven by the protocol;
    its output goes to ``profile/chromium.log``."""
    commands_read, commands = os.pipe()
    replies, replies_write = os.pipe()
    # Chromium reads the protocol on fd 3 and writes it on fd 4; bash (not sh: any fd number)
    # puts the pipes there.
    redirect = f'exec "$0" "$@" 3<&{commands_read} 4>&{replies_write}'
    with (profile / "chromium.log").open("wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", redirect, executable, *HEADLESS, "--remote-debugging-pipe",
             f"--user-data-dir={profile}", *flags, "about:blank"],
            pass_fds=(commands_read, replies_write),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its renderer and GPU helpers go with it
        )  # fmt: skip
    os.close(commands_read)
    os.close(replies_write)
    browser = DevTools(commands, replies)
    try:
        yield browser
    finally:
        stop_group(process)
        browser.join()
        os.close(commands)
        os.close(replies)
