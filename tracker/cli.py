"""The ``tracker`` command: one subcommand per process, settings from flags or env."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import structlog

from tracker import logs, settings

log = structlog.get_logger(__name__)


def _collector(config: settings.Settings, args: argparse.Namespace) -> int:
    from collector.app import Collector
    from tracker import asgi

    workers = config.collector_workers
    # Where several workers' metrics meet (collector.metrics.AllWorkers), for this run only.
    with contextlib.ExitStack() as run:
        shared = None
        if workers > 1:
            shared = Path(
                run.enter_context(tempfile.TemporaryDirectory(prefix="tracker-collector-"))
            )
        app = Collector(config, metrics_dir=shared).app()
        asgi.serve(
            app,
            config.collector_host,
            config.collector_port,
            config.log_format,
            config.log_level,
            workers=workers,
        )
    return 0


def _may_evict(config: settings.Settings, command: str) -> bool:
    """Whether the store may evict keys ``command`` relies on (said on stderr); when
    Redis does not answer yet, the command's own check runs once it does. A store that
    may lose writes in a restart is only warned of: Kafka's retention covers events."""
    from redis.exceptions import RedisError

    from tracker.redis_nodes import forgetful, refusal, store_nodes

    try:
        nodes = asyncio.run(store_nodes(config))
    except (RedisError, OSError) as exc:
        log.warning("could not ask Redis whether it may evict keys", error=str(exc))
        return False
    if lossy := forgetful(nodes):
        log.warning(lossy)
    refused = refusal(nodes)
    if refused:
        print(f"tracker {command}: {refused}", file=sys.stderr)
    return refused is not None


def _worker(config: settings.Settings, args: argparse.Namespace) -> int:
    import faust

    from tracker.kafka import ensure_topics
    from tracker.stream.app import build_app

    if _may_evict(config, "worker"):
        return 2
    asyncio.run(ensure_topics(config))
    # Tables live in memory, yet Faust makes its data directory (relative to the
    # working directory by default) and never removes it; keep it out of the way.
    with tempfile.TemporaryDirectory(prefix=f"tracker-worker-{config.app_id}-") as datadir:
        app = build_app(config, Path(datadir))
        worker = faust.Worker(
            app,
            loglevel=config.log_level.upper(),
            logging_config=logs.logging_config(config.log_format, config.log_level),
        )
        worker.execute_from_commandline()  # runs until SIGTERM, then stops gracefully
    return 0


