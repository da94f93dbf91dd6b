from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ConnectionError

from tracker.channels import CHANNELS
from tracker.redis_clients import Reader, async_client, async_reader, sync_reader
from tracker.seen import (
    GENERATION_S,
    SEEN_TTL_S,
    SHARDS,
    seen_digest,
    seen_expiry,
    seen_generations,
    shard_of,
    shard_prefix,
)
from tracker.settings import Settings
from tracker.store import (
    CLICK_SHARDS,
    Keys,
    StoreUnavailable,
    click_prefix,
    click_prefixes,
    group_people,
    people_by_prefix,
    people_prefix,
    people_prefixes,
    read_once,
    tally_prefix,
)


async def _ping(client: Reader) -> bool:
    return bool(await client.ping())


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
def test_read_once_names_the_redis_that_did_not_answer_but_not_its_password(
    scheme: str,
) -> None:
    url = f"{scheme}://me:secret@127.0.0.1:1/0"  # nothing listens on port 1
    with pytest.raises(StoreUnavailable) as refused:
        read_once(Settings(redis_url=url), _ping, async_reader)
    shown = f"Redis at {scheme}://me:***@127.0.0.1:1/0 did not answer: "
    assert str(refused.value).startswith(shown)
    assert "secret" not in str(refused.value)


def test_a_cluster_no_node_of_which_answers_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="Redis Cluster cannot be connected"):
        sync_reader(Settings(redis_url="redis+cluster://127.0.0.1:1/0"))


def test_read_once_lets_the_reads_own_errors_pass() -> None:
    async def refuse(client: Redis) -> None:
        raise ValueError("from must be before to")

    with pytest.raises(ValueError, match="from must be before to"):
        read_once(Settings(redis_url="redis://127.0.0.1:1/0"), refuse, async_client)


# Seen generations: which days of counted ids a lookup searches, and for how long.

DAY = 20_000
"""A generation number: 2024-10-04 (UTC), counted from the epoch in GENERATION_S."""
MIDNIGHT = DAY * GENERATION_S


@pytest.mark.parametrize("counted_at", [MIDNIGHT, MIDNIGHT + 3_600, MIDNIGHT + GENERATION_S - 1])
def test_an_id_is_searched_and_kept_for_48_hours_after_it_was_counted(counted_at: int) -> None:
    generation = counted_at // GENERATION_S
    for later in range(counted_at, counted_at + SEEN_TTL_S + 1, 97):
        assert generation in seen_generations(later)
    assert generation in seen_generations(counted_at + SEEN_TTL_S)
    assert seen_expiry(generation) > counted_at + SEEN_TTL_S


def test_a_generation_expires_once_it_is_no_longer_searched() -> None:
    last_searched = MIDNIGHT + GENERATION_S + SEEN_TTL_S - 1
    assert DAY in seen_generations(last_searched)
    assert DAY not in seen_generations(last_searched + 1)
    assert last_searched < seen_expiry(DAY) <= last_searched + 2 * 3_600


def test_a_worker_whose_clock_is_behind_searches_the_day_one_ahead_writes() -> None:
    assert DAY + 1 in seen_generations(MIDNIGHT + GENERATION_S - 1)
    assert list(seen_generations(MIDNIGHT + GENERATION_S - 1)) == [DAY - 2, DAY - 1, DAY, DAY + 1]


def test_a_digest_is_the_128_bit_blake2b_of_the_event_id() -> None:
    assert seen_digest("e1") == hashlib.blake2b(b"e1", digest_size=16).digest()
    assert seen_digest("é") == hashlib.blake2b("é".encode(), digest_size=16).digest()


def test_each_shard_has_a_slot_of_its_own_on_a_cluster_and_sits_under_the_prefix_off_one() -> None:
    tagged = [shard_prefix("{tracker}", shard) for shard in range(SHARDS)]
    assert tagged[3] == "{tracker:d3}"
    slots = {key_slot(f"{prefix}:dedup:1".encode()) for prefix in tagged}
    assert len(slots | {key_slot(b"{tracker}:src:events:0")}) == SHARDS + 1
    assert shard_prefix("tracker", 3) == "tracker:d3"  # found by a scan of "tracker:*"
    assert shard_prefix("app:{t}:x", 0) == "app:{t:d0}:x"


