"""Who is who: link segments, owners, guards, and stitching in the fold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_aggregate import DAY, HOUR, MINUTE, T0, conversion, credits, event, run
from tracker.attribution import ONE, Touch
from tracker.events import Event
from tracker.stream.conversions import joined, trimmed
from tracker.stream.identity import Segment, junk, owner, path_of, relinked, who
from tracker.stream.state import Lookups


def identify(event_id: str, device: str, user: str, ts: int = T0) -> Event:
    return event(event_id, "identify", ts=ts, anonymous_id=device, user_id=user, campaign=None)


def reset(event_id: str, device: str, ts: int = T0) -> Event:
    return event(event_id, "reset", ts=ts, anonymous_id=device, campaign=None)


# segments and owners


def test_owner_of_a_touch() -> None:
    segments = [Segment("u1", 10), Segment(None, 20), Segment("u2", 30)]
    assert owner([], 5) is None
    assert owner(segments, 5) == "u1"  # the anonymous past goes to whoever signed in first
    assert owner(segments, 10) == "u1"
    assert owner(segments, 25) is None  # signed out
    assert owner(segments, 30) == "u2"
    assert owner(segments, 99) == "u2"


def test_relinked() -> None:
    assert relinked([], "u1", 10) == [Segment("u1", 10)]
    assert relinked([], None, 10) is None  # signing out a device nobody signed in on
    assert relinked([Segment("u1", 10)], "u1", 20) is None  # already u1's
    assert relinked([Segment("u1", 10)], "u1", 5) is None  # the past is u1's already
    assert relinked([Segment("u1", 10)], "u2", 20) == [Segment("u1", 10), Segment("u2", 20)]
    assert relinked([Segment("u1", 10)], "u2", 10) == [Segment("u2", 10)]  # same since
    # A segment that repeats the one before it is dropped.
    assert relinked([Segment("u1", 10), Segment("u2", 30)], "u2", 20) == [
        Segment("u1", 10),
        Segment("u2", 20),
    ]


def test_junk_ids() -> None:
    for name in ("undefined", " NULL ", "0", "[object Object]", "guest"):
        assert junk(name), name
    assert not junk("u-123")


def test_who_and_path_of() -> None:
    links = {"a1": [Segment("u1", 10)], "a2": [Segment(None, 0)]}
    paths = {
        "u1": [Touch(1, "own", "email")],
        "a1": [Touch(5, "before", "search"), Touch(15, "after", "social")],
        "a2": [Touch(3, "loose", "display")],
    }
    assert who("u1", "a1", 0, links) == ("u1", None)
    assert who(None, "a1", 12, links) == ("u1", None)
    assert who(None, "a9", 12, links) == (None, "a9")
    assert who(None, None, 12, links) == (None, None)
    devices = {"u1": ["a1"]}
    assert sorted(t.campaign or "" for t in path_of(("u1", None), paths, devices, links)) == [
        "after",
        "before",
        "own",
    ]
    assert path_of((None, "a2"), paths, devices, links) == [Touch(3, "loose", "display")]


# stitching in the fold


def test_a_user_id_only_order_is_credited_along_the_anonymous_path() -> None:
    lookups = Lookups()
    run([event("c", "click", ts=T0 - HOUR, anonymous_id="a1", click_id="k")], lookups)
    run([identify("i", "a1", "u1", T0 - MINUTE)], lookups)
    delta = run([conversion("v", user_id="u1", order_id="o1")], lookups)
    assert credits(delta, "campaign", "conversions@last_click") == {"spring": ONE}
    assert lookups.customers.keys() == {"u1"}
    assert lookups.recent == {"u1": [("o1", T0)]}


def test_identify_is_not_traffic() -> None:
    delta = run([identify("i", "a1", "u1")])
    assert delta.health["identity_links"] == 1
    assert delta.health["events"] == 1
    assert not [cell for cell, amount in delta.sums.items() if amount]
    assert not delta.crowds


def test_a_shared_device_gives_each_account_its_own_touches() -> None:
    lookups = Lookups()
    run(
        [
            event("t0", "click", ts=T0 - 50 * MINUTE, anonymous_id="d", campaign="past"),
            identify("i1", "d", "ua", T0 - 45 * MINUTE),
            event("t1", "click", ts=T0 - 40 * MINUTE, anonymous_id="d", campaign="a-time"),
            reset("r", "d", T0 - 35 * MINUTE),
            event("t2", "click", ts=T0 - 32 * MINUTE, anonymous_id="d", campaign="nobody"),
            identify("i2", "d", "ub", T0 - 30 * MINUTE),
            event("t3", "click", ts=T0 - 20 * MINUTE, anonymous_id="d", campaign="b-time"),
        ],
        lookups,
    )
    a = run([conversion("va", user_id="ua")], lookups)
    b = run([conversion("vb", user_id="ub")], lookups)
    assert credits(a, "campaign", "conversions@first_click") == {"past": ONE}
    assert credits(a, "campaign", "conversions@last_click") == {"a-time": ONE}
    assert credits(b, "campaign", "conversions@first_click") == {"b-time": ONE}
    assert lookups.devices == {"ua": ["d"], "ub": ["d"]}


def test_junk_ids_are_refused_and_counted() -> None:
    lookups = Lookups()
    delta = run([identify("i1", "undefined", "u1"), identify("i2", "a1", "null")], lookups)
    assert delta.health["identity_refused_junk_id"] == 2
    assert not lookups.links
    assert not lookups.devices


def test_a_user_absorbs_at_most_max_ids_devices() -> None:
    lookups = Lookups()
    run([identify(f"i{n}", f"a{n}", "u1", T0 + n) for n in range(100)], lookups)
    delta = run([identify("more", "a-extra", "u1", T0 + 200)], lookups)
    assert delta.health["identity_refused_too_many_ids"] == 1
    assert len(lookups.devices["u1"]) == 100
    assert "a-extra" not in lookups.links


def test_a_link_after_the_order_recredits_it_within_the_grace() -> None:
    lookups = Lookups()
    run([event("c", "click", ts=T0 - HOUR, anonymous_id="a1", click_id="k")], lookups)
    first = run([conversion("v", user_id="u1", order_id="o1")], lookups)
    assert credits(first, "channel", "conversions@last_click") == {"direct": ONE}
    delta = run([identify("i", "a1", "u1", T0 + 30 * MINUTE)], lookups)
    assert delta.health["identity_restitched"] == 1
    assert credits(delta, "channel", "conversions@last_click") == {"direct": -ONE, "search": ONE}
    assert credits(delta, "channel", "conversions_reversed@last_click") == {"direct": ONE}
    assert not [c for c in delta.sums if c[2] in ("total", "goal") and delta.sums[c]]
    again = run([identify("i2", "a1", "u1", T0 + 31 * MINUTE)], lookups)
    assert not again.health["identity_restitched"]  # once


def test_a_link_beyond_the_grace_is_counted_not_applied() -> None:
    lookups = Lookups()
    run([event("c", "click", ts=T0 - HOUR, anonymous_id="a1", click_id="k")], lookups)
    run([conversion("v", user_id="u1", order_id="o1")], lookups)
    delta = run([identify("i", "a1", "u1", T0 + 2 * HOUR)], lookups)
    assert delta.health["identity_late_links"] == 1
    assert not delta.health["identity_restitched"]
    assert not credits(delta, "channel", "conversions@last_click")


def test_a_click_only_postback_follows_the_clickers_owner() -> None:
    lookups = Lookups()
    run(
        [
            event("p", "pageview", ts=T0 - DAY, anonymous_id="a1", user_id="u1", campaign="x"),
            event("c", "click", ts=T0 - HOUR, anonymous_id="a1", click_id="k", campaign="y"),
        ],
        lookups,
    )
    delta = run([conversion("v", click_id="k", order_id="o")], lookups)
    assert credits(delta, "campaign", "conversions@first_click") == {"x": ONE}
    assert credits(delta, "campaign", "conversions@last_click") == {"y": ONE}
    assert lookups.customers.keys() == {"u1"}


def test_a_sign_in_sent_by_a_server_client_flagged_as_bot_still_links() -> None:
    lookups = Lookups()
    sign_in = event("i", "identify", anonymous_id="a1", user_id="u1", campaign=None, bot=True)
    delta = run([sign_in], lookups)
    assert delta.health["identity_links"] == 1
    assert lookups.devices == {"u1": ["a1"]}


_touches = st.lists(
    st.builds(
        Touch,
        st.integers(0, 5),
        st.sampled_from([None, "", "a", "b"]),
        st.sampled_from(["search", "email"]),
    ),
    max_size=12,
)


@given(stream=_touches, most=st.integers(1, 5), data=st.data())
def test_a_paths_copies_joined_in_any_order_are_its_newest(
    stream: list[Touch], most: int, data: st.DataObject
) -> None:
    """Where paths are spread, each batch's copy of a path is joined with the one there,
    and may arrive late (a worker that lost its partition): any copies, joined in any
    order, any number of times, give the newest copy."""
    copies = [trimmed(stream[:k], most) for k in range(len(stream) + 1)]
    order = data.draw(st.lists(st.sampled_from(copies), min_size=1))
    got: list[Touch] = []
    for copy in [*order, copies[-1]]:
        got = joined(got, copy, most)
    assert got == copies[-1]
    assert joined(copies[-1], got, most) == got
