from __future__ import annotations

import random

import pytest

from tracker.attribution import MODELS, ONE, Touch, split, weights

DAY = 86_400_000
HALF_LIFE = 7 * DAY
T0 = 1_714_557_600_000  # 2024-05-01T10:00Z


def path(*ages_in_half_lives: int) -> list[Touch]:
    """Touches this many half-lives before T0, oldest first; channels for readability."""
    channels = ("search", "social", "email", "display", "affiliate")
    return [
        Touch(T0 - age * HALF_LIFE, f"c{i}", channels[i % len(channels)])
        for i, age in enumerate(ages_in_half_lives)
    ]


# weights


def shares(model: str, touches: list[Touch], half_life: int) -> list[float]:
    """The weights of ``model`` as shares of one."""
    found = weights(model, touches, half_life)
    return [w / sum(found) for w in found]


@pytest.mark.parametrize("model", MODELS)
def test_no_touches_no_weights(model: str) -> None:
    assert shares(model, [], HALF_LIFE) == []


@pytest.mark.parametrize("model", MODELS)
def test_one_touch_takes_everything(model: str) -> None:
    assert shares(model, path(3), HALF_LIFE) == [1.0]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("last_click", [0.0, 1.0]),
        ("first_click", [1.0, 0.0]),
        ("linear", [0.5, 0.5]),
        # ages 1 and 0 half-lives: raw 0.5 and 1, normalised by 1.5 -> 1/3, 2/3
        ("time_decay", [1 / 3, 2 / 3]),
        ("position_based", [0.5, 0.5]),  # two touches: 50/50
    ],
)
def test_two_touches(model: str, expected: list[float]) -> None:
    assert shares(model, path(1, 0), HALF_LIFE) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("last_click", [0.0, 0.0, 1.0]),
        ("first_click", [1.0, 0.0, 0.0]),
        ("linear", [1 / 3, 1 / 3, 1 / 3]),
        # ages 2, 1, 0 half-lives: raw 1/4, 1/2, 1 (sum 7/4) -> 1/7, 2/7, 4/7
        ("time_decay", [1 / 7, 2 / 7, 4 / 7]),
        ("position_based", [0.4, 0.2, 0.4]),
    ],
)
def test_three_touches(model: str, expected: list[float]) -> None:
    assert shares(model, path(2, 1, 0), HALF_LIFE) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("last_click", [0.0, 0.0, 0.0, 0.0, 1.0]),
        ("first_click", [1.0, 0.0, 0.0, 0.0, 0.0]),
        ("linear", [0.2] * 5),
        # ages 4..0 half-lives: raw 1/16, 1/8, 1/4, 1/2, 1 (sum 31/16) -> 1/31 .. 16/31
        ("time_decay", [1 / 31, 2 / 31, 4 / 31, 8 / 31, 16 / 31]),
        # 40% first, 40% last, the middle three share 20%: 1/15 each
        ("position_based", [0.4, 1 / 15, 1 / 15, 1 / 15, 0.4]),
    ],
)
def test_five_touches(model: str, expected: list[float]) -> None:
    assert shares(model, path(4, 3, 2, 1, 0), HALF_LIFE) == pytest.approx(expected)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("n", [2, 3, 5, 20])
def test_weights_sum_to_one(model: str, n: int) -> None:
    assert sum(shares(model, path(*range(n - 1, -1, -1)), HALF_LIFE)) == pytest.approx(1.0)


