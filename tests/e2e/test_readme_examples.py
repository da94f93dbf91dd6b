"""The README runs as written: every shell example of README.md, in order, on a real stack.

What runs: each fenced block tagged ``sh`` (or ``bash``, ``shell``), in README order,
each in a fresh ``bash`` (as a reader pastes it) with a scratch directory as ``cwd``.
The stack is the test's own (collector, worker, exporter on isolated topics, Redis keys
and ports), configured as ``make up`` configures the local one: its demo settings and
four weeks of history come from running ``demo_settings`` and ``demo_history`` of
``deploy/local/demo.sh`` itself, and its query API token from ``api_settings`` of
``deploy/local/access.sh`` (exported to the blocks as ``TRACKER_API_TOKEN``, as the
README has a reader export it), so they cannot drift. In a block's text,
``127.0.0.1:8080`` and ``127.0.0.1:9108`` (or ``localhost``) become the isolated
collector's and exporter's addresses; ``tracker`` is this venv's, with the isolated
settings exported. A block that would still reach a port of the local stack (8080,
9108, 6066, 9090) or runs ``make``, ``docker`` or ``open`` fails instead of running:
the user's own stack may be up.

Not run: blocks in any other language (``text``, ``html``, a bare fence showing a
synopsis), commands quoted in the prose, and a shell block whose opening fence has,
on the line just before it, the mark ``<!-- illustrative: <why> -->``. Marks are for
what cannot run here (``make up`` itself, a browser); keep them rare and say why.

A block is cut into commands: a command ends at a line end outside quotes and
``$(...)``, not after a ``\\``, ``|`` or ``&&``. The comment lines right below a
command, with no blank line between, are its shown answer; other comments are prose.
Each command must:

- exit 0 (under ``set -o pipefail``: a ``curl | grep`` finding nothing fails);
- get from every ``curl`` it runs the status its answer starts with (``# 302 ...``;
  the rest of that line is not compared), else a 2xx. Statuses are read from headers
  each ``curl`` is made to dump (``-D``), so ``-s`` without ``-f``, ``-o /dev/null``
  and ``-w`` work as written;
- if its answer is JSON (starts with ``{`` or ``[``), print JSON of that shape:
  objects with exactly the keys shown, arrays with as many items, each value of the
  same JSON type (any number is a number), recursively. ``...`` outside a string
  means "more here": in an object, other keys may be there; in an array, the items
  shown before it are the first ones and those after it the last ones;
- if its answer is other text, print lines reading as the shown lines, in that order,
  any number standing for any number and any run of spaces for any other. The
  isolated topic names, key prefix and ports in the output read as the defaults.

Not checked: the values in a JSON answer, and what a command does beyond its answer
(that a hit shows in ``/v1/kpis``, say: tests/e2e/test_pipeline.py checks that).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.isolation import isolated_settings
from harness.processes import environment, running, wait_for
from tests.kafka import caught_up
from tracker.settings import Settings, load

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEMO = ROOT / "deploy/local/demo.sh"
ACCESS = ROOT / "deploy/local/access.sh"
SHELLS = frozenset({"sh", "bash", "shell"})
ILLUSTRATIVE = re.compile(r"<!-- illustrative: (?P<why>\S.*?) -->")
LOCAL_PORTS = ("8080", "9108", "6066", "9090")
"""The local stack's default ports: a block must not reach them after substitution."""
SHARED = ("make", "docker", "open", "xdg-open")
"""Commands never run: they act on the user's stack or desktop (mark such blocks)."""
ISOLATED = ("dead_letter_topic", "events_topic", "app_id", "redis_prefix")
"""Settings the test isolates whose values commands may print: read back as defaults."""


@dataclass(frozen=True)
class Block:
    """A fenced block of the README."""

    line: int
    """README line of the first line inside the fence."""
    lang: str
    text: str
    illustrative: str | None
    """Why the block is not run, from its mark; None for a block that runs."""

    @property
    def runs(self) -> bool:
        return self.lang in SHELLS and self.illustrative is None


@dataclass(frozen=True)
class Step:
    """One command of a block and the answer the README shows under it."""

    line: int
    command: str
    shown: tuple[str, ...]
    """The comment lines right below the command, ``# `` removed."""


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks of ``markdown``, with the illustrative mark on the line before."""
    found: list[Block] = []
    lines = markdown.splitlines()
    opening: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, 1):
        if opening is None:
            if match := re.fullmatch(r"```\s*(\S*)\s*", line):
                opening, body = (number, match[1]), []
            continue
        if line.strip() == "```":
            start, lang = opening
            mark = ILLUSTRATIVE.fullmatch(lines[start - 2].strip()) if start >= 2 else None
            found.append(Block(start + 1, lang, "\n".join(body), mark["why"] if mark else None))
            opening = None
        else:
            body.append(line)
    if opening is not None:
        raise ValueError(f"the fence opened on line {opening[0]} is never closed")
    return found


_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
"""A here-document on a command's first line (``python - <<'EOF'``): its word ends it."""


