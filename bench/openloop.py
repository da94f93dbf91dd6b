"""Constant-rate (open-loop) HTTP load, latency counted from when each request was due.

wrk keeps a fixed number of requests in flight (a closed loop): a slow answer
delays the next request, so its percentiles leave out the waiting that a slow
server causes (coordinated omission). wrk2 fixes that but is not packaged in
Debian; this is the same idea in small. Requests fall due at a fixed rate,
whatever the server does, issued each millisecond, and go out over up to
``connections`` keep-alive connections; a request that finds no idle connection
queues, and its latency counts from when it was due. Answers are parsed with
httptools.

The generator's own floor shows when it runs against the bare ceiling server at
the same rate.

``python -m bench.openloop URL --rate 10000 --duration 10`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop


@dataclass(frozen=True, slots=True)
class Result:
    rate: float
    """Requests per second asked for."""
    achieved: float
    """Answers per second received."""
    sent: int
    answered: int
    errors: int
    """Answers other than 200, connections lost, and requests never answered."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


class _Connection(asyncio.Protocol):
    def __init__(self, load: _Load) -> None:
        self.load = load
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.load.idle.append(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:  # httptools callback
        self.load.answered(self, self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)

    def send(self, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(self.load.request)


class _Load:
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.idle: deque[_Connection] = deque()
        self.backlog: deque[float] = deque()
        self.latencies: list[float] = []
        self.sent = 0
        self.errors = 0
        self.busy: set[_Connection] = set()
        self.last_answer = 0.0
        self.stopped = False
        self.drained = asyncio.Event()

    def issue(self, due: float) -> None:
        self.sent += 1
        if self.idle:
            connection = self.idle.popleft()
            self.busy.add(connection)
            connection.send(due)
        else:
            self.backlog.append(due)

    def answered(self, connection: _Connection, status: int) -> None:
        self.last_answer = time.perf_counter()
        self.latencies.append(self.last_answer - connection.due)
        if status != 200:
            self.errors += 1
        if self.backlog:
            connection.send(self.backlog.popleft())
        else:
            self.busy.discard(connection)
            self.idle.append(connection)
            self._check_drained()

    def lost(self, connection: _Connection) -> None:
        if connection in self.busy:
            self.busy.discard(connection)
            self.errors += 1
        if connection in self.idle:
            self.idle.remove(connection)
        self._check_drained()

    def stop(self) -> None:
        """No more requests fall due; :attr:`drained` is set once all are answered."""
        self.stopped = True
        self._check_drained()

    def _check_drained(self) -> None:
        if self.stopped and not self.busy and not self.backlog:
            self.drained.set()


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(url: str, rate: float, duration: float, connections: int, headers: str) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{line.strip()}\r\n" for line in headers.split("\n") if line.strip())
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
    load = _Load(request)
    loop = asyncio.get_running_loop()
    await asyncio.gather(
        *(loop.create_connection(lambda: _Connection(load), host, port) for _ in range(connections))
    )
    started = time.perf_counter()
    end = started + duration
    issued = 0
    while (now := time.perf_counter()) < end:
        # Each tick issues the requests that fell due since the last, at the rate asked
        # for. uvloop's timers count whole milliseconds (a shorter sleep spins and
        # starved this process and the broker beside it: p99 4.6-9.5 ms against the
        # bare ceiling, 1.9-2.1 ms ticking), so the arrivals come in bursts each
        # millisecond and latency counts from the tick: the generator's own lateness
        # is not the server's, while waiting for a free connection still counts.
        due = min(int((now - started) * rate), int(duration * rate))
        while issued < due:
            load.issue(now)
            issued += 1
        await asyncio.sleep(0.001)
    load.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.drained.wait(), 5.0)
    elapsed = max(duration, load.last_answer - started)
    unanswered = load.sent - len(load.latencies)
    for connection in [*load.idle, *load.busy]:
        if connection.transport is not None:
            connection.transport.close()
    ordered = sorted(load.latencies)
    return Result(
        rate=rate,
        achieved=len(ordered) / elapsed,
        sent=load.sent,
        answered=len(ordered),
        errors=load.errors + unanswered,
        p50_ms=_percentile(ordered, 0.50),
        p90_ms=_percentile(ordered, 0.90),
        p99_ms=_percentile(ordered, 0.99),
        p999_ms=_percentile(ordered, 0.999),
        max_ms=ordered[-1] * 1000 if ordered else float("nan"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--headers", default="", help="extra header lines, newline separated")
    args = parser.parse_args()
    result = uvloop.run(run(args.url, args.rate, args.duration, args.connections, args.headers))
    print(orjson.dumps(asdict(result)).decode())


if __name__ == "__main__":
    main()
