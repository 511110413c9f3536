"""The load testers' suite: every scenario of a config through Locust, gated by the contract's SLOs.

    python -m loadtests.suite --config loadtests/configs/smoke.yaml --host http://127.0.0.1:8080 \\
        --output loadtests/reports/$(date +%F) --label smoke [--workers 2] [--only broadcast]
    python -m loadtests.suite --config loadtests/configs/smoke.yaml --start-stack ...

With ``--host`` the API's ``JWT_SECRET`` must be in the environment (the users' tokens are signed
with it), and the API should allow the load: ``RATE_LIMIT_REQUESTS`` above the broadcast's publish
rate x 60 and ``REALTIME_MAX_CONNECTIONS`` above the subscribers (``--start-stack`` does both).
Per scenario, ``<output>/<scenario>/`` gets Locust's HTML report and CSVs, its log, the metrics
snapshots before and after, and a PNG chart; ``<output>/summary.{json,md}`` gets the table.
Exit code: 0 when every threshold held, 1 when one broke, 2 when nothing broke but a generator
saturated or a timing figure missed while the host was disturbed (steal time; inconclusive).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from app.auth import issue
from loadtests import gate, generators, report, results, runner

SPAWN_RATE = 50.0


@dataclass
class Target:
    host: str
    secret: str


@contextlib.contextmanager
def own_stack(*, subscribers: int, rate: float) -> Iterator[Target]:
    """A throwaway stack for the run (the one place that knows the launcher)."""
    from devstack.stack import SECRET, stack

    with stack(RATE_LIMIT_REQUESTS=str(max(1000, int(rate * 60 * 10))),
               REALTIME_MAX_CONNECTIONS=str(max(500, subscribers * 2 + 100))) as s:
        yield Target(s.api, SECRET)


def users_of(name: str, p: dict[str, Any]) -> int | None:
    """How many Locust users the scenario needs (None: its shape decides)."""
    return {"autosave": lambda: int(p.get("typists", 5)) + int(p.get("abusers", 1)),
            "catchup": lambda: int(p.get("users", 5)),
            "broadcast": lambda: int(p.get("subscribers", 10)) + 1,
            "build": lambda: int(p.get("users", 2)),
            "capacity": lambda: None}[name]()


def default_timeout(name: str, p: dict[str, Any]) -> float:
    """An upper bound: scenarios end themselves when done; this only stops one that hangs."""
    if name == "broadcast":
        return float(p.get("events", 100)) / float(p.get("rate", 50)) + 120
    if name == "capacity":
        return float(p.get("max_steps", 10)) * float(p.get("step_s", 10)) + 30
    if name == "autosave":
        return float(p.get("duration_s", 10)) + 60
    return 180


def slo_lines(name: str, thresholds: dict[str, Any]) -> dict[str, float]:
    rules = thresholds.get(name, {})
    keys = {"autosave": ["post_p95_ms", "post_target_p95_ms"], "catchup": ["p95_ms"], "broadcast": ["p95_ms"]}
    lines = {f"SLO {k} {rules[k]['max']}": float(rules[k]["max"]) for k in keys.get(name, []) if "max" in rules.get(k, {})}
    if name == "capacity":
        lines[f"step limit p95 {rules['limits']['p95_ms']}"] = float(rules["limits"]["p95_ms"])
    return lines


def run_scenario(name: str, params: dict[str, Any], *, args: argparse.Namespace, target: Target,
                 thresholds: dict[str, Any], output: Path) -> tuple[list[gate.Figure], dict[str, Any]]:
    directory = output / name
    directory.mkdir(parents=True, exist_ok=True)
    admin = issue(target.secret, f"loadtest-suite-{uuid.uuid4().hex[:8]}", admin=True, ttl_seconds=6 * 3600)
    if name == "capacity":
        params = {**params, "p95_limit_ms": thresholds["capacity"]["limits"]["p95_ms"],
                  "error_limit": thresholds["capacity"]["limits"]["error_ratio"]}
    params = {"run_id": uuid.uuid4().hex[:12], **params}
    print(f"[suite] {name}: starting ({', '.join(f'{k}={v}' for k, v in params.items() if k != 'run_id')})", flush=True)
    before = report.snapshot(target.host, admin, directory, "before")
    done = runner.run(name, host=target.host, directory=directory, params=params, users=users_of(name, params),
                      spawn_rate=float(params.get("spawn_rate", SPAWN_RATE)),
                      timeout_s=float(params.get("timeout_s_total", default_timeout(name, params))),
                      workers=args.workers, secret=target.secret, progress_s=args.progress,
                      log=lambda line: print(line, flush=True))
    after = report.snapshot(target.host, admin, directory, "after")
    outcome = results.read(directory)
    limits = thresholds.get("generator", {})
    notes: dict[str, str] = {}
    if name == "capacity":
        measured, notes, saturated = generators.capacity(outcome, done.cpu, limits)
        saturated = saturated or generators.saturation(done.cpu, outcome, limits)  # a late event loop too
    else:
        measured, saturated = results.FIGURES[name](outcome), generators.saturation(done.cpu, outcome, limits)
    if done.timed_out:
        notes = {k: "did not finish before its time limit" for k in thresholds.get(name, {})}
    disturbed = generators.disturbance(done.cpu, outcome, limits)
    figures = gate.judge(name, measured, thresholds.get(name, {}), saturated=saturated, disturbed=disturbed,
                         notes=notes)
    if done.timed_out and not saturated:
        for f in figures:
            if f.verdict is gate.Verdict.PASS:
                f.verdict = gate.Verdict.FAIL
    report.chart(name, directory, slo_lines(name, thresholds))
    info = {"seconds": done.seconds, "timed_out": done.timed_out, "saturated": saturated,
            "disturbed": disturbed, "host_steal_percent": done.cpu.steal_percent(),
            "generator_cpu": done.cpu.peak_mean(), "generator_processes": done.cpu.summary(),
            "params": params, "counts": outcome.counts, "capacity": outcome.extra.get("capacity"),
            "metrics_delta": {k: after[k] - before[k] for k in before}, "workers": args.workers}
    for f in figures:
        print(f"[suite] {name}: {f.figure} {report.show(f.measured)} (threshold {f.threshold}): {f.verdict.value}"
              + (f" - {f.note}" if f.note else ""), flush=True)
    return figures, info


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtests.suite", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, type=Path, help="loadtests/configs/<name>.yaml")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", help="the API under test, e.g. http://127.0.0.1:8080 (JWT_SECRET from the environment)")
    where.add_argument("--start-stack", action="store_true", help="start a throwaway stack (Postgres, Redis, API, worker)")
    p.add_argument("--output", type=Path, help="report directory (default loadtests/reports/<date>-<label>)")
    p.add_argument("--label", help="a name for the run (default: the config's file name)")
    p.add_argument("--workers", type=int, default=0, help="Locust distributed mode: a master and N worker processes")
    p.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    p.add_argument("--progress", type=float, default=5, help="seconds between progress lines")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    config = yaml.safe_load(args.config.read_text()) or {}
    label = args.label or args.config.stem
    output = args.output or Path("loadtests/reports") / f"{date.today().isoformat()}-{label}"
    scenarios: dict[str, dict[str, Any]] = config.get("scenarios") or {}
    unknown = set(scenarios) - set(results.FIGURES) - {"capacity"}
    if unknown:
        print(f"error: unknown scenario(s) {sorted(unknown)} in {args.config}; known: autosave, catchup, broadcast, "
              "build, capacity", file=sys.stderr)
        return 64
    selected = {n: p or {} for n, p in scenarios.items() if not args.only or n in args.only}
    if not selected:
        print(f"error: no scenario selected (config has {sorted(scenarios)})", file=sys.stderr)
        return 64
    try:
        thresholds = gate.load_thresholds(config.get("thresholds"))
    except ValueError as exc:
        print(f"error: {exc} in {args.config}", file=sys.stderr)
        return 64
    output.mkdir(parents=True, exist_ok=True)
    if args.start_stack:
        b = selected.get("broadcast", {})
        print("[suite] starting a throwaway stack (Postgres, Redis, migrations, API, worker)...", flush=True)
        where: contextlib.AbstractContextManager[Target] = own_stack(
            subscribers=int(b.get("subscribers", 10)), rate=float(b.get("rate", 50)))
    else:
        secret = os.environ.get("JWT_SECRET")
        if not secret:
            print("error: JWT_SECRET is not set; export the API's secret (the suite signs its users' tokens) "
                  "or use --start-stack", file=sys.stderr)
            return 64
        where = contextlib.nullcontext(Target(args.host, secret))
    started, figures, infos = time.monotonic(), [], {}
    with where as target:
        for name, params in selected.items():
            found, info = run_scenario(name, params, args=args, target=target, thresholds=thresholds, output=output)
            figures += found
            infos[name] = info
    outcome = gate.outcome(figures)
    report.write(output, label=label, host=target.host, outcome=outcome, figures=figures, scenarios=infos)
    print(f"[suite] {outcome.upper()} in {time.monotonic() - started:.0f} s; report: {output}/summary.md", flush=True)
    return gate.EXIT_CODES[outcome]


if __name__ == "__main__":
    sys.exit(main())
