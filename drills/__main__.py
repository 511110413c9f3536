"""``python -m drills [--alert NAME] [--quick] [--json FILE]``: run the game-day drills on a
throwaway live stack, print progress, then the report table."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

from drills import ALL, EXPLAINED
from drills.live import live_stack
from drills.model import Drill, Result
from drills.runner import run_drill, table


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def select(alert: str | None, quick: bool) -> list[Drill]:
    chosen = [d for d in ALL if (alert is None or d.alert == alert or d.key == alert) and (d.quick or not quick)]
    if alert and not chosen and not any(e.alert == alert for e in EXPLAINED):
        names = sorted({d.alert for d in ALL} | {e.alert for e in EXPLAINED})
        raise SystemExit(f"no drill for {alert!r}; known alerts: {', '.join(names)}")
    return chosen


async def run(drills: list[Drill]) -> list[Result]:
    results = []
    say(f"starting the drill stack for {len(drills)} drill(s)")
    with live_stack() as live:
        say("stack up: Postgres, Redis (AOF), api, api-2, worker, gateway, alert sink, Alertmanager")
        try:
            for number, drill in enumerate(drills, 1):
                say(f"drill {number}/{len(drills)}: {drill.key}")
                results.append(await run_drill(live, drill, say))
        finally:
            await live.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alert", help="run only this alert's drill(s) (e.g. RedisDown)")
    parser.add_argument("--quick", action="store_true", help="only the short subset make test runs")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the throwaway stack is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    drills = select(args.alert, args.quick)
    results = asyncio.run(run(drills))
    explained = [e for e in EXPLAINED if args.alert in (None, e.alert)] if not args.quick else []
    print(table(results, explained))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) | {"verdict": r.verdict} for r in results], indent=1))
    failed = [r.key for r in results if r.verdict != "pass"]
    if failed:
        print(f"drills failed: {', '.join(failed)}; see the lines above", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
