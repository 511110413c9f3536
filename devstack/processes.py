"""Our own processes (``draftwire api``, ``worker``, ...) started and stopped the one way every
caller does it: ``make up``, the test suite, the load tests and the benchmarks.

Each process gets its port, its environment and a log file; it runs in its own process group
(so a signal meant for it reaches all of its children, Granian's workers included) and counts as
started once ``/healthz`` answers 200.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.servers import free_port

DRAFTWIRE = str(Path(sys.executable).with_name("draftwire"))
PORT_VARIABLE = {"api": "PORT", "gateway": "PORT", "worker": "WORKER_METRICS_PORT"}


@dataclass
class ServiceProcess:
    kind: str
    """``api``, ``gateway`` or ``worker`` (any ``draftwire`` subcommand that serves /healthz)."""
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    args: list[str] = field(default_factory=list)
    argv: list[str] | None = None
    """A whole command line instead of ``draftwire <kind> <args>`` (e.g. a bare server to compare with)."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.kind} is not running"
        return self.proc.pid

    def start(self, timeout: float = 30) -> ServiceProcess:
        env = {**os.environ, **self.env, PORT_VARIABLE.get(self.kind, "PORT"): str(self.port)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
            self.argv or [DRAFTWIRE, self.kind, *self.args], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=0.5) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.kind} not healthy within {timeout} s: {self.tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 35) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        self._log.close()
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"_raw": raw})
        return lines

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:]) if self.log_path.exists() else ""

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as answer:  # noqa: S310 - loopback
            text = answer.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += sample.value
        return total


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and all its descendants, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        pending.extend(int(c) for c in children)
    return total


def migrate(env: dict[str, str]) -> None:
    """``draftwire migrate`` with ``env``; raises with its output when it fails."""
    done = subprocess.run([DRAFTWIRE, "migrate"], env={**os.environ, **env}, capture_output=True, check=False)  # noqa: S603
    if done.returncode:
        raise RuntimeError(f"draftwire migrate failed: {(done.stdout + done.stderr).decode()[-800:]}")
