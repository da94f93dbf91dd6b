"""tracker processes run as a user runs them: the CLI, configured by TRACKER_* variables."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from tracker.settings import Settings, env_name

T = TypeVar("T")


def command(
    settings: Settings,
    *args: str,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``tracker <args>`` as a user runs it, configured by the settings' variables."""
    return subprocess.run(
        [sys.executable, "-m", "tracker.cli", *args],
        env=environment(settings),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def command_output(settings: Settings, *args: str) -> str:
    """What ``tracker <args>`` printed; the test fails, showing its errors, unless it exits 0."""
    done = command(settings, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except SystemExit:
            raise
        except Exception as exc:  # the service may not be up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(0.1)
    raise TimeoutError(f"{what} not reached within {timeout} s (last error: {last_error!r})")


def environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for f in dataclasses.fields(settings):
        env[env_name(f.name)] = str(getattr(settings, f.name))
    return env


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sample(url: str, name: str, **labels: str) -> float | None:
    """Sample ``name`` (with at least ``labels``) of the ``/metrics`` page at ``url``;
    None when the page has none."""
    status, page = http_get(url)
    assert status == 200, page[:500]
    for family in text_string_to_metric_families(page.decode()):
        for found in family.samples:
            if found.name == name and labels.items() <= found.labels.items():
                return float(found.value)
    return None


@contextmanager
def tracker(
    command: str, settings: Settings, health_url: str | None, args: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``tracker <command> <args>``; wait until ``health_url`` answers 200; SIGTERM at
    the end."""
    if health_url:
        _wait_closed(command, health_url)
    log_path = Path(tempfile.mkdtemp(prefix="tracker-")) / f"{command}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", command, *args],
        env=environment(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if health_url:

            def healthy() -> bool:
                if process.poll() is not None:
                    raise SystemExit(f"tracker {command} exited with {process.returncode}")
                return http_get(health_url)[0] == 200

            wait_for(
                healthy,
                timeout=60,
                what=f"{command} healthy",
            )
        yield process
    except BaseException:
        log.flush()
        sys.stderr.write(f"--- {command} log ---\n" + log_path.read_text()[-5000:])
        raise
    finally:
        stop(process)
        log.close()


def _wait_closed(command: str, url: str) -> None:
    """Return once nothing listens at ``url``'s port; fail if something keeps listening.

    Its health check would pass on whatever holds the port, and the tests would talk to
    that. A killed server's listening socket may outlive every process a moment: the
    kernel finishes closing it later (CI once saw one accept a connection with no
    process holding it, after the killed forwarder and its worker were both gone).
    """
    try:
        wait_for(lambda: not _listened(url), timeout=5, what=f"{url} closed")
    except TimeoutError:
        raise RuntimeError(f"tracker {command}: something already listens at {url}") from None


def _listened(url: str) -> bool:
    """Whether something accepts connections at ``url``'s port: a server that answers,
    and one too busy or too broken to (its health check would time out, not fail)."""
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    except TimeoutError:  # on loopback: a listener whose backlog is full
        pass
    return True


def health_url(settings: Settings, command: str) -> str:
    """Where ``tracker <command>`` (worker, collector or serve) answers its health check."""
    ports = {
        "worker": settings.worker_port,
        "collector": settings.collector_port,
        "serve": settings.exporter_port,
    }
    return f"http://127.0.0.1:{ports[command]}/healthz"


@contextmanager
def running(settings: Settings, *commands: str) -> Iterator[None]:
    """``tracker <command>`` for each of ``commands``, started in turn, each once healthy."""
    with ExitStack() as stack:
        for command in commands:
            stack.enter_context(tracker(command, settings, health_url(settings, command)))
        yield


def stop(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM ``process`` if it still runs; SIGKILL if it has not exited after ``timeout`` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
