"""HTTP load on a collector: pixel hits and batches, each event with an id and a cost we know.

Lanes (threads, a kept-alive connection each) send in turn a pixel hit and a batch of
``batch`` events, all impressions of one campaign, paced to ``rate`` events a second
together. A request answered other than 2xx, or not at all, is sent again with the same
event ids until it is answered 2xx, as an SDK retries: the collector's 503 means "not
taken, try again", and an event that reached Kafka anyway is then counted once, by id.
So every event ends acknowledged (unless the load is stopped before), and what the store
must hold is known exactly: :attr:`Load.acknowledged`, each id with its cost.

The pixel hits are all one visitor's, so one partition's (:func:`hot_partition`): a busy
partition whose leader a scenario can go after.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import orjson

from tracker.market import BROWSER
from tracker.records import murmur2

HOT_VISITOR = "faults-hot-visitor"
"""The anonymous id of every pixel hit."""
_PIXEL_EVERY = 2
"""One request in this many is a pixel hit, the others batches."""


def hot_partition(partitions: int) -> int:
    """The partition of the pixel hits, as the collector's partitioner picks it."""
    return (murmur2(HOT_VISITOR.encode()) & 0x7FFFFFFF) % partitions


def batch_visitor(event_id: str) -> str:
    """The anonymous id of an event sent in a batch: its own, one event a visitor."""
    return f"v-{event_id}"


def cost_of(lane: int, n: int) -> int:
    """The cost in micro-units of the ``n``-th event of ``lane``: 1 to 997, varied, so that
    a loss and a double count cannot cancel out in the spend."""
    return 1 + (lane * 1_000_003 + n) * 7919 % 997


@dataclass(frozen=True, slots=True)
class Answer:
    sent: float
    """time.monotonic() when the request went."""
    at: float
    """time.monotonic() when its answer came."""
    status: int
    """HTTP status; 0 when none came (refused, reset, timed out)."""
    events: int
    kind: str
    """pixel or batch."""


@dataclass
class Lane:
    number: int
    acknowledged: dict[str, int] = field(default_factory=dict)
    costs: dict[str, int] = field(default_factory=dict)
    """Every event id made, acknowledged or not, with its cost."""
    pixels: set[str] = field(default_factory=set)
    """The event ids sent as pixel hits (:data:`HOT_VISITOR`'s), not in batches."""
    answers: list[Answer] = field(default_factory=list)
    error: BaseException | None = None


class Load:
    """Steady traffic to the collector at ``port`` until :meth:`stop`, or ``total`` events.

    ``rate`` None sends as fast as the lanes are answered. Event ids are
    ``<ids>-<lane>-<n>`` (``ids`` defaults to the campaign): two loads of one campaign
    need different ``ids``. :attr:`acknowledged` and :attr:`costs` are read once the
    lanes are done (:meth:`stop`, :meth:`wait`); :meth:`answers` at any time.
    """

    def __init__(
        self,
        port: int,
        campaign: str,
        rate: float | None = 800.0,
        *,
        lanes: int = 4,
        batch: int = 20,
        total: int | None = None,
        ids: str | None = None,
        clicks: bool = False,
    ) -> None:
        """``clicks``: clicks, each naming a click id (its event id), not impressions."""
        self._port = port
        self._campaign = campaign
        self._clicks = clicks
        self._ids = ids or campaign
        self._lane_rate = None if rate is None else rate / lanes
        self._batch = batch
        self._lanes = [Lane(number) for number in range(lanes)]
        self._left = itertools.count() if total is None else iter(range(total))
        self._budget = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(lane,), daemon=True) for lane in self._lanes
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, retry_for: float = 120.0) -> None:
        """No new events; requests not yet acknowledged are retried ``retry_for`` s more.
        Idempotent."""
        self._stopping.set()
        deadline = time.monotonic() + retry_for
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        errors = [lane.error for lane in self._lanes if lane.error is not None]
        if errors:
            raise RuntimeError(f"a load lane failed: {errors[0]!r}") from errors[0]

    def wait(self, timeout: float) -> bool:
        """Wait until ``total`` events are made and answered 2xx; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def acknowledged(self) -> dict[str, int]:
        """Each event id answered 2xx, with its cost in micro-units."""
        return {k: v for lane in self._lanes for k, v in lane.acknowledged.items()}

    @property
    def costs(self) -> dict[str, int]:
        """Each event id made, answered 2xx or not, with its cost."""
        return {k: v for lane in self._lanes for k, v in lane.costs.items()}

    def visitor(self, event_id: str) -> str:
        """The anonymous id ``event_id`` was sent with."""
        pixel = any(event_id in lane.pixels for lane in self._lanes)
        return HOT_VISITOR if pixel else batch_visitor(event_id)

    def answers(self) -> list[Answer]:
        """Every answer so far, in the order they came."""
        return sorted((a for lane in self._lanes for a in list(lane.answers)), key=lambda a: a.at)

    def _take(self, count: int) -> int:
        """How many of ``count`` events the ``total`` still allows."""
        with self._budget:
            return sum(1 for _ in itertools.islice(self._left, count))

    def _run(self, lane: Lane) -> None:
        connection: http.client.HTTPConnection | None = None
        pending: tuple[str, list[str]] | None = None
        made = 0
        next_at = time.monotonic()
        try:
            for n in itertools.count():
                if pending is None:
                    if self._stopping.is_set():
                        return
                    kind = "pixel" if n % _PIXEL_EVERY == 0 else "batch"
                    count = self._take(1 if kind == "pixel" else self._batch)
                    if count == 0:
                        return
                    ids = [f"{self._ids}-{lane.number}-{made + i}" for i in range(count)]
                    for i, event_id in enumerate(ids):
                        lane.costs[event_id] = cost_of(lane.number, made + i)
                    made += count
                    pending = (kind, ids)
                    if kind == "pixel":
                        lane.pixels.update(ids)
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
                kind, ids = pending
                sent = time.monotonic()
                status = self._send(connection, kind, ids, lane.costs)
                lane.answers.append(Answer(sent, time.monotonic(), status, len(ids), kind))
                if 200 <= status < 300:
                    for event_id in ids:
                        lane.acknowledged[event_id] = lane.costs[event_id]
                    pending = None
                else:
                    if status == 0:
                        connection.close()
                        connection = None
                    time.sleep(0.1)
                if self._lane_rate is not None:
                    next_at = max(next_at + len(ids) / self._lane_rate, time.monotonic() - 1.0)
                    time.sleep(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # seen by stop()
            lane.error = exc
        finally:
            if connection is not None:
                connection.close()

    def _send(
        self,
        connection: http.client.HTTPConnection,
        kind: str,
        ids: list[str],
        costs: dict[str, int],
    ) -> int:
        def event(event_id: str, visitor: str) -> dict[str, str]:
            made = {
                "type": "click" if self._clicks else "impression",
                "event_id": event_id,
                "campaign": self._campaign,
                "cost": f"0.{costs[event_id]:06d}",
                "anonymous_id": visitor,
            }
            return made | {"click_id": event_id} if self._clicks else made

        headers = {"user-agent": BROWSER}
        try:
            if kind == "pixel":
                query = urllib.parse.urlencode(event(ids[0], HOT_VISITOR))
                connection.request("GET", f"/p.gif?{query}", headers=headers)
            else:
                body = orjson.dumps([event(i, batch_visitor(i)) for i in ids])
                headers["content-type"] = "application/json"
                connection.request("POST", "/v1/events", body, headers)
            answer = connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException):
            return 0
        if kind == "batch" and answer.status == 200:
            accepted = orjson.loads(body)["accepted"]
            if accepted != len(ids):  # the load's own events are valid: a bug here or there
                raise RuntimeError(f"batch of {len(ids)} answered 200 with {accepted} accepted")
        return answer.status
