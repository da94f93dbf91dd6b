from __future__ import annotations

import os
import re
import time
import uuid

from tracker.ids import new_id

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
DAY_MS = 86_400_000
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_new_id_is_a_uuid7() -> None:
    text = new_id(NOW)
    assert UUID7.match(text)
    parsed = uuid.UUID(text)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122  # variant bits 10
    assert parsed.int >> 80 == NOW  # the first 48 bits are the epoch milliseconds


def test_new_id_time_prefix_sorts() -> None:
    ids = [new_id(NOW + delta) for delta in (0, 1, 1_000, DAY_MS, 365 * DAY_MS)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [uuid.UUID(text).int >> 80 for text in ids] == [
        NOW + delta for delta in (0, 1, 1_000, DAY_MS, 365 * DAY_MS)
    ]


def test_new_id_is_random_within_one_millisecond() -> None:
    # More ids than one refill of the random pool holds, so refills are crossed too.
    ids = [new_id(NOW) for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    assert {text[:15] for text in ids} == {new_id(NOW)[:15]}  # same time and version
    assert all(UUID7.match(text) for text in ids)
    # The random bits are spread: every variant digit and every hex digit of rand_a.
    assert {text[19] for text in ids} == set("89ab")
    assert {text[15] for text in ids} == set("0123456789abcdef")


def test_new_id_defaults_to_now() -> None:
    before = time.time_ns() // 1_000_000
    minted = uuid.UUID(new_id()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= minted <= after


def test_a_forked_child_mints_other_ids_than_its_parent() -> None:
    new_id(NOW)  # the parent holds random digits in its pool before forking
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, "\n".join(new_id(NOW) for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split("\n"))
    os.waitpid(child, 0)
    ours = {new_id(NOW) for _ in range(100)}
    assert len(theirs) == 100
    assert not ours & theirs
