"""Attribution comparison: credit shifts against last click, checked by hand."""

from __future__ import annotations

from tracker.attribution import MODELS
from tracker.decide.comparison import compare_models, verdict

ONE = 1_000_000


def credited(spend: int, **by_model: tuple[float, float]) -> dict[str, int]:
    """Metrics with (conversions, revenue) per model; models not named get last click's."""
    base = by_model["last_click"]
    found = {"spend": spend * ONE}
    for model in MODELS:
        conversions, revenue = by_model.get(model, base)
        found[f"conversions@{model}"] = round(conversions * ONE)
        found[f"revenue@{model}"] = round(revenue * ONE)
    return found


def test_shifts_against_last_click() -> None:
    sums = {
        "display": credited(100, last_click=(2, 100), first_click=(4, 300), linear=(3, 150)),
        "search": credited(200, last_click=(8, 800), first_click=(6, 600), linear=(7, 750)),
    }
    rows = {r["value"]: r for r in compare_models(sums, "channel")}
    display = rows["display"]
    assert display["spend"] == 100.0
    assert display["models"]["last_click"] == {
        "conversions": 2,
        "revenue": 100.0,
        "cpa": 50.0,
        "roas": 1.0,
    }
    first = display["models"]["first_click"]
    assert first["shift"]["conversions"] == {"absolute": 2, "relative": 1.0}
    assert first["shift"]["revenue"] == {"absolute": 200.0, "relative": 2.0}
    assert first["shift"]["cpa"] == {"absolute": -25.0, "relative": -0.5}
    assert first["shift"]["roas"] == {"absolute": 2.0, "relative": 2.0}
    assert "shift" not in display["models"]["last_click"]
    # display gains under every other model (+0% under time_decay/position_based = same)
    assert display["verdict"].startswith("display: the models disagree")
    assert rows["search"]["models"]["linear"]["shift"]["revenue"]["relative"] == -0.0625


def test_verdicts() -> None:
    def shifts(*relative: float | None) -> dict[str, dict[str, float | None]]:
        return {
            f"m{i}": {"absolute": 0.0 if r is None else r * 100, "relative": r}
            for i, r in enumerate(relative)
        }

    assert verdict("display", shifts(0.2, 0.4)) == (
        "last click under-credits display: other models give it +20% to +40% revenue"
    )
    assert verdict("search", shifts(-0.1, -0.3)) == (
        "last click over-credits search: other models give it -30% to -10% revenue"
    )
    assert verdict("email", shifts(0.01, -0.02)).startswith("email: about the same")
    assert verdict("social", shifts(0.3, -0.3)).startswith("social: the models disagree")
    assert verdict("x", shifts(0.0, 0.0)) == "x: every model gives it the same revenue"
    assert verdict("y", {"m": {"absolute": 5.0, "relative": None}}) == (
        "last click gives y no revenue; other models do"
    )
