"""The SDKs' Node and browser packages (tests/clients/package.json), installed on first use.

``npm ci`` from the lock file into ``tests/clients/node_modules`` (ignored by git), once
per lock file: a later run finds the stamp and starts at once. Node itself comes from
Debian (deploy/local/tools.sh node); without it the tests that need it skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.services import ROOT

CLIENTS = ROOT / "tests/clients"
_STAMP = CLIENTS / "node_modules/.installed-lock"


def node() -> str:
    """The ``node`` executable, installed by deploy/local/tools.sh when missing; else skip."""
    if not shutil.which("node") or not shutil.which("npm"):
        subprocess.run(["bash", str(ROOT / "deploy/local/tools.sh"), "node"], capture_output=True)
    found = shutil.which("node")
    if found is None or not shutil.which("npm"):
        pytest.skip("node and npm are not installed and deploy/local/tools.sh could not")
    return found


def node_modules() -> Path:
    """``tests/clients/node_modules``, as the lock file pins it."""
    node()
    lock = (CLIENTS / "package-lock.json").read_bytes()
    if not _STAMP.exists() or _STAMP.read_bytes() != lock:
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENTS,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci in {CLIENTS} failed:\n{result.stderr[-2000:]}")
        _STAMP.write_bytes(lock)
    return CLIENTS / "node_modules"


def run_node(script: Path, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    """Run a Node script of tests/clients with the SDKs on its path, ``stdin`` its input;
    its stdout."""
    node_modules()
    result = subprocess.run(
        [node(), str(script), *args],
        cwd=CLIENTS,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout
