"""Redis clients that outlive a Redis restart: every process makes its clients here.

redis-py keeps connections in a pool. After Redis restarts (a failover, a deploy),
each pooled connection is dead, and without a retry policy naming connection errors
the next pipeline on it fails even though Redis answers again: the exporter answered
one 500 per dead connection that way (tests/e2e/test_faults.py restarts Redis). A
command that failed on a closed connection is sent again on a fresh one, up to three
times with a short jittered backoff; errors Redis itself answers are never retried.
A transaction under ``WATCH`` is not sent again: redis-py raises ``WatchError`` for it
instead, and its caller reads and decides again, as it does when a key moved.
"""

from __future__ import annotations

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

_RETRIED = [ConnectionError, TimeoutError]
_ATTEMPTS = 3


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.05, cap=1.0)


def async_client(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        url, retry=AsyncRetry(_backoff(), _ATTEMPTS), retry_on_error=_RETRIED
    )


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, retry=Retry(_backoff(), _ATTEMPTS), retry_on_error=_RETRIED)


__all__ = ["async_client", "sync_client"]