def _serve(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker import asgi
    from tracker.export.server import build

    app = build(config)
    asgi.serve(app, config.exporter_host, config.exporter_port, config.log_format, config.log_level)
    return 0


def _simulate(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker import scenarios, simulate

    url = args.collector_url or f"http://{config.collector_host}:{config.collector_port}"
    try:
        scenario = scenarios.from_args(args)
    except ValueError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    if args.curves or args.backfill_days:
        return _simulate_curves(config, args, url)
    accepted = simulate.run(
        url,
        rate=args.rate,
        duration=args.duration,
        campaign_count=args.campaigns,
        seed=args.seed,
        scenario=scenario,
    )
    log.info("simulation finished", accepted=accepted)
    return 0


def _simulate_curves(config: settings.Settings, args: argparse.Namespace, url: str) -> int:
    from tracker import market, simulate

    try:
        curves = market.parse_curves(args.curves or "default")
    except (ValueError, OSError) as exc:
        print(f"tracker: --curves: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.backfill_days < config.max_age_days:
        print(
            f"tracker: --backfill-days must be from 0 to below the collector's max_age_days "
            f"({config.max_age_days}): older events are rejected",
            file=sys.stderr,
        )
        return 2
    accepted = 0
    if args.backfill_days:
        accepted += simulate.backfill(
            url, curves, days=args.backfill_days, seed=args.seed, calendar=config.calendar()
        )
    if args.duration != 0:
        accepted += simulate.run_curves(
            url, curves, duration=args.duration, seed=args.seed, calendar=config.calendar()
        )
    log.info("simulation finished", accepted=accepted)
    return 0


def _budget(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.decide import command

    return command.run(config, args)


def _report(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.report import command

    return command.run(config, args)


def _since(args: argparse.Namespace) -> int | None:
    """A replay's ``--since`` in epoch ms (None: from the start); exits 2, saying why,
    when it is no time."""
    from tracker.events import parse_ts

    try:
        return None if args.since is None else parse_ts(args.since)
    except ValueError as exc:
        print(f"tracker: --since: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _replay_dead_letters(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker import deadletters
    from tracker.kafka import KafkaUnavailable

    since = _since(args)
    try:
        summary = deadletters.run(config, since, args.dry_run)
    except KafkaUnavailable as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 0


def _import_spend(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.spend import command

    return command.run(config, args)


def _forward(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.forward import destinations, process

    try:
        chosen = destinations.configured(config)
    except ValueError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    if not chosen:
        print(
            "tracker: no destination is set up: set TRACKER_META_PIXEL_ID and "
            "TRACKER_META_ACCESS_TOKEN, the TRACKER_GOOGLE_ADS_* settings, or "
            "TRACKER_TIKTOK_PIXEL_CODE and TRACKER_TIKTOK_ACCESS_TOKEN",
            file=sys.stderr,
        )
        return 2
    if _may_evict(config, "forward"):
        return 2
    process.serve(config, chosen)
    return 0


def _replay_forwarding(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.forward import destinations, replay
    from tracker.kafka import KafkaUnavailable
    from tracker.store import StoreUnavailable

    since = _since(args)
    try:
        chosen = {d.name: d for d in destinations.configured(config)}
    except ValueError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    destination = chosen.get(args.destination)
    if destination is None:
        print(f"tracker: --destination {args.destination} is not set up", file=sys.stderr)
        return 2
    try:
        summary = replay.run(config, destination, since, args.dry_run)
    except (KafkaUnavailable, StoreUnavailable) as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 1
    except replay.Refused as exc:
        print(
            f"tracker: {args.destination} refuses the setup ({exc}); fix its settings and "
            "replay again",
            file=sys.stderr,
        )
        return 1
    print(summary.render())
    return 0


def _goals(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.export import rules

    return rules.run(config, rules.GOALS, args.file)


def _targets(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.export import rules

    return rules.run(config, rules.TARGETS, args.file)


def _check(config: settings.Settings, args: argparse.Namespace) -> int:
    from tracker.check import check

    report = check(config)
    print("\n".join(report.lines))
    return report.status


COMMANDS = {
    "collector": (_collector, "run the HTTP collector (pixel, batch API)"),
    "worker": (_worker, "run a Faust stream worker (Kafka -> Redis)"),
    "serve": (_serve, "run the exporter: /metrics and /v1/kpis"),
    "simulate": (_simulate, "send realistic traffic to the collector"),
    "budget": (_budget, "recommend how to split a budget, with the reasons"),
    "report": (_report, "write the stakeholder report (HTML, CSV or JSON)"),
    "replay-dead-letters": (
        _replay_dead_letters,
        "judge dead letters again with the current settings; send what passes to Kafka",
    ),
    "import-spend": (
        _import_spend,
        "import the ad platforms' spend exports (Google Ads, Meta, Microsoft Advertising)",
    ),
    "forward": (_forward, "send conversions to the ad platforms (Meta, Google Ads, TikTok)"),
    "replay-forwarding": (
        _replay_forwarding,
        "send one destination's dead-lettered conversions again, after a fix",
    ),
    "goals": (_goals, "print the conversion goal rules, or save a file of them (--file)"),
    "targets": (_targets, "print the KPI targets, or save a file of them (--file)"),
    "check": (_check, "ask Kafka and the store as the processes would; say what is there"),
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tracker", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        settings.add_arguments(sub, name)
        if name == "collector":
            sub.add_argument(
                "--workers",
                dest="collector_workers",
                metavar="INT",
                help="the same as --collector-workers",
            )
        if name == "simulate":
            sub.add_argument("--rate", type=float, default=200.0, help="events per second")
            sub.add_argument(
                "--duration", type=float, default=None, help="seconds; default forever"
            )
            sub.add_argument("--campaigns", type=int, default=20, help="number of campaigns")
            sub.add_argument("--seed", type=int, default=1, help="random seed")
            sub.add_argument("--collector-url", default=None, help="default from the settings")
            sub.add_argument(
                "--curves",
                default=None,
                help="known response curves per channel: 'default', a JSON object or a JSON "
                "file (see tracker/market.py); --rate and --campaigns then do not apply",
            )
            sub.add_argument(
                "--backfill-days",
                type=int,
                default=0,
                help="first send this many past days of the curves' traffic, oldest first",
            )
            from tracker.scenarios import add_arguments as scenario_arguments

            scenario_arguments(sub)
        if name == "budget":
            from tracker.decide.command import add_arguments as budget_arguments

            budget_arguments(sub)
        if name == "report":
            from tracker.report.command import add_arguments as report_arguments

            report_arguments(sub)
        if name == "replay-dead-letters":
            sub.add_argument(
                "--since", default=None, help="epoch ms or RFC 3339; default: the beginning"
            )
            sub.add_argument("--dry-run", action="store_true", help="only report, send nothing")
        if name == "import-spend":
            from tracker.spend.command import add_arguments as spend_arguments

            spend_arguments(sub)
        if name in ("goals", "targets"):
            sub.add_argument(
                "--file",
                default=None,
                help=f'JSON {{"{name}": [...]}} to save as the next version, as PUT /v1/{name}',
            )
        if name == "replay-forwarding":
            from tracker.forward.destinations import ALL

            sub.add_argument(
                "--destination",
                required=True,
                choices=[destination.name for destination in ALL],
                help="whose dead letters to send again",
            )
            sub.add_argument(
                "--since", default=None, help="epoch ms or RFC 3339; default: the beginning"
            )
            sub.add_argument("--dry-run", action="store_true", help="only report, send nothing")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = settings.load(args)
    except settings.SettingsError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_format, config.log_level)
    handler, _ = COMMANDS[args.command]
    return handler(config, args)


if __name__ == "__main__":
    sys.exit(main())