def complete(command: str) -> bool:
    """True when ``command`` (shell text) ends outside any quote, substitution or
    continuation: a newline there ends the command. A here-document opened on its
    first line is taken whole, unread, up to the line holding its word alone."""
    first, *rest = command.split("\n")
    if heredoc := _HEREDOC.search(first):
        ends = [n for n, line in enumerate(rest) if line.strip() == heredoc[2]]
        if not ends:
            return False
        command = "\n".join([first, *rest[ends[0] + 1 :]])
    stack = ["top"]
    last = ""  # the last two significant characters outside quotes and comments
    i = 0
    while i < len(command):
        char, state = command[i], stack[-1]
        if state == "'":
            if char == "'":
                stack.pop()
        elif state == '"':
            if char == "\\":
                i += 1
            elif char == '"':
                stack.pop()
            elif command.startswith("$(", i):
                stack.append("(")
                i += 1
        elif char == "\\":
            if i + 1 >= len(command):
                return False  # a line continuation
            i += 1
        elif char == "#" and (i == 0 or command[i - 1] in " \t\n;|&("):
            end = command.find("\n", i)
            i = len(command) if end < 0 else end
            continue
        elif char in "'\"(":
            stack.append(char)
        elif char == ")" and state == "(":
            stack.pop()
        if state in ("top", "(") and not char.isspace():
            last = (last + char)[-2:]
        i += 1
    return stack == ["top"] and not last.endswith("|") and last != "&&"


def steps(block: Block) -> list[Step]:
    """The commands of a shell block, each with the answer shown right below it."""
    found: list[Step] = []
    pending: list[str] = []
    start = 0
    answer_open = False  # the last command's shown answer may still continue
    for number, line in enumerate(block.text.splitlines(), block.line):
        if pending:
            pending.append(line)
        elif not line.strip():
            answer_open = False
            continue
        elif line.lstrip().startswith("#"):
            if answer_open:
                last = found[-1]
                text = re.sub(r"^\s*# ?", "", line)
                found[-1] = dataclasses.replace(last, shown=(*last.shown, text))
            continue
        else:
            pending, start = [line], number
        if complete("\n".join(pending)):
            found.append(Step(start, "\n".join(pending), ()))
            pending, answer_open = [], True
    if pending:
        raise ValueError(f"README line {start}: the command never ends")
    return found


MORE = "\x00more"
"""What ``...`` outside a string stands for once a shown answer is parsed."""


def shown_json(text: str) -> Any:
    """A JSON answer as the README shows it; ``...`` outside strings becomes ``MORE``
    (an item in an array, a key in an object)."""
    out: list[str] = []
    brackets: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
            continue
        if text.startswith("...", i):
            more = orjson.dumps(MORE).decode()
            out.append(f"{more}:null" if brackets and brackets[-1] == "{" else more)
            i += 3
            continue
        if char in "[{":
            brackets.append(char)
        elif char in "]}":
            brackets.pop()
        out.append(char)
        i += 1
    return orjson.loads("".join(out))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def shape_mismatches(shown: Any, actual: Any, path: str = "$") -> list[str]:
    """Where ``actual`` does not have the shape of ``shown`` (see the module's docstring)."""
    if _kind(shown) != _kind(actual):
        return [f"{path}: {_kind(actual)} where the README shows {_kind(shown)}"]
    if isinstance(shown, dict):
        keys = [key for key in shown if key != MORE]
        missing = [key for key in keys if key not in actual]
        extra = [key for key in actual if key not in shown] if MORE not in shown else []
        found = [f"{path}: no key {key!r}" for key in missing]
        found += [f"{path}: key {key!r} the README does not show" for key in extra]
        for key in keys:
            if key in actual:
                found += shape_mismatches(shown[key], actual[key], f"{path}.{key}")
        return found
    if isinstance(shown, list):
        if MORE not in shown:
            if len(shown) != len(actual):
                return [f"{path}: {len(actual)} items where the README shows {len(shown)}"]
            head, tail = shown, []
        else:
            head = shown[: shown.index(MORE)]
            tail = shown[len(shown) - shown[::-1].index(MORE) :]
            if len(actual) < len(head) + len(tail):
                return [f"{path}: {len(actual)} items, fewer than the README shows"]
        pairs = [*enumerate(zip(head, actual, strict=False))]
        pairs += [
            (len(actual) - len(tail) + n, both)
            for n, both in enumerate(zip(tail, actual[len(actual) - len(tail) :], strict=True))
        ]
        return [
            problem
            for index, (item, value) in pairs
            for problem in shape_mismatches(item, value, f"{path}[{index}]")
        ]
    return []


