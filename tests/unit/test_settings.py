from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracker import cli
from tracker.settings import (
    COMMANDS,
    Settings,
    SettingsError,
    add_arguments,
    declaration,
    documented,
    env_name,
    fields,
    flag_name,
    load,
)
from tracker.stream.sink import policy_of

ROOT = Path(__file__).resolve().parents[2]
# What each command needs besides settings for its parser to accept a command line.
REQUIRED = {
    "budget": ["--total", "100"],
    "report": ["--from", "0", "--to", "1", "--out", "r.html"],
    "replay-forwarding": ["--destination", "meta"],
}


def flags(command: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, command)
    return parser.parse_args(list(argv))


def declared_for(command: str) -> set[str]:
    return {f.name for f in fields() if command in declaration(f).used_by}


def command_help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        cli.parser().parse_args([command, "--help"])
    return capsys.readouterr().out


def test_defaults() -> None:
    loaded = load(flags("collector"), {})
    assert loaded == Settings()
    assert loaded.kafka_bootstrap == "127.0.0.1:9092"
    assert loaded.topic_partitions == 4
    assert loaded.truncate_ip is True


def test_names() -> None:
    assert env_name("kafka_bootstrap") == "TRACKER_KAFKA_BOOTSTRAP"
    assert flag_name("kafka_bootstrap") == "--kafka-bootstrap"


def test_environment_overrides_default() -> None:
    loaded = load(None, {"TRACKER_TOPIC_PARTITIONS": "12", "TRACKER_FLUSH_MS": "0.5"})
    assert loaded.topic_partitions == 12  # converted to int
    assert loaded.flush_ms == 0.5  # converted to float


def test_flag_overrides_environment() -> None:
    environ = {"TRACKER_TOPIC_PARTITIONS": "12", "TRACKER_REDIS_PREFIX": "from-env"}
    loaded = load(flags("worker", "--topic-partitions", "8"), environ)
    assert loaded.topic_partitions == 8  # flag > env
    assert loaded.redis_prefix == "from-env"  # no flag: env > default
    assert loaded.app_id == "tracker"  # neither: default


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_REDIS_PREFIX", "from-process")
    assert load().redis_prefix == "from-process"


def test_unrelated_variables_ignored() -> None:
    assert load(None, {"KAFKA_BOOTSTRAP": "x", "TRACKER_NOPE": "y"}) == Settings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_bool_parsing(text: str, expected: bool) -> None:
    assert load(None, {"TRACKER_TRUNCATE_IP": text}).truncate_ip is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "y"])
