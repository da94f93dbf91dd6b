"""The suppression list: hashes checked against ``sha256sum``, and a collector's copy of
the list refreshed from a real Redis (those tests are marked ``services``)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.conftest import with_redis
from tracker.events import Event
from tracker.settings import Settings
from tracker.store import Keys
from tracker.suppression import Suppressions, erased_hash, ids_of

# printf 'user_id\x1fu-42' | sha256sum, and so on.
U42 = "9c13a4fe61fefb26cac11ebcbd3ec1dba62aafd6a7d85006f4e5b7baa10e7c7e"
ANON_U42 = "2ab62c5936edf3d687c2a9bdbc769c42164fc77b89fc538216350ef1885ea620"
USER_E_ACUTE = "bddcc7b0321746945774b4117dd08658bbb0492b78b759f532922d3db73188fe"


def event(anonymous_id: str | None = None, user_id: str | None = None) -> Event:
    return Event(event_id="e", type="pageview", ts=0, received_at=0, channel="direct",
                 anonymous_id=anonymous_id, user_id=user_id)  # fmt: skip


def test_erased_hash_is_sha256_of_kind_and_id() -> None:
    assert erased_hash("user_id", "u-42") == U42
    assert erased_hash("user_id", "é") == USER_E_ACUTE  # UTF-8


def test_the_same_id_of_another_kind_is_another_person() -> None:
    assert erased_hash("anonymous_id", "u-42") == ANON_U42 != U42


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of user_id, anonymous_id"):
        erased_hash("email", "a@b.example")


def test_ids_of_names_each_id_an_event_carries() -> None:
    assert ids_of(event("a-1", "u-1")) == [("anonymous_id", "a-1"), ("user_id", "u-1")]
    assert ids_of(event(user_id="u-1")) == [("user_id", "u-1")]
    assert ids_of(event()) == []


def test_nothing_is_suppressed_before_a_refresh() -> None:
    assert not Suppressions(Keys("t")).suppressed(event("a-1", "u-1"))


@pytest.mark.services
def test_a_refresh_reads_what_was_erased_and_then_only_what_is_new(settings: Settings) -> None:
    async def body(redis: Redis, keys: Keys) -> None:
        copy = Suppressions(keys)
        await redis.rpush(keys.erasures, erased_hash("user_id", "u-1"))
        assert await copy.refresh(redis) == 1
        assert copy.suppressed(event("a-9", "u-1"))  # either id suppresses the event
        assert not copy.suppressed(event("a-9", "u-2"))
        assert not copy.suppressed(event("u-1"))  # an anonymous id u-1 is someone else
        assert await copy.refresh(redis) == 0
        await redis.rpush(keys.erasures, erased_hash("anonymous_id", "a-9"))
        assert await copy.refresh(redis) == 1
        assert copy.suppressed(event("a-9"))
        assert len(copy) == 2

    with_redis(settings, body)


@pytest.mark.services
def test_a_list_shorter_than_what_was_read_is_read_again_and_nothing_is_forgotten(
    settings: Settings,
) -> None:
    async def body(redis: Redis, keys: Keys) -> None:
        copy = Suppressions(keys)
        await redis.rpush(keys.erasures, *(erased_hash("user_id", f"u-{i}") for i in range(3)))
        assert await copy.refresh(redis) == 3
        # Restored from an older copy, say: one entry, and a new one after it.
        await redis.delete(keys.erasures)
        await redis.rpush(keys.erasures, erased_hash("user_id", "u-new"))
        assert await copy.refresh(redis) == 1
        assert copy.suppressed(event(user_id="u-new"))
        assert copy.suppressed(event(user_id="u-2"))
        await redis.rpush(keys.erasures, erased_hash("user_id", "u-newer"))
        assert await copy.refresh(redis) == 1  # reading on from the list's new end
        assert len(copy) == 5

    with_redis(settings, body)


@pytest.mark.services
def test_catching_up_reads_to_the_count_given_and_never_past_it(settings: Settings) -> None:
    """The worker reads the count with its offsets, then the entries up to it: entries
    appended after that read wait for the next batch (whose watch they fail)."""

    async def body(redis: Redis, keys: Keys) -> None:
        copy = Suppressions(keys)
        await copy.catch_up(redis, 0)  # nothing erased: nothing read, not the whole list
        await redis.rpush(keys.erasures, *(erased_hash("user_id", f"u-{i}") for i in range(3)))
        await copy.catch_up(redis, 0)
        assert (copy.known, len(copy)) == (0, 0)
        await copy.catch_up(redis, 2)
        assert (copy.known, len(copy)) == (2, 2)
        assert not copy.suppressed(event(user_id="u-2"))
        await copy.catch_up(redis, 3)
        assert copy.suppressed(event(user_id="u-2"))
        assert copy.known == 3

    with_redis(settings, body)