def text_mismatches(shown: Sequence[str], output: str) -> list[str]:
    """The shown lines that ``output`` lacks, in order; numbers stand for any number."""
    lines = iter(output.splitlines())
    for wanted in shown:
        words = [re.sub(r"\d+", "__N__", re.escape(word)) for word in wanted.split()]
        pattern = re.compile(r"\s+".join(words).replace("__N__", r"\d+"))
        if not any(pattern.fullmatch(line.strip()) for line in lines):
            return [f"no line reads {wanted.strip()!r} (after those before it)"]
    return []


STATUS = re.compile(r"(?P<status>[1-5]\d\d)(?:\s|$)")


@dataclass(frozen=True)
class Outcome:
    """What a command did."""

    exit_code: int
    stdout: str
    stderr: str
    statuses: tuple[int, ...]
    """The HTTP status of every response a ``curl`` of the command got."""


def mismatches(step: Step, outcome: Outcome) -> list[str]:
    """How ``outcome`` differs from what the README shows for ``step``."""
    found = [f"exit code {outcome.exit_code}"] if outcome.exit_code else []
    answer = "\n".join(step.shown).strip()
    status = STATUS.match(answer)
    if status:
        wanted = int(status["status"])
        if not outcome.statuses:
            found.append(f"the README shows status {wanted}, but no HTTP response came")
        found += [f"status {s}, the README shows {wanted}" for s in outcome.statuses if s != wanted]
    else:
        found += [f"status {s}, not 2xx" for s in outcome.statuses if not 200 <= s < 300]
    if status or not answer:
        return found
    if answer[0] in "[{":
        try:
            actual = orjson.loads(outcome.stdout)
        except orjson.JSONDecodeError:
            return [*found, "the README shows JSON, the output is not JSON"]
        joined = " ".join(line.strip() for line in step.shown)
        return found + shape_mismatches(shown_json(joined), actual)
    return found + text_mismatches(step.shown, outcome.stdout)


def localized(text: str, settings: Settings) -> str:
    """``text`` with the README's collector and exporter addresses made ``settings``'.

    Raises AssertionError for text that would act on the local stack or a desktop.
    """
    if acting := re.search(rf"^\s*({'|'.join(SHARED)})\b", text, re.M):
        raise AssertionError(f"{acting[1]!r} acts on the local stack or a desktop: mark it")
    for default, port in (("8080", settings.collector_port), ("9108", settings.exporter_port)):
        text = re.sub(rf"\b(127\.0\.0\.1|localhost):{default}\b", rf"\g<1>:{port}", text)
    if reached := re.findall(rf"[:=\s]({'|'.join(LOCAL_PORTS)})\b", text):
        raise AssertionError(f"the example would reach the local stack's port {reached[0]}")
    return text


def as_defaults(output: str, settings: Settings) -> str:
    """``output`` with the isolated names and ports read as the README's defaults."""
    default = Settings()
    names = sorted(ISOLATED, key=lambda name: -len(str(getattr(settings, name))))
    for name in names:
        output = output.replace(str(getattr(settings, name)), str(getattr(default, name)))
    for name in ("collector_port", "exporter_port"):
        output = re.sub(
            rf"\b(127\.0\.0\.1|localhost):{getattr(settings, name)}\b",
            rf"\g<1>:{getattr(default, name)}",
            output,
        )
    return output


CURL = 'curl() { command curl --dump-header "$(mktemp -p "$__readme_step" headers.XXXXXX)" "$@"; }'


def script(block_steps: Sequence[Step], settings: Settings, scratch: Path) -> str:
    """One bash script running every step, keeping what it did in ``scratch/<n>/``."""
    parts = ["set -o pipefail", CURL]
    for n, step in enumerate(block_steps):
        folder = scratch / str(n)
        parts += [
            f"__readme_step='{folder}'",
            "{",
            localized(step.command, settings),
            f"}} >'{folder}/stdout' 2>'{folder}/stderr'",
            f"echo $? >'{folder}/exit'",
        ]
    return "\n".join(parts) + "\n"