def test_bad_bool_names_the_variable(text: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_TRUNCATE_IP: expected true or false"):
        load(None, {"TRACKER_TRUNCATE_IP": text})


def test_bad_int_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_COLLECTOR_PORT: invalid literal"):
        load(None, {"TRACKER_COLLECTOR_PORT": "eighty"})


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--flush-ms: could not convert"):
        load(flags("collector", "--flush-ms", "soon"), {"TRACKER_FLUSH_MS": "2"})


@pytest.mark.parametrize("rates", ["EUR", "EUR=", "EUR=abc", "EUR=1.08;GBP=1.27"])
def test_bad_currency_rates(rates: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_CURRENCY_RATES: "):
        load(None, {"TRACKER_CURRENCY_RATES": rates})


def test_bad_log_format() -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_LOG_FORMAT: "):
        load(None, {"TRACKER_LOG_FORMAT": "xml"})


def test_kafka_compression_is_one_aiokafka_knows() -> None:
    assert load(environ={"TRACKER_KAFKA_COMPRESSION": "none"}).kafka_compression == "none"
    with pytest.raises(SettingsError, match=r"^TRACKER_KAFKA_COMPRESSION: expected one of"):
        load(environ={"TRACKER_KAFKA_COMPRESSION": "brotli"})


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    ("base", "rates", "expected"),
    [
        ("USD", "", {"USD": 1.0}),
        ("USD", "EUR=1.08, gbp = 1.27,", {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}),
        ("eur", "usd=0.93", {"EUR": 1.0, "USD": 0.93}),  # codes are upper-cased
        ("USD", " , ,EUR=1.1", {"USD": 1.0, "EUR": 1.1}),  # empty items skipped
    ],
)
def test_rates_table(base: str, rates: str, expected: dict[str, float]) -> None:
    assert Settings(base_currency=base, currency_rates=rates).rates() == expected


def test_rates_from_the_environment() -> None:
    loaded = load(None, {"TRACKER_CURRENCY_RATES": "EUR=1.08", "TRACKER_BASE_CURRENCY": "usd"})
    assert loaded.rates() == {"USD": 1.0, "EUR": 1.08}


@pytest.mark.parametrize("rates", ["EUR=nan", "EUR=inf", "EUR=-1.08"])
def test_unusable_rates_rejected(rates: str) -> None:
    with pytest.raises(SettingsError, match="TRACKER_CURRENCY_RATES"):
        load(None, {"TRACKER_CURRENCY_RATES": rates})


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().app_id = "other"  # type: ignore[misc]


def test_documented() -> None:
    rows = documented()
    assert len(rows) == len(dataclasses.fields(Settings))
    flag, variable, default, used_by, meaning = rows[0]
    assert (flag, variable, default) == (
        "--kafka-bootstrap",
        "TRACKER_KAFKA_BOOTSTRAP",
        "'127.0.0.1:9092'",
    )
    assert used_by == (
        "collector, worker, serve, replay-dead-letters, import-spend, forward, replay-forwarding, "
        "check"
    )
    assert meaning == "Kafka bootstrap servers, comma separated"
    assert {row[3] for row in rows if row[0] == "--log-level"} == {"every command"}


def test_the_reporting_time_zone() -> None:
    assert Settings().timezone == "UTC"
    assert Settings().calendar().timezone == "UTC"
    loaded = load(None, {"TRACKER_TIMEZONE": "Europe/Berlin"})
    assert loaded.calendar().timezone == "Europe/Berlin"
    assert loaded.calendar() is loaded.calendar()  # one shared calendar per zone
    assert load(flags("report", "--timezone", "Asia/Kolkata"), {}).timezone == "Asia/Kolkata"


@pytest.mark.parametrize("zone", ["Europe/Nowhere", "CEST", "", "+02:00", "../etc/passwd"])
def test_an_unknown_time_zone_names_the_variable(zone: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_TIMEZONE: .* is not an IANA time zone"):
        load(None, {"TRACKER_TIMEZONE": zone})


def test_a_time_zone_folder_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_TIMEZONE: "):
        load(None, {"TRACKER_TIMEZONE": "America"})


def test_clock_skew_is_not_negative() -> None:
    assert Settings().clock_skew_s == 300
    assert load(None, {"TRACKER_CLOCK_SKEW_S": "0"}).clock_skew_s == 0
    with pytest.raises(SettingsError, match=r"^TRACKER_CLOCK_SKEW_S: must be at least 0"):
        load(None, {"TRACKER_CLOCK_SKEW_S": "-1"})


# --- which command declares which flag ------------------------------------------


def test_the_cli_has_the_commands_settings_are_declared_for() -> None:
    assert list(cli.COMMANDS) == list(COMMANDS)


def test_every_setting_is_used_by_a_known_command() -> None:
    for f in fields():
        used_by = declaration(f).used_by
        assert used_by, f"{f.name}: no command reads it"
        assert used_by <= set(COMMANDS), f"{f.name}: {sorted(used_by - set(COMMANDS))}"


def test_budget_help_lists_only_what_budget_reads(capsys: pytest.CaptureFixture[str]) -> None:
    budget = command_help("budget", capsys)
    assert "--redis-url" in budget
    assert "--budget-max-change" in budget
    assert "--flush-ms" not in budget
    assert "--kafka-bootstrap" not in budget
    collector = command_help("collector", capsys)
    assert "--flush-ms" in collector
    assert "--budget-max-change" not in collector


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_exactly_the_commands_settings(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = command_help(command, capsys)
    listed = {f.name for f in fields() if f"{flag_name(f.name)} " in text}
    assert listed == declared_for(command)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_accepts_its_flags(command: str) -> None:
    names = sorted(declared_for(command))
    argv = [f"{flag_name(name)}={getattr(Settings(), name)}" for name in names]
    args = cli.parser().parse_args([command, *REQUIRED.get(command, []), *argv])
    assert all(getattr(args, name) is not None for name in names)
    assert load(args, {}) == Settings()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_refuses_flags_of_settings_it_does_not_read(command: str) -> None:
    parser = cli.parser()
    for name in {f.name for f in fields()} - declared_for(command):
        with pytest.raises(SystemExit):
            parser.parse_args([command, *REQUIRED.get(command, []), f"{flag_name(name)}=1"])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_setting_comes_from_the_environment_in_every_command(command: str) -> None:
    args = cli.parser().parse_args([command, *REQUIRED.get(command, [])])
    # Flags a command lacks are None too (docker compose's test reads them all).
    assert all(getattr(args, f.name) is None for f in fields())
    environ = {"TRACKER_FLUSH_MS": "7.5", "TRACKER_BUDGET_MIN_DAYS": "5"}
    loaded = load(args, environ)
    assert (loaded.flush_ms, loaded.budget_min_days) == (7.5, 5)


def test_settings_cannot_be_declared_for_an_unknown_command() -> None:
    with pytest.raises(ValueError, match="'serve-all'"):
        add_arguments(argparse.ArgumentParser(), "serve-all")


def test_help_shows_the_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(command_help("collector", capsys).split())
    assert "[TRACKER_COLLECTOR_PORT, default 8080, at least 1, at most 65535]" in text


# --- bounds, checked where declared ---------------------------------------------


def test_every_default_is_within_its_declaration() -> None:
    for f in fields():
        assert declaration(f).check(f.default) == f.default, f.name


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        ("TRACKER_TOPIC_PARTITIONS", "0", "must be at least 1"),
        ("TRACKER_TOPIC_REPLICAS", "0", "must be at least 1"),
        ("TRACKER_COLLECTOR_PORT", "-1", "must be at least 1"),
        ("TRACKER_COLLECTOR_PORT", "0", "must be at least 1"),
        ("TRACKER_EXPORTER_PORT", "65536", "must be at most 65535"),
        ("TRACKER_WORKER_PORT", "70000", "must be at most 65535"),
        ("TRACKER_FLUSH_MS", "-1", "must be at least 0"),
        ("TRACKER_FLUSH_MS", "nan", "must be a finite number, got nan"),
        ("TRACKER_FLUSH_MS", "inf", "must be a finite number, got inf"),
        ("TRACKER_FLUSH_MAX_EVENTS", "0", "must be at least 1"),
        ("TRACKER_PRODUCE_TIMEOUT_S", "0", "must be above 0"),
        ("TRACKER_MAX_BODY_BYTES", "0", "must be at least 1"),
        ("TRACKER_POSTBACK_TOLERANCE_S", "0", "must be at least 1"),
        ("TRACKER_MAX_FUTURE_S", "-1", "must be at least 0"),
        ("TRACKER_MAX_AGE_DAYS", "0", "must be at least 1"),
        ("TRACKER_GRACE_S", "-1", "must be at least 0"),
        ("TRACKER_LOOKBACK_DAYS", "0", "must be above 0"),
        ("TRACKER_HALF_LIFE_DAYS", "-7", "must be above 0"),
        ("TRACKER_PATH_MAX_TOUCHES", "0", "must be at least 1"),
        ("TRACKER_MAX_IDS_PER_USER", "0", "must be at least 1"),
        ("TRACKER_WORKER_BATCH_WAIT_S", "0", "must be above 0"),
        ("TRACKER_RETENTION_1M_DAYS", "0", "must be at least 1"),
        ("TRACKER_TOP_CAMPAIGNS", "0", "must be at least 1"),
        ("TRACKER_TREND_MIN_SPEND", "-1", "must be at least 0"),
        ("TRACKER_BUDGET_HISTORY_DAYS", "2", "must be at least 3"),
        ("TRACKER_BUDGET_MIN_DAYS", "2", "must be at least 3"),
        ("TRACKER_BUDGET_MAX_CHANGE", "1.5", "must be at most 1"),
        ("TRACKER_BUDGET_MAX_CHANGE", "-0.1", "must be at least 0"),
        ("TRACKER_LOG_LEVEL", "verbose", "expected one of debug, info, warning, error"),
    ],
)
def test_a_value_out_of_range_names_the_variable(variable: str, value: str, error: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}: {error}"):
        load(None, {variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRACKER_COLLECTOR_PORT", "1"),
        ("TRACKER_COLLECTOR_PORT", "65535"),
        ("TRACKER_FLUSH_MS", "0"),
        ("TRACKER_MAX_FUTURE_S", "0"),
        ("TRACKER_GRACE_S", "0"),
        ("TRACKER_PRODUCE_TIMEOUT_S", "0.001"),
        ("TRACKER_BUDGET_MAX_CHANGE", "0"),
        ("TRACKER_BUDGET_MAX_CHANGE", "1"),
        ("TRACKER_BUDGET_HISTORY_DAYS", "14"),  # the default budget_min_days
        ("TRACKER_BUDGET_MIN_DAYS", "3"),
    ],
)
def test_a_value_on_its_bound_is_taken(variable: str, value: str) -> None:
    loaded = load(None, {variable: value})
    assert str(getattr(loaded, variable.removeprefix("TRACKER_").lower())) in {value, value + ".0"}


def test_a_flag_out_of_range_names_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"^--flush-ms: must be at least 0"):
        load(flags("collector", "--flush-ms=-1"), {"TRACKER_FLUSH_MS": "2"})
    with pytest.raises(SettingsError, match=r"^TRACKER_FLUSH_MS: must be at least 0"):
        load(flags("collector"), {"TRACKER_FLUSH_MS": "-1"})


