"""The README's settings table is the settings: a renamed or new setting must show there.

And how tests/e2e/test_readme_examples.py reads the README's shell examples and their
answers, on hand-made cases and on the README itself (no server needed).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.test_readme_examples import (
    SHELLS,
    Block,
    Outcome,
    Step,
    as_defaults,
    blocks,
    complete,
    localized,
    mismatches,
    shape_mismatches,
    shown_json,
    steps,
    text_mismatches,
)
from tracker.settings import Settings, documented

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    rows = [
        f"| `{flag}` | `{env}` | `{default}` | {used_by} | {meaning} |"
        for flag, env, default, used_by, meaning in documented()
    ]
    missing = [row for row in rows if row not in README]
    assert missing == []


# tests/e2e/test_readme_examples.py: the shell examples and their answers.

FENCE = "```"


def test_a_block_carries_its_illustrative_mark_and_its_line() -> None:
    text = f"intro\n\n<!-- illustrative: opens a browser -->\n{FENCE}sh\nopen x\n{FENCE}\n"
    text += f"\n{FENCE}sh\ncurl y\n{FENCE}\n{FENCE}\ntracker budget\n{FENCE}\n"
    found = blocks(text)
    assert [(b.line, b.lang, b.illustrative, b.runs) for b in found] == [
        (5, "sh", "opens a browser", False),
        (9, "sh", None, True),
        (12, "", None, False),
    ]


def test_an_unclosed_fence_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 2"):
        blocks(f"x\n{FENCE}sh\ncurl y\n")


@pytest.mark.parametrize(
    ("command", "ends"),
    [
        ("curl x   # it's a comment", True),
        ("curl -d '[", False),
        ("curl -d '[\n]'", True),
        ("curl x \\", False),
        ("curl x \\\n  -s", True),
        ('Q="a=$(date +%s)&b=\'"', True),
        ("SIG=$(printf '%s' \"$Q\" |", False),
        ("curl -s x | grep '^t'", True),
        ("curl -s x |", False),
        ("make up &&", False),
        ("echo $((1 + 2))", True),
        ('echo "$(echo "a)")"', True),
        ("echo 'a#b' #c '", True),
        ("python - <<'EOF'", False),
        ("python - <<'EOF'\nprint('it's unread')", False),
        ("python - <<'EOF'\nprint(\"it's unread\")\nEOF", True),
        ("cat <<-END |\n\tx\n\tEND", False),
        ("cat <<-END |\n\tx\n\tEND\ngrep x", True),
    ],
)
def test_a_command_ends_where_bash_would_end_it(command: str, ends: bool) -> None:
    assert complete(command) is ends


def test_an_answer_is_the_comment_right_below_a_command() -> None:
    text = """# Prose before the first command.
curl -s x -d '[
  {"a": 1}
]'
# {"accepted":1,
#   "results":[...]}

# Prose after a blank line.
now=$(date +%s)
curl y   # an inline comment is prose
tracker z
# done: 2"""
    found = steps(Block(10, "sh", text, None))
    assert [(s.line, s.command.split()[0], s.shown) for s in found] == [
        (11, "curl", ('{"accepted":1,', '  "results":[...]}')),
        (18, "now=$(date", ()),
        (19, "curl", ()),
        (20, "tracker", ("done: 2",)),
    ]


def test_a_command_that_never_ends_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 4"):
        steps(Block(3, "sh", "ls\ncurl -d '[\n", None))


BATCH_SHOWN = (
    '{"accepted":2,"rejected":1,"results":[...,{"index":2,"status":"rejected",'
    ' "reasons":{"cost":"must not be negative"}}]}'
)


def batch_answer(**changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "accepted": 2,
        "rejected": 1,
        "results": [
            {"index": 0, "status": "accepted", "event_id": "e0"},
            {"index": 1, "status": "accepted", "event_id": "e1"},
            {"index": 2, "status": "rejected", "reasons": {"cost": "must not be negative"}},
        ],
    }
    return answer | changes


def test_a_json_answer_of_the_shape_shown_matches_whatever_its_values() -> None:
    assert shape_mismatches(shown_json(BATCH_SHOWN), batch_answer()) == []
    assert shape_mismatches(shown_json(BATCH_SHOWN), batch_answer(accepted=7.5)) == []
    assert shape_mismatches(shown_json('{"a":1,...}'), {"a": 2, "b": [], "c": None}) == []
    assert shape_mismatches(shown_json('["...", ...]'), ["x", 1, None]) == []


