from __future__ import annotations

import pytest

from tests.e2e import chromium as browser


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a headless-capable Chromium (:func:`tests.e2e.chromium.executable`)."""
    return browser.executable()