def test_choices_take_any_case_and_keep_the_declared_spelling() -> None:
    loaded = load(None, {"TRACKER_LOG_LEVEL": "WARNING", "TRACKER_KAFKA_COMPRESSION": "Zstd"})
    assert (loaded.log_level, loaded.kafka_compression) == ("warning", "zstd")


def test_budget_min_days_beyond_the_history_names_both() -> None:
    assert load(None, {"TRACKER_BUDGET_MIN_DAYS": "28"}).budget_min_days == 28
    with pytest.raises(
        SettingsError,
        match=r"^--budget-min-days: must be at most TRACKER_BUDGET_HISTORY_DAYS \(28\)",
    ):
        load(flags("budget", "--budget-min-days", "29"), {})
    with pytest.raises(
        SettingsError,
        match=r"^TRACKER_BUDGET_MIN_DAYS: must be at most --budget-history-days \(7\)",
    ):
        load(flags("report", "--budget-history-days", "7"), {"TRACKER_BUDGET_MIN_DAYS": "8"})


@pytest.mark.parametrize("lookbacks", ["display=0", "social=-1", "email=nan", "search=inf"])
def test_a_channel_lookback_is_above_zero(lookbacks: str) -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_LOOKBACK_BY_CHANNEL: the lookback of "):
        load(None, {"TRACKER_LOOKBACK_BY_CHANNEL": lookbacks})
    assert load(None, {"TRACKER_LOOKBACK_BY_CHANNEL": "display=0.5"}).lookback_overrides() == {
        "display": 0.5
    }


