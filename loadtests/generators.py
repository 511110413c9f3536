"""Watching the load generators themselves: the CPU of every Locust process (psutil, one sample a
second) and the schedule lag they report (the ``GEN schedule lag`` row). A scenario whose
generator was saturated is inconclusive: its latencies are partly the generator's own."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from loadtests.results import Outcome

LAG_ROW = ("GEN", "schedule lag")


@dataclass
class CpuWatch:
    """Samples the CPU % (of one core) of each watched process every ``interval`` seconds."""

    interval: float = 1.0
    samples: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)  # the first call only sets the baseline
        except psutil.Error:
            return
        self._procs[pid] = proc
        self.samples[pid] = []

    def start(self) -> CpuWatch:
        self._thread = threading.Thread(target=self._run, name="generator-cpu", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.time()
            for pid, proc in list(self._procs.items()):
                try:
                    self.samples[pid].append((now, proc.cpu_percent(None)))
                except psutil.Error:
                    self._procs.pop(pid)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def latest(self) -> float:
        """The busiest process's last sample (for progress lines)."""
        return max((s[-1][1] for s in self.samples.values() if s), default=0.0)

    def peak_mean(self, start: float = 0, end: float = float("inf")) -> float:
        """The highest mean CPU % of any one process between ``start`` and ``end``."""
        means = []
        for series in self.samples.values():
            values = [v for t, v in series if start <= t <= end]
            if values:
                means.append(sum(values) / len(values))
        return max(means, default=0.0)

    def summary(self) -> dict[str, Any]:
        return {str(pid): {"samples": len(s), "mean": round(sum(v for _, v in s) / len(s), 1) if s else None,
                           "max": max((v for _, v in s), default=None)} for pid, s in self.samples.items()}


def saturation(cpu: CpuWatch, outcome: Outcome, limits: dict[str, Any]) -> str | None:
    """Why the generator was saturated during a scenario, or None when it kept up."""
    reasons = []
    max_cpu, fraction = float(limits.get("max_cpu_percent", 90)), float(limits.get("busy_fraction", 0.25))
    for pid, series in cpu.samples.items():
        busy = [v for _, v in series if v > max_cpu]
        if series and len(busy) >= max(1, fraction * len(series)):
            reasons.append(f"process {pid} above {max_cpu:.0f} % CPU in {len(busy)} of {len(series)} seconds")
    lag = outcome.p95(*LAG_ROW)
    if lag is not None and lag > float(limits.get("max_schedule_lag_ms", 100)):
        reasons.append(f"behind schedule: event-loop lag p95 {lag:.0f} ms")
    return "generator saturated: " + "; ".join(reasons) if reasons else None


def capacity(outcome: Outcome, cpu: CpuWatch, limits: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, str], str | None]:
    """The capacity figure: the last step that held before the first one that broke or that the
    generator could not drive (then the figure is a lower bound and the verdict inconclusive)."""
    result = outcome.extra.get("capacity") or {}
    max_cpu = float(limits.get("max_cpu_percent", 90))
    last: dict[str, Any] | None = None
    saturated: str | None = None
    for step in result.get("steps", []):
        step["generator_cpu"] = round(cpu.peak_mean(step["start"], step["end"]), 1)
        if step["generator_cpu"] > max_cpu:
            saturated = (f"generator saturated at step {step['step']} ({step['generator_cpu']} % CPU); "
                         f"capacity is at least the last step that held")
            break
        if not step["held"]:
            break
        last = step
    note = ""
    if last:
        note = f"{last['users']} savers, p95 {last['p95_ms']} ms, errors {last['error_ratio']}"
    if result.get("stopped_because"):
        note = f"{note}; {result['stopped_because']}" if note else result["stopped_because"]
    return {"last_held_rate": last["rate"] if last else None}, {"last_held_rate": note}, saturated
