"""Headless Chromium for the end-to-end tests: where it is, and the flags every run shares."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.services import ROOT

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