def test_the_workers_rules_take_the_settings_days_and_seconds_in_milliseconds() -> None:
    policy = policy_of(
        load(
            None,
            {
                "TRACKER_LOOKBACK_DAYS": "30",
                "TRACKER_LOOKBACK_BY_CHANNEL": "display=0.5",
                "TRACKER_HALF_LIFE_DAYS": "7",
                "TRACKER_GRACE_S": "3600",
                "TRACKER_CLOCK_SKEW_S": "120",
            },
        )
    )
    assert policy.lookback_ms("search") == 30 * 86_400_000
    assert policy.lookback_ms("display") == 43_200_000
    assert (policy.half_life_ms, policy.grace_ms, policy.skew_ms) == (
        7 * 86_400_000,
        3_600_000,
        120_000,
    )


# --- what each command reads, found in its code ---------------------------------
#
# From a command's handler in tracker/cli.py, every function and class it names is
# followed into collector/ and tracker/ (a class as a whole, imports as they are
# scoped); each ``settings.x``, ``config.x`` or ``self._settings.x`` met on the way is
# a read. It rests on Settings being held under those names only, which
# test_settings_are_held_under_names_the_scan_knows keeps true.

HOLDERS = frozenset({"settings", "config", "_settings"})
PACKAGES = ("collector", "tracker")
Key = tuple[str, str]  # (module, top-level name)
Target = tuple[str, str | None]  # an import: (module, name), or (module, None) for itself


