"""What the HTTP stand-ins the tests run (an ad platform, an OAuth provider) share."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and keeps quiet: the tests read what was
    received instead of a log."""

    def answer(self, status: int, body: Any) -> None:
        content = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass
