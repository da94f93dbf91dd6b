"""The README's settings table is the settings: a renamed or new setting must show there."""

from __future__ import annotations

from pathlib import Path

from tracker.settings import documented

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    missing = [
        f"| `{flag}` | `{env}` | `{default}` | {meaning} |"
        for flag, env, default, meaning in documented()
        if f"| `{flag}` | `{env}` | `{default}` | {meaning} |" not in README
    ]
    assert missing == []