def outcome(folder: Path, settings: Settings) -> Outcome:
    statuses = []
    for headers in sorted(folder.glob("headers.*"), key=lambda path: path.stat().st_mtime_ns):
        lines = re.findall(r"^HTTP/\S+ (\d{3})", headers.read_text(errors="replace"), re.M)
        statuses += [int(lines[-1])] if lines else []
    exit_file = folder / "exit"
    return Outcome(
        int(exit_file.read_text()) if exit_file.exists() else -1,
        as_defaults((folder / "stdout").read_text(errors="replace"), settings),
        (folder / "stderr").read_text(errors="replace"),
        tuple(statuses),
    )


def run_block(block: Block, settings: Settings, cwd: Path) -> list[str]:
    """Run a block's commands on the stack of ``settings``; what differs from the README."""
    block_steps = steps(block)
    scratch = cwd / ".readme-steps"
    text = script(block_steps, settings, scratch)
    for n in range(len(block_steps)):
        (scratch / str(n)).mkdir(parents=True)
    env = environment(settings)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["TRACKER_API_TOKEN"] = admin_token(settings)
    shell = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    problems = []
    for n, step in enumerate(block_steps):
        done = outcome(scratch / str(n), settings)
        if found := mismatches(step, done):
            problems.append(
                f"README line {step.line}: {'; '.join(found)}\n"
                f"  command: {step.command}\n"
                f"  shown:   {' / '.join(step.shown) or '(nothing)'}\n"
                f"  stdout:  {done.stdout[:600]!r}\n"
                f"  stderr:  {done.stderr[-600:]!r}"
            )
    if shell.returncode and not problems:
        problems.append(f"bash exited {shell.returncode}: {shell.stderr[-600:]}")
    return problems


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with deploy/local/demo.sh's demo configuration, as ``make up`` has it."""
    shell = subprocess.run(
        ["bash", "-c", 'source "$1" && demo_settings && env -0', "demo", str(DEMO)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    exported = (item.partition("=") for item in shell.stdout.split("\0"))
    demo = {name: value for name, _, value in exported if name.startswith("TRACKER_")}
    assert demo, f"{DEMO} exported no TRACKER_* setting"
    return load(environ={**environment(settings), **demo})


def local_access(settings: Settings, root: Path) -> Settings:
    """``settings`` with the query API token deploy/local/access.sh makes for ``make up``
    (kept under ``root`` instead of the checkout)."""
    shell = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1" && api_settings && printf %s "$TRACKER_API_TOKENS"',
            "access",
            str(ACCESS),
        ],
        env={"PATH": os.environ["PATH"], "ROOT": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    configured = dataclasses.replace(settings, api_tokens=shell.stdout)
    assert admin_token(configured), f"{ACCESS} configured no admin token"
    return configured


def admin_token(settings: Settings) -> str:
    """The first admin token of ``settings``; empty when the query API is open."""
    admins = [token for role, token in settings.api_token_roles() if role == "admin"]
    return admins[0] if admins else ""


def load_demo_history(settings: Settings, run: Path) -> None:
    """deploy/local/demo.sh's ``demo_history``, sent to the collector of ``settings``."""
    env = environment(settings)
    env.pop("TRACKER_DEMO", None)
    env |= {"RUN": str(run), "PYTHON": sys.executable}
    subprocess.run(
        [
            "bash",
            "-c",
            'source "$1"; log() { :; }; show_tail() { tail -n 30 "$1" >&2; }\n'
            'die() { echo "$*" >&2; exit 1; }; warn() { echo "$*" >&2; }; demo_history',
            "demo",
            str(DEMO),
        ],
        env=env,
        check=True,
        timeout=300,
    )
    assert (run / "demo-history.done").exists(), f"{DEMO}'s demo_history loaded nothing"


README_BLOCKS = blocks(README.read_text())


@pytest.fixture(scope="module")
def stack(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A collector, worker and exporter as ``make up`` runs them: its query API token,
    demo settings and history."""
    settings = demo_settings(isolated_settings(servers, "readme"))
    settings = local_access(settings, tmp_path_factory.mktemp("access"))
    with running(settings, "worker", "collector", "serve"):
        load_demo_history(settings, tmp_path_factory.mktemp("demo"))
        wait_for(
            lambda: caught_up(settings.kafka_bootstrap, settings.app_id, settings.events_topic),
            timeout=120,
            what="the demo history applied",
        )
        yield settings


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            block,
            id=f"README.md:{block.line}",
            marks=[pytest.mark.skip(reason=f"illustrative: {block.illustrative}")]
            if block.illustrative
            else [],
        )
        for block in README_BLOCKS
        if block.lang in SHELLS
    ],
)
def test_the_example_answers_as_the_readme_shows(
    block: Block, stack: Settings, tmp_path: Path
) -> None:
    problems = run_block(block, stack, tmp_path)
    assert not problems, "\n\n".join(problems)
