"""``tracker import-spend``: the ad platforms' spend exports into the events topic.

Reads the files (standard input for none, or ``-``), plans the spend figures
(:func:`tracker.spend.importer.plan`), sends them as the collector sends events
(:func:`tracker.spend.delivery.deliver`) unless ``--dry-run``, and prints what it
imported. Money is converted and days are placed with ``TRACKER_CURRENCY_RATES``,
``TRACKER_BASE_CURRENCY`` and ``TRACKER_TIMEZONE`` from the environment: the workers'
own, which the import must share (no flags for them, so it cannot differ by accident).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.channels import CHANNELS
from tracker.settings import Settings
from tracker.spend.formats import PLATFORMS

if TYPE_CHECKING:
    from tracker.spend.importer import Source

STDIN = "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="an export (CSV); none or -: standard input"
    )
    parser.add_argument(
        "--platform",
        choices=("auto", *PLATFORMS),
        default="auto",
        help="whose export the files are; auto: each by its header",
    )
    parser.add_argument(
        "--account-timezone",
        metavar="ZONE",
        default=None,
        help="IANA time zone of the ad accounts' days; default: the reporting zone "
        "(TRACKER_TIMEZONE)",
    )
    parser.add_argument(
        "--channel",
        choices=CHANNELS,
        default=None,
        help="channel of the spend; default: search for google and microsoft, social for meta",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be imported; send nothing"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``tracker import-spend``: 0 once sent; 2 for input refused, 1 when Kafka is away."""
    from tracker.kafka import KafkaUnavailable, ensure_topics
    from tracker.spend import campaigns, delivery, importer

    try:
        sources = [_source(name) for name in args.files or [STDIN]]
    except OSError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    try:
        mapping = campaigns.load(settings.campaign_map)
    except (OSError, ValueError) as exc:
        print(f"tracker: the campaign map: {exc}", file=sys.stderr)
        return 2
    options = importer.Options(args.platform, args.account_timezone, args.channel, mapping)
    try:
        planned = importer.plan(sources, options, settings, time.time_ns() // 1_000_000)
    except importer.Refused as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(planned.summary.render(None))
        return 0

    async def send() -> None:
        await ensure_topics(settings)
        await delivery.deliver(settings, planned.events)

    try:
        asyncio.run(send())
    except KafkaUnavailable as exc:
        print(f"tracker: {exc}; nothing or part was sent: import again", file=sys.stderr)
        return 1
    print(planned.summary.render(settings.events_topic))
    return 0


def _source(name: str) -> Source:
    from tracker.spend.importer import Source

    if name == STDIN:
        return Source("standard input", sys.stdin.buffer.read())
    return Source(name, Path(name).read_bytes())
