from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tracker.store import StoreUnavailable, read_once


async def _ping(client: Redis) -> bool:
    return bool(await client.ping())


def test_read_once_names_the_redis_that_did_not_answer() -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with pytest.raises(
        StoreUnavailable, match=r"^Redis at redis://127\.0\.0\.1:1/0 did not answer: "
    ):
        read_once(url, _ping)


def test_read_once_lets_the_reads_own_errors_pass() -> None:
    async def refuse(client: Redis) -> None:
        raise ValueError("from must be before to")

    with pytest.raises(ValueError, match="from must be before to"):
        read_once("redis://127.0.0.1:1/0", refuse)
