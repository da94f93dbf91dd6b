"""What the machine was doing while a benchmark ran: figures mean little without it."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def describe() -> str:
    cpu = "unknown cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores ({cpu}), load average {load}, "
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}"
    )


def busy_share(seconds: float) -> float:
    """The share of all cores' time spent busy over the next ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = ticks[3] + ticks[4]  # idle and iowait
        return sum(ticks) - idle, sum(ticks)

    busy, total = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy) / max(total_after - total, 1)


def settle(quiet: float = 0.25, within: float = 90.0, window: float = 2.0) -> str:
    """Wait until the machine is mostly idle, ``within`` seconds at most; say how busy it was.

    Other work on the measured cores lowers every figure: in one run started right
    after the broker, the bare ceiling came out 16% low. (A broker that is merely
    cold is another matter, which ``bench/collector``'s ``--kafka-warmup`` covers.)
    """
    if not Path("/proc/stat").exists():
        return "machine load before the run: unknown (no /proc/stat)"
    deadline = time.monotonic() + within
    while True:
        share = busy_share(window)
        if share <= quiet:
            return f"machine before the run: {share:.0%} busy"
        if time.monotonic() > deadline:
            return f"warning: the machine was still {share:.0%} busy after {within:.0f} s"
