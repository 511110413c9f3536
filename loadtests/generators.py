"""Watching the load generators themselves: the CPU of every Locust process (psutil, one sample a
second) and the schedule lag they report (the ``GEN schedule lag`` row). A scenario whose
generator was saturated is inconclusive: its latencies are partly the generator's own.

And the machine under them: on a virtual machine the hypervisor may take CPU time from every
process at once (``steal`` in ``/proc/stat``). A latency or capacity figure that missed its
threshold while the hypervisor took more than ``generator.max_steal_percent`` is inconclusive
too: its latencies are partly the neighbours'. (docs/BENCHMARKS.md, ninth session: in the
broadcast pairs f31-f36, under 10-32 % steal, the Node peer's p95 was 2.6-15 s and Draftwire's
0.6-10 s, against tens of milliseconds in the undisturbed pairs.)"""

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
    host: list[tuple[float, float | None, float]] = field(default_factory=list)
    """The whole machine, one sample a tick: (time, steal, total) CPU seconds over all cores
    (steal None where the kernel does not report it)."""
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
        self._sample_host()
        self._thread = threading.Thread(target=self._run, name="generator-cpu", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = self._sample_host()
            for pid, proc in list(self._procs.items()):
                try:
                    self.samples[pid].append((now, proc.cpu_percent(None)))
                except psutil.Error:
                    self._procs.pop(pid)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample_host()

    def _sample_host(self) -> float:
        now, times = time.time(), psutil.cpu_times()
        # guest time is counted in user time already
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        self.host.append((now, getattr(times, "steal", None), total))
        return now

    def steal_percent(self, start: float = 0, end: float = float("inf")) -> float | None:
        """The share of the machine's CPU time the hypervisor took between ``start`` and ``end``
        (first and last host sample inside), or None without two samples there or a steal column."""
        window = [s for s in self.host if start <= s[0] <= end]
        if len(window) < 2:
            return None
        (_, steal0, total0), (_, steal1, total1) = window[0], window[-1]
        if steal0 is None or steal1 is None or total1 <= total0:
            return None
        return round(min(100.0, max(0.0, 100 * (steal1 - steal0) / (total1 - total0))), 1)  # counters can glitch

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


def disturbance(cpu: CpuWatch, outcome: Outcome, limits: dict[str, Any]) -> str | None:
    """Why the machine itself was disturbed during a scenario (steal time above
    ``max_steal_percent`` over the run, or over any step of the capacity scenario), or None when
    it was not (or cannot say: no steal column)."""
    limit = float(limits.get("max_steal_percent", 5))
    steps = (outcome.extra.get("capacity") or {}).get("steps", [])
    shares = [cpu.steal_percent(), *(cpu.steal_percent(step["start"], step["end"]) for step in steps)]
    steal = max((share for share in shares if share is not None), default=None)
    if steal is None or steal <= limit:
        return None
    return (f"host disturbed: the hypervisor took {steal} % of the machine's CPU time (steal, over "
            f"{limit:g} %); run it again")


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
