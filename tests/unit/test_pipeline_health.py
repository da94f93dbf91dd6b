"""The exporter's pipeline-health families, from the health hash's counts."""

from __future__ import annotations

from tracker.export.metrics import _identity, _lateness


def samples(family: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in family.samples  # type: ignore[attr-defined]
    }


def test_lateness_is_a_cumulative_histogram() -> None:
    found = samples(_lateness({"late_le_3600": 2, "late_le_86400": 1, "late_le_inf": 4,
                               "late_ms": 9_000_000}))  # fmt: skip
    bucket = "tracker_pipeline_lateness_seconds_bucket"
    assert found[bucket, (("le", "3600.0"),)] == 2
    assert found[bucket, (("le", "43200.0"),)] == 2
    assert found[bucket, (("le", "86400.0"),)] == 3
    assert found[bucket, (("le", "+Inf"),)] == 7
    assert found["tracker_pipeline_lateness_seconds_count", ()] == 7
    assert found["tracker_pipeline_lateness_seconds_sum", ()] == 9_000


def test_identity_counters_by_reason() -> None:
    families = {f.name: samples(f) for f in _identity({"identity_refused_junk_id": 3,
                                                         "identity_restitched": 2})}  # fmt: skip
    refused = families["tracker_identity_refused"]
    assert refused["tracker_identity_refused_total", (("reason", "junk_id"),)] == 3
    assert refused["tracker_identity_refused_total", (("reason", "too_many_ids"),)] == 0
    restitched = families["tracker_identity_restitched"]
    assert restitched["tracker_identity_restitched_total", ()] == 2
