"""Ceiling for the worker: a Faust agent that only counts what ``stream.take()`` hands it.

``python -m bench.faust_counter --topic T --records N --app-id A`` prints records/s
once it has seen ``N`` records, then exits.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import tempfile
import time
from typing import Any

import faust


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()

    # Faust makes its data directory in the working directory unless told otherwise,
    # and never removes it: the repository filled with bench-*-counter-data folders.
    datadir = tempfile.mkdtemp(prefix=f"{args.app_id}-")
    atexit.register(shutil.rmtree, datadir, True)
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        datadir=datadir,
    )
    topic = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    state = {"seen": 0, "started": 0.0}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for values in stream.take(1000, within=0.05):
            state["started"] = state["started"] or time.perf_counter()
            state["seen"] += len(values)
            if state["seen"] >= args.records:
                elapsed = time.perf_counter() - state["started"]
                print(f"faust-counter {args.records / elapsed:.0f} records/s", flush=True)
                os.kill(os.getpid(), signal.SIGTERM)

    # Faust would send print() to its log; the figure must reach our stdout.
    faust.Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
