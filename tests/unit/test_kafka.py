"""What tracker's topics are made with: replicas in sync, and its setting's bounds."""

from __future__ import annotations

import pytest

from tracker.kafka import creation_configs
from tracker.settings import Settings, SettingsError, load


def test_min_insync_replicas_is_the_brokers_unless_set() -> None:
    assert creation_configs(Settings()) == {}
    production = load(
        None, {"TRACKER_TOPIC_REPLICAS": "3", "TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "2"}
    )
    assert creation_configs(production) == {"min.insync.replicas": "2"}


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({"TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "-1"}, "must be at least 0"),
        # More than there are replicas: Kafka would refuse every event.
        (
            {"TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "2"},
            r"must be at most TRACKER_TOPIC_REPLICAS \(1\)",
        ),
        (
            {"TRACKER_TOPIC_MIN_INSYNC_REPLICAS": "4", "TRACKER_TOPIC_REPLICAS": "3"},
            r"must be at most TRACKER_TOPIC_REPLICAS \(3\)",
        ),
    ],
)
def test_min_insync_replicas_out_of_range_names_the_variable(
    environ: dict[str, str], error: str
) -> None:
    with pytest.raises(SettingsError, match=rf"^TRACKER_TOPIC_MIN_INSYNC_REPLICAS: {error}"):
        load(None, environ)
