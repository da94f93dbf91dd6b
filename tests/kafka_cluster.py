"""A Kafka cluster of three brokers on this machine, for tests that lose brokers.

Run by ``deploy/local/kafka-cluster.sh``: a controller and three brokers, each a JVM of
its own, so a test can stop, kill or pause one broker by its number (1 to 3) and bring
it back. Beside, not instead of, the single broker the other tests use.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from tests.services import ROOT

SCRIPT = ROOT / "deploy/local/kafka-cluster.sh"

Act = Literal["start", "stop", "kill", "pause", "resume"]
"""What the script does to brokers: start (and wait until live), controlled stop (SIGTERM),
kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT)."""


def unstartable() -> str | None:
    """Why the cluster cannot be started here, or None when it can."""
    if shutil.which("java") is None:
        return "no java on PATH: deploy/local/kafka-cluster.sh runs Kafka on Java 17+"
    return None


def _script(*args: str, timeout: float = 300) -> str:
    """The script's output; it fails the test, its errors shown, unless it exits 0."""
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"kafka-cluster.sh {' '.join(args)}:\n{done.stderr[-5000:]}"
    return done.stdout


@dataclass(frozen=True, slots=True)
class Cluster:
    bootstrap: str
    """The brokers' ``host:port`` list."""

    def act(self, act: Act, *brokers: int) -> None:
        """Do ``act`` to ``brokers`` and return once done (a start: once they are live)."""
        _script(f"{act}-broker", *map(str, brokers))

    def acting(self, act: Act, *brokers: int) -> subprocess.Popen[bytes]:
        """:meth:`act` started, not awaited: ``wait()`` for its exit status."""
        return subprocess.Popen(["bash", str(SCRIPT), f"{act}-broker", *map(str, brokers)])

    def heal(self) -> None:
        """Every broker running and live again, whatever was done to them."""
        _script("start")


@contextmanager
def running() -> Iterator[Cluster]:
    """The cluster, started unless it runs; stopped at the end unless it ran before."""
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, check=False)
    _script("start")
    try:
        yield Cluster(_script("bootstrap").strip())
    finally:
        if status.returncode != 0:
            _script("stop")