def test_a_json_answer_of_another_shape_is_reported_where_it_differs() -> None:
    shown = shown_json(BATCH_SHOWN)
    assert shape_mismatches(shown, batch_answer(extra=1)) == [
        "$: key 'extra' the README does not show"
    ]
    assert shape_mismatches(shown, batch_answer(rejected="1")) == [
        "$.rejected: string where the README shows number"
    ]
    last = {"index": 2, "status": "rejected", "reasons": None}
    assert shape_mismatches(shown, batch_answer(results=[last])) == [
        "$.results[0].reasons: null where the README shows object"
    ]
    assert shape_mismatches(shown, batch_answer(results=[])) == [
        "$.results: 0 items, fewer than the README shows"
    ]
    assert shape_mismatches(shown_json('{"a":[1]}'), {"a": [1, 2]}) == [
        "$.a: 2 items where the README shows 1"
    ]
    assert shape_mismatches(shown_json('{"a":1}'), {}) == ["$: no key 'a'"]


def test_a_text_answer_matches_lines_in_order_with_any_numbers() -> None:
    shown = ["read from tracker.dead-letters: 2", "  replayed: 1 (1 events)"]
    output = "noise\nread from tracker.dead-letters: 17\n x\n  replayed:  0 (0 events)\n"
    assert text_mismatches(shown, output) == []
    assert text_mismatches(shown[::-1], output) == [
        "no line reads 'read from tracker.dead-letters: 2' (after those before it)"
    ]
    assert text_mismatches(["still rejected: 1"], output) != []


def test_a_command_must_exit_0_and_get_the_status_shown_else_2xx() -> None:
    step = Step(1, "curl x", ())
    assert mismatches(step, Outcome(0, "", "", (200, 204))) == []
    assert mismatches(step, Outcome(7, "", "", ())) == ["exit code 7"]
    assert mismatches(step, Outcome(0, "", "", (404,))) == ["status 404, not 2xx"]
    redirect = Step(1, "curl x", ("302 https://shop.example/?click_id=1",))
    assert mismatches(redirect, Outcome(0, "302 https://elsewhere/", "", (302,))) == []
    assert mismatches(redirect, Outcome(0, "", "", (400,))) == ["status 400, the README shows 302"]
    assert mismatches(redirect, Outcome(0, "", "", ())) == [
        "the README shows status 302, but no HTTP response came"
    ]
    batch = Step(1, "curl x", (BATCH_SHOWN,))
    assert mismatches(batch, Outcome(0, orjson.dumps(batch_answer()).decode(), "", (200,))) == []
    assert mismatches(batch, Outcome(0, "<html>", "", (200,))) == [
        "the README shows JSON, the output is not JSON"
    ]


def test_examples_reach_the_isolated_stack_and_only_it() -> None:
    settings = Settings(collector_port=18080, exporter_port=19108)
    assert localized("curl 'http://127.0.0.1:8080/r' localhost:9108/x", settings) == (
        "curl 'http://127.0.0.1:18080/r' localhost:19108/x"
    )
    with pytest.raises(AssertionError, match="9090"):
        localized("curl http://127.0.0.1:9090/graph", settings)
    with pytest.raises(AssertionError, match="8080"):
        localized("tracker simulate --collector-port 8080", settings)
    with pytest.raises(AssertionError, match="'make'"):
        localized("echo\nmake down", settings)
    output = "from test-1.dead-letters at 127.0.0.1:19108 (test-1)"
    isolated = dataclasses.replace(settings, dead_letter_topic="test-1.dead-letters")
    isolated = dataclasses.replace(isolated, redis_prefix="test-1", app_id="test-1")
    assert as_defaults(output, isolated) == (
        "from tracker.dead-letters at 127.0.0.1:9108 (tracker)"
    )


def test_every_shell_example_of_the_readme_runs_or_says_why_not() -> None:
    found = blocks(README)
    marked = [b for b in found if b.illustrative is not None]
    assert all(b.lang in SHELLS for b in marked), "a mark only goes before a shell block"
    # A tripwire, to be raised deliberately: a mark is for what cannot run here.
    assert len(marked) <= 3, "illustrative marks are for what cannot run: keep them rare"
    settings = Settings(collector_port=18080, exporter_port=19108)
    for block in found:
        if block.runs:
            assert steps(block), f"README line {block.line}: an empty shell block"
            for step in steps(block):
                localized(step.command, settings)
