"""The services' OpenAPI descriptions name exactly the routes they serve."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.app import Collector
from tracker import asgi
from tracker.asgi import Request
from tracker.export.server import build
from tracker.openapi import Description
from tracker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def collector_app() -> asgi.App:
    return Collector(Settings()).app()


def exporter_app() -> asgi.App:
    return build(Settings())


SERVICES: dict[str, tuple[Callable[[], asgi.App], Path]] = {
    "collector": (collector_app, ROOT / "collector/openapi.yaml"),
    "tracker.export": (exporter_app, ROOT / "tracker/export/openapi.yaml"),
}


def described(path: Path) -> dict[str, frozenset[str]]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return {
        route: frozenset(m.upper() for m in operations if m in methods)
        for route, operations in document["paths"].items()
    }


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_every_route_is_described_and_nothing_else(package: str) -> None:
    make_app, path = SERVICES[package]
    app = make_app()
    served = {route: methods - {"HEAD"} for route, methods in app.routes.items()}
    assert described(path) == served


@pytest.mark.parametrize("package", sorted(SERVICES))
def test_the_packaged_description_is_served_as_yaml(package: str) -> None:
    scope: dict[str, Any] = {"method": "GET", "path": "/openapi.yaml", "headers": []}
    response = asyncio.run(Description(package).serve(Request(scope, _no_body)))
    assert response.status == 200
    assert response.content_type == b"application/yaml"
    assert response.body == SERVICES[package][1].read_bytes()


def test_docs_link_to_the_packaged_descriptions() -> None:
    docs = ROOT / "docs/openapi"
    assert (docs / "collector.yaml").resolve() == SERVICES["collector"][1]
    assert (docs / "exporter.yaml").resolve() == SERVICES["tracker.export"][1]


async def _no_body() -> asgi.Message:
    return {"type": "http.request", "body": b"", "more_body": False}