def test_time_decay_depends_on_age_only() -> None:
    # Two touches of the same age share equally, whatever their distance from T0.
    assert shares("time_decay", path(3, 3), HALF_LIFE) == pytest.approx([0.5, 0.5])
    # Half a half-life apart: the older weighs 2 ** -0.5 of the newer.
    older, newer = shares(
        "time_decay", [Touch(T0 - HALF_LIFE // 2, None, "x"), *path(0)], HALF_LIFE
    )
    assert older / newer == pytest.approx(2**-0.5)


def test_time_decay_survives_touches_many_half_lives_old() -> None:
    # A short half-life (say 1 hour) against a 30-day lookback: 720 half-lives is
    # fine, but 1100 and 1101 half-lives make both raw weights 0.5 ** 1100 == 0.0.
    # Relative to each other the newer still weighs twice the older: 1/3, 2/3.
    touches = path(1101, 1100)
    assert shares("time_decay", touches, HALF_LIFE) == pytest.approx([1 / 3, 2 / 3])


@pytest.mark.parametrize("n", [2, 3])
def test_unknown_model_raises(n: int) -> None:
    with pytest.raises(ValueError, match="'data_driven'"):
        weights("data_driven", path(*range(n)), HALF_LIFE)


def test_models_listed() -> None:
    assert MODELS == ("last_click", "first_click", "linear", "time_decay", "position_based")
    assert ONE == 1_000_000


# split


@pytest.mark.parametrize(
    ("amount", "shares", "expected"),
    [
        (ONE, [1 / 3, 1 / 3, 1 / 3], [333_334, 333_333, 333_333]),  # 1 left, earliest gets it
        (10_000_000, [1 / 3, 1 / 3, 1 / 3], [3_333_334, 3_333_333, 3_333_333]),
        (ONE, [0.4, 0.2, 0.4], [400_000, 200_000, 400_000]),
        # 1/15 of a million = 66_666.67 three times: two units left, the first two middles
        (ONE, [0.4, 1 / 15, 1 / 15, 1 / 15, 0.4], [400_000, 66_667, 66_667, 66_666, 400_000]),
        # 142_857.14, 285_714.29, 571_428.57: one unit left, to the largest remainder
        (ONE, [1 / 7, 2 / 7, 4 / 7], [142_857, 285_714, 571_429]),
        # 1_428_571.43, 2_857_142.86, 5_714_285.71: two units left, to .86 and .71
        (10_000_000, [1 / 7, 2 / 7, 4 / 7], [1_428_571, 2_857_143, 5_714_286]),
        (3_000_000, [1 / 3, 2 / 3], [1_000_000, 2_000_000]),
        (ONE, [0.0, 1.0], [0, ONE]),
        (7, [1.0], [7]),
        (0, [0.5, 0.5], [0, 0]),
        # shares need not be normalised: 1:3 of 8
        (8, [1.0, 3.0], [2, 6]),
    ],
)
def test_split_by_hand(amount: int, shares: list[float], expected: list[int]) -> None:
    assert split(amount, shares) == expected


@pytest.mark.parametrize(
    ("amount", "shares", "expected"),
    [
        (1, [0.5, 0.5], [1, 0]),
        (1, [1.0, 1.0, 1.0], [1, 0, 0]),
        (2, [1.0, 1.0, 1.0], [1, 1, 0]),
        (5, [1.0, 1.0], [3, 2]),
        (3, [0.25, 0.25, 0.25, 0.25], [1, 1, 1, 0]),
        # exact 0.75, 1.5, 0.75: remainders .75, .5, .75, two units left -> both .75 parts
        (3, [0.25, 0.5, 0.25], [1, 1, 1]),
        # exact 0.25, 0.5, 0.25: one unit left -> the largest remainder, not the earliest
        (1, [0.25, 0.5, 0.25], [0, 1, 0]),
    ],
)
def test_split_ties_go_to_the_earlier_part(
    amount: int, shares: list[float], expected: list[int]
) -> None:
    assert split(amount, shares) == expected
    assert split(amount, shares) == expected  # and every time


def test_split_zero_weights_get_nothing() -> None:
    assert split(10, [0.0, 1.0, 0.0]) == [0, 10, 0]
    assert split(3, [0.0, 1.0, 0.0, 1.0]) == [0, 2, 0, 1]


def test_split_all_zero_or_no_shares() -> None:
    assert split(10, [0.0, 0.0]) == [0, 0]  # nothing to weigh by: nothing handed out
    assert split(10, []) == []


def test_split_sums_exactly_for_random_amounts_and_shares() -> None:
    rng = random.Random(20240501)
    for _ in range(5_000):
        n = rng.randint(1, 25)
        shares = [rng.choice([0.0, rng.random(), rng.random() * 1e-6, 1.0]) for _ in range(n)]
        if max(shares) < 0.01:  # weights() always give one sizeable share
            shares[rng.randrange(n)] = rng.random() + 0.01
        amount = rng.choice([ONE, rng.randint(0, 10**15), rng.randint(0, 100)])
        parts = split(amount, shares)
        assert sum(parts) == amount, (amount, shares)
        assert all(p >= 0 for p in parts)
        total = sum(shares)
        for part, share in zip(parts, shares, strict=True):
            if share == 0.0:
                assert part == 0
            # largest remainder: every part within one unit of its exact share, plus
            # slack for the float shares (about 1e-10 of the amount at worst here)
            assert abs(part - amount * share / total) < 1 + amount * 1e-10


@pytest.mark.parametrize("model", MODELS)
def test_model_weights_split_one_conversion_exactly(model: str) -> None:
    rng = random.Random(model)
    for _ in range(500):
        n = rng.randint(1, 20)
        ages = sorted((rng.randint(0, 60 * DAY) for _ in range(n)), reverse=True)
        touches = [Touch(T0 - age, None, "search") for age in ages]
        shares = weights(model, touches, HALF_LIFE)
        revenue = rng.randint(0, 10**12)
        assert sum(split(ONE, shares)) == ONE
        assert sum(split(revenue, shares)) == revenue