def test_ids_spread_evenly_over_the_shards() -> None:
    sizes = [0] * SHARDS
    for i in range(1_000 * SHARDS):
        sizes[shard_of(seen_digest(f"event-{i}"))] += 1
    assert min(sizes) > 900
    assert max(sizes) < 1_100


def test_a_partitions_sums_have_a_hash_tag_of_their_own_only_on_a_cluster() -> None:
    assert tally_prefix("{tracker}", 3) == "{tracker:p3}"
    assert tally_prefix("shop:{tracker}", 3) == "shop:{tracker:p3}"
    assert tally_prefix("tracker", 3) == "tracker"  # one Redis: nothing to spread over
    tally = Keys(tally_prefix("{tracker}", 3))
    slots = {
        key_slot(name.encode()) for name in (tally.bucket("1m", 0, "total"), tally.source("t", 3))
    }
    assert len(slots) == 1
    assert slots != {key_slot(Keys("{tracker}").source("t", 3).encode())}


def test_people_spread_by_dimension_and_value_over_sixteen_tags_only_on_a_cluster() -> None:
    assert people_prefix("tracker", "campaign", "spring") == "tracker"
    prefixes = Counter(people_prefix("{tracker}", "campaign", f"c{i}") for i in range(16_000))
    assert set(prefixes) == set(people_prefixes("{tracker}")[1:])
    assert len(prefixes) == CLICK_SHARDS
    assert min(prefixes.values()) > 900  # evenly
    assert not set(prefixes) & set(click_prefixes("{tracker}"))
    assert people_prefixes("tracker") == ["tracker"]
    # A person in a dozen HyperLogLogs (windows x dimensions): one group a tag, each of
    # its audiences under the tag of its dimension and value, every window's together.
    total = people_prefix("{tracker}", "total", "total")
    channel = next(c for c in CHANNELS if people_prefix("{tracker}", "channel", c) != total)
    windows = ("1m", "1h", "1d", "all")
    dims = (("total", "total"), ("channel", channel))
    audiences = [((w, 0, d, v), 9) for w in windows for d, v in dims]
    split = people_by_prefix("{tracker}", [(audiences, ["anna", "ben"])])
    assert set(split) == {total, people_prefix("{tracker}", "channel", channel)}
    assert split[total] == [
        ([(Keys(total).uniques(w, 0, "total", "total"), 9) for w in windows], ["anna", "ben"])
    ]
    assert people_by_prefix("tracker", [(audiences, ["anna"])]) == {
        "tracker": [([(Keys("tracker").uniques(*a), 9) for a, _ in audiences], ["anna"])]
    }


def test_clicks_spread_by_id_over_sixteen_tags_of_their_own_only_on_a_cluster() -> None:
    assert click_prefix("tracker", "k1") == "tracker"  # one Redis: nothing to spread over
    prefixes = Counter(click_prefix("{tracker}", f"k{i}") for i in range(16_000))
    assert set(prefixes) == set(click_prefixes("{tracker}")[1:])
    assert len(prefixes) == CLICK_SHARDS
    assert min(prefixes.values()) > 900  # evenly
    assert click_prefix("{tracker}", "k1") == click_prefix("{tracker}", "k1")
    assert click_prefixes("tracker") == ["tracker"]
    slots = {key_slot(prefix.encode()) for prefix in prefixes}
    assert len(slots) == CLICK_SHARDS  # each tag a slot, which the primaries share


@given(
    st.dictionaries(
        st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=5, unique=True).map(tuple),
        st.sets(st.sampled_from([f"p{n}" for n in range(12)]), min_size=1),
        max_size=6,
    )
)
def test_people_are_grouped_once_each_with_every_hyperloglog_of_their_crowds(
    crowds: dict[tuple[str, ...], set[str]],
) -> None:
    want: dict[str, set[str]] = {}
    for targets, people in crowds.items():
        for person in people:
            want.setdefault(person, set()).update(targets)
    got: dict[str, set[str]] = {}
    for targets, members in group_people(crowds):
        assert len(set(targets)) == len(targets)  # each HyperLogLog named once a group
        for person in members:
            assert person not in got  # each person once
            got[person] = set(targets)
    assert got == want
