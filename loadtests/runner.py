"""Running one scenario with Locust, headless: a single process, or Locust's distributed mode (a
master and ``workers`` worker processes on this machine; workers elsewhere may join the same
master). Locust writes its HTML report and CSVs into the scenario's directory; the generator's
CPU is watched the whole time and a progress line is printed every few seconds."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.generators import CpuWatch
from loadtests.results import PREFIX

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = Path(__file__).with_name("scenarios")
LOCUST = str(Path(sys.executable).with_name("locust"))


@dataclass
class Run:
    directory: Path
    seconds: float
    timed_out: bool
    cpu: CpuWatch
    exit_codes: list[int]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _aggregated(stats: Path) -> tuple[int, int]:
    try:
        with stats.open() as f:
            for row in csv.DictReader(f):
                if row["Name"] == "Aggregated":
                    return int(row["Request Count"]), int(row["Failure Count"])
    except (OSError, KeyError, ValueError):
        pass
    return 0, 0


def run(name: str, *, host: str, directory: Path, params: dict[str, Any], users: int | None, spawn_rate: float,
        timeout_s: float, workers: int, secret: str, progress_s: float = 5, log: Any = print) -> Run:
    """Run scenario ``name`` until it finishes (or ``timeout_s``), its artifacts in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "started").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JWT_SECRET": secret, "LOADTEST_PARAMS": json.dumps(params),
           "LOADTEST_RESULT": str(directory / "result.json"), "LOADTEST_CSV": str(directory / PREFIX),
           "LOADTEST_STARTED": str(directory / "started")}
    base = [LOCUST, "-f", str(SCENARIOS / f"{name}.py")]
    head = [*base, "--headless", "--host", host, "--csv", str(directory / PREFIX), "--csv-full-history",
            "--html", str(directory / "locust.html"), "--only-summary", "--exit-code-on-error", "0",
            "--run-time", f"{int(timeout_s)}s", "--stop-timeout", "5"]
    if users is not None:
        head += ["--users", str(users), "--spawn-rate", str(spawn_rate)]
    port = _free_port()
    if workers:
        head += ["--master", "--expect-workers", str(workers), "--master-bind-host", "127.0.0.1",
                 "--master-bind-port", str(port)]
    cpu = CpuWatch()
    procs: list[subprocess.Popen[bytes]] = []
    logs = [(directory / "locust.log").open("wb")]
    started = time.monotonic()
    try:
        procs.append(subprocess.Popen(head, env=env, stdout=logs[0], stderr=subprocess.STDOUT, cwd=ROOT))
        for i in range(workers):
            logs.append((directory / f"locust-worker-{i + 1}.log").open("wb"))
            procs.append(subprocess.Popen([*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                                           "--loglevel", "WARNING"], env=env, stdout=logs[-1], stderr=subprocess.STDOUT,
                                          cwd=ROOT))
        cpu.start()
        watching = False
        deadline = started + timeout_s + 90  # Locust's own --run-time ends it first; this is the backstop
        next_line = started + progress_s
        while procs[0].poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: Locust still running {timeout_s + 90:.0f} s after start; see {directory}/locust.log")
            try:
                procs[0].wait(0.5)
            except subprocess.TimeoutExpired:
                pass
            if not watching and (directory / "started").exists():
                # From the test's start: Locust's own start-up (imports) is not load generation.
                # The master of a distributed run generates no load; its workers are watched.
                for proc in procs[1:] if workers else procs:
                    cpu.watch(proc.pid)
                watching = True
            if time.monotonic() >= next_line:
                next_line += progress_s
                samples, failures = _aggregated(directory / f"{PREFIX}_stats.csv")
                log(f"[suite] {name}: {time.monotonic() - started:.0f} s, {samples:,} samples, {failures:,} failed, "
                    f"generator CPU {cpu.latest():.0f} %")
        for proc in procs[1:]:
            proc.wait(30)
    finally:
        cpu.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        for f in logs:
            f.close()
    text = (directory / "locust.log").read_text(errors="replace")
    timed_out = "Time limit reached" in text or "--run-time limit reached" in text
    if not (directory / f"{PREFIX}_stats.csv").exists():
        raise RuntimeError(f"{name}: Locust wrote no stats (exit {procs[0].returncode}); last lines:\n{text[-1500:]}")
    return Run(directory, time.monotonic() - started, timed_out, cpu, [p.returncode or 0 for p in procs])
