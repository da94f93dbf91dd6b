"""``python -m tests.faults [scenario numbers]``: run the battery, print its table.

The last line reads ``faults: <n> scenarios, <a> acknowledged, lost <l>, counted twice
<t>``; the exit status is 0 only when both are 0 and every scenario's checks held.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
import traceback

from bench.conditions import describe
from harness import redis_cluster
from tests.faults.scenarios import SCENARIOS
from tests.faults.stage import CUT, REDIS_CLUSTER, Stage, staged
from tests.faults.truth import Outcome

COLUMNS = ("scenario", "s", "sent", "acked", "non-2xx", "lost", "twice", "pauses", "recovery")


def heal(stage: Stage) -> None:
    """Every broker and Redis node running, reachable and live, whatever a scenario did."""
    if stage.netns is None:
        # Fails when the broker is not running: starting it makes its namespace afresh.
        with contextlib.suppress(AssertionError):
            stage.cluster.act("reconnect", CUT)
    stage.cluster.heal()
    redis_cluster.heal(REDIS_CLUSTER)


def table(outcomes: list[Outcome]) -> str:
    rows = [COLUMNS]
    for o in outcomes:
        if o.skipped:
            rows.append((o.scenario, f"{o.seconds:.0f}", "skipped", "", "", "", "", "", ""))
            continue
        rows.append(
            (
                o.scenario,
                f"{o.seconds:.0f}",
                f"{o.sent:,}",
                f"{o.acknowledged:,}",
                f"{o.refused:,}",
                f"{o.lost:,}",
                f"{o.twice:,}",
                o.pauses,
                o.recovery,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    right = {1, 2, 3, 4, 5, 6}
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("only", nargs="*", type=int, help="scenario numbers (default: all)")
    args = parser.parse_args()
    chosen = [(n, s) for n, s in enumerate(SCENARIOS, 1) if not args.only or n in args.only]
    # aiokafka logs each failed connection to a broker the battery has cut off or killed
    # on purpose; the table says what came of it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    started = time.monotonic()
    print(describe(), flush=True)
    outcomes: list[Outcome] = []
    with staged() as stage:
        print(f"cluster {stage.cluster.bootstrap}, Redis {stage.redis_url}", flush=True)
        if stage.netns is not None:
            print(f"network namespaces unusable here: {stage.netns}", flush=True)
        for number, scenario in chosen:
            began = time.monotonic()
            try:
                outcome = scenario(stage)
            except Exception as exc:  # the battery goes on; the run fails
                traceback.print_exc()
                outcome = Outcome(f"{number} {scenario.__name__}")
                outcome.failures.append(f"did not finish: {exc!r}")
            healed = True
            try:
                heal(stage)
            except Exception as exc:  # no scenario after it would mean anything
                outcome.failures.append(f"the cluster was not healed after it: {exc!r}")
                healed = False
            outcome.seconds = time.monotonic() - began
            outcomes.append(outcome)
            verdict = "skipped" if outcome.skipped else "FAILED" if outcome.failures else "ok"
            print(f"{outcome.scenario}: {verdict} in {outcome.seconds:.0f} s", flush=True)
            if not healed:
                break
    print()
    print(table(outcomes))
    for o in outcomes:
        for line in o.notes:
            print(f"  {o.scenario}: {line}")
        if o.skipped:
            print(f"  {o.scenario}: SKIPPED: {o.skipped}")
        for line in o.failures:
            print(f"  {o.scenario}: FAILED: {line}")
    print(describe())
    print(f"duration: {time.monotonic() - started:.0f} s")
    ran = [o for o in outcomes if not o.skipped]
    lost = sum(o.lost for o in ran)
    twice = sum(o.twice for o in ran)
    print(
        f"faults: {len(ran)} scenarios, {sum(o.acknowledged for o in ran)} acknowledged, "
        f"lost {lost}, counted twice {twice}"
    )
    return 0 if lost == twice == 0 and not any(o.failures for o in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