def _modules() -> dict[str, ast.Module]:
    trees = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            trees[name] = ast.parse(path.read_text(), str(path))
    return trees


MODULES = _modules()


def _imports(nodes: Iterator[ast.AST]) -> dict[str, Target]:
    table: dict[str, Target] = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module in MODULES:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                table[alias.asname or alias.name] = (
                    (full, None) if full in MODULES else (node.module, alias.name)
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    table[alias.asname] = (alias.name, None)
    return table


def _top_level(tree: ast.Module) -> dict[str, ast.stmt]:
    found: dict[str, ast.stmt] = {}
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[statement.name] = statement
        elif isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            found.update({t.id: statement for t in targets if isinstance(t, ast.Name)})
    return found


TOPS = {name: _top_level(tree) for name, tree in MODULES.items()}
IMPORTS = {name: _imports(iter(tree.body)) for name, tree in MODULES.items()}


def _members() -> dict[str, set[str]]:
    """Each field and method of Settings -> the fields it reads."""
    settings = TOPS["tracker.settings"]["Settings"]
    assert isinstance(settings, ast.ClassDef)
    names = {f.name for f in fields()}
    uses = {
        method.name: {
            node.attr
            for node in ast.walk(method)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        }
        for method in settings.body
        if isinstance(method, ast.FunctionDef)
    }

    def read(member: str, seen: frozenset[str]) -> set[str]:
        if member in names:
            return {member}
        calls = uses[member] & (names | set(uses)) - seen
        return set().union(*(read(other, seen | {member}) for other in calls))

    return {member: read(member, frozenset()) for member in names | set(uses)}


MEMBERS = _members()


def _resolve(module: str, name: str) -> Key | None:
    if name in TOPS[module]:
        return (module, name)
    if name in IMPORTS[module]:
        source, imported = IMPORTS[module][name]
        return None if imported is None else _resolve(source, imported)
    return None


def _holds_settings(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id in HOLDERS) or (
        isinstance(node, ast.Attribute) and node.attr in HOLDERS
    )


def _scan(key: Key) -> tuple[set[str], set[Key]]:
    """The settings a top-level definition reads, and the definitions it names."""
    module, name = key
    definition = TOPS[module][name]
    scoped = {**IMPORTS[module], **_imports(ast.walk(definition))}
    reads: set[str] = set()
    named: set[Key] = set()
    qualifiers = {id(n.value) for n in ast.walk(definition) if isinstance(n, ast.Attribute)}
    for node in ast.walk(definition):
        if isinstance(node, ast.Attribute) and node.attr in MEMBERS and _holds_settings(node.value):
            reads |= MEMBERS[node.attr]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            source, imported = scoped.get(node.value.id, ("", ""))
            if imported is None:  # module.name
                named.add((source, node.attr))
        if isinstance(node, ast.Name):
            if node.id in scoped:
                source, imported = scoped[node.id]
                found = None if imported is None else _resolve(source, imported)
                if imported is None and id(node) not in qualifiers:
                    # A module passed as a value (the forwarder's destinations): any of
                    # its definitions may be called through it.
                    named |= {(source, top) for top in TOPS[source]}
            else:
                found = _resolve(module, node.id)
            if found is not None:
                named.add(found)
    return reads, {k for k in named if k[1] in TOPS.get(k[0], {})}


@functools.cache
def reads_of(command: str) -> set[str]:
    # Every command runs main (logging) before its handler; main itself is not
    # followed, as it names every handler.
    reads, _ = _scan(("tracker.cli", "main"))
    todo = [("tracker.cli", cli.COMMANDS[command][0].__name__)]
    seen: set[Key] = set()
    while todo:
        key = todo.pop()
        # Loading reads every setting; that is not using it.
        if key in seen or key[0] == "tracker.settings":
            continue
        seen.add(key)
        found, named = _scan(key)
        reads |= found
        todo += named
    return reads


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_has_a_flag_for_each_setting_its_code_reads(command: str) -> None:
    read, declared = reads_of(command), declared_for(command)
    assert read - declared == set(), "read, but without a flag: --help hides it"
    assert declared - read == set(), "a flag of a setting the command does not read"


def test_the_scan_sees_reads_through_methods_objects_and_lazy_imports() -> None:
    assert MEMBERS["rates"] == {"base_currency", "currency_rates"}
    assert MEMBERS["calendar"] == {"timezone"}
    assert "flush_ms" in reads_of("collector")  # BatchingProducer's self._settings
    assert "redirect_allow" in reads_of("replay-dead-letters")  # redirect.AllowList
    assert "trend_min_spend" in reads_of("report")  # decide.queries.minimums
    assert "trend_min_spend" not in reads_of("budget")  # another lazy `command`


def _annotation_names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _unknown_holders(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            held = "Settings" not in _annotation_names(node.annotation) or node.arg in HOLDERS
        elif isinstance(node, ast.AnnAssign):
            held = "Settings" not in _annotation_names(node.annotation) or _holds_settings(
                node.target
            )
        elif isinstance(node, ast.Assign):
            held = not _holds_settings(node.value) or all(map(_holds_settings, node.targets))
        elif isinstance(node, ast.Call) and node.args:
            by_name = _annotation_names(node.func) & {"getattr", "vars", "asdict", "astuple"}
            held = not (by_name and _holds_settings(node.args[0]))
        else:
            held = True
        if not held:
            yield f"line {getattr(node, 'lineno', '?')}: {ast.unparse(node)}"


def test_settings_are_held_under_names_the_scan_knows() -> None:
    unknown = {
        module: found
        for module, tree in MODULES.items()
        if module != "tracker.settings"
        if (found := list(_unknown_holders(tree)))
    }
    assert unknown == {}, f"hold Settings as one of {sorted(HOLDERS)}"


def test_the_holder_check_can_fail() -> None:
    code = ast.parse(
        "def f(cfg: Settings) -> None: ...\nalias = self._settings\ngetattr(settings, name)"
    )
    assert len(list(_unknown_holders(code))) == 3


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://:pw@h:6380/0", "rediss://:***@h:6380/0"),
        ("redis+cluster://me:p@ss@h1:1,h2:2/0", "redis+cluster://me:***@h1:1,h2:2/0"),
        ("redis://me@h/0", "redis://me@h/0"),
        (
            "redis+sentinel://:a@s1,s2/m/0?sentinel_password=b@c&ssl_ca_certs=/ca",
            "redis+sentinel://:***@s1,s2/m/0?sentinel_password=***&ssl_ca_certs=/ca",
        ),
        ("redis+sentinel://s1/m?sentinel_password=", "redis+sentinel://s1/m?sentinel_password="),
    ],
)
def test_the_redis_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert Settings(redis_url=url).redis_shown == shown


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis+sentinel://s1:26379", "names the primary its Sentinels watch"),
        ("redis+sentinel://s1:26379/", "names the primary its Sentinels watch"),
        ("rediss+sentinel://s1/orders/two", "is a number, not 'two'"),
    ],
)
def test_a_sentinel_url_names_its_primary_and_a_numbered_database(url: str, error: str) -> None:
    with pytest.raises(SettingsError, match=rf"^TRACKER_REDIS_URL: .*{error}"):
        load(environ={"TRACKER_REDIS_URL": url})
    good = load(environ={"TRACKER_REDIS_URL": "redis+sentinel://s1,s2/orders/3"})
    assert good.redis_is_sentinel


def test_sentinels_and_a_redis_cluster_exclude_each_other() -> None:
    with pytest.raises(SettingsError, match=r"^TRACKER_REDIS_CLUSTER: TRACKER_REDIS_URL names"):
        load(
            environ={
                "TRACKER_REDIS_URL": "redis+sentinel://s1/orders",
                "TRACKER_REDIS_CLUSTER": "1",
            }
        )
