"""``GET /openapi.yaml``: the OpenAPI description a service serves of itself.

Each service's description ships inside its package (``collector/openapi.yaml``,
``tracker/export/openapi.yaml``; ``docs/openapi/`` links to them), so an installed
service, in a container or not, describes exactly the routes it runs.
"""

from __future__ import annotations

from importlib import resources

from tracker.asgi import Request, Response

CONTENT_TYPE = b"application/yaml"
"""RFC 9512."""


class Description:
    """The handler serving ``openapi.yaml`` of ``package``, read once."""

    def __init__(self, package: str) -> None:
        self.body = resources.files(package).joinpath("openapi.yaml").read_bytes()

    async def serve(self, request: Request) -> Response:
        return Response(self.body, 200, CONTENT_TYPE, [(b"cache-control", b"no-cache")])


__all__ = ["Description"]
