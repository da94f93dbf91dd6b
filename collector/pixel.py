"""The tracking pixel: a transparent 1x1 GIF that no cache keeps."""

from __future__ import annotations

GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
"""The smallest transparent GIF89a: 1x1, one transparent colour."""

NO_CACHE_HEADERS = [
    (b"cache-control", b"no-cache, no-store, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
