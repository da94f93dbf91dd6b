"""A progress bar on stderr for long reads, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Bar:
    """Call with (done, total); draws at most ten times a second, and a last time at the end."""

    def __init__(self, label: str, stream: TextIO | None = None, force: bool = False) -> None:
        self._label = label
        self._stream = stream or sys.stderr
        self._on = force or self._stream.isatty()
        self._drawn = 0.0
        self._open = False

    def __call__(self, done: int, total: int) -> None:
        if not self._on or total <= 0:
            return
        now = time.monotonic()
        if done < total and now - self._drawn < 0.1:
            return
        self._drawn = now
        filled = WIDTH * done // total
        bar = "#" * filled + "-" * (WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done * 100 // total:3d}% {done}/{total}")
        self._open = True
        if done >= total:
            self.close()
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line, if one was drawn."""
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False
