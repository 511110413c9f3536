"""The Locust scenario runs against a real API and its SLO gate can fail a run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.processes import TEST_SECRET, ServiceProcess

LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILE = str(Path(__file__).parents[2] / "loadtests" / "locustfile.py")


def _run(api: ServiceProcess, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCUST, "-f", LOCUSTFILE, "--headless", "-u", "5", "-r", "5", "-t", "4s", "--host", api.url,
         "--only-summary", "--stop-timeout", "2"],
        env={**os.environ, "JWT_SECRET": TEST_SECRET, "PYTHONPATH": str(Path(LOCUSTFILE).parents[1]), **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture(scope="module")
def load_api(spawn: Callable[..., ServiceProcess]) -> ServiceProcess:
    return spawn("api")


def test_scenario_passes_when_slos_hold(load_api: ServiceProcess) -> None:
    """A short run of the writer scenario completes with exit code 0 and reports the SLOs held."""
    done = _run(load_api)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "SLOs held" in done.stdout + done.stderr


def test_scenario_fails_when_a_threshold_is_broken(load_api: ServiceProcess) -> None:
    """With an impossible p95 threshold the same run exits 1 naming the broken SLO."""
    done = _run(load_api, SLO_AUTOSAVE_P95_MS="0.001")
    assert done.returncode == 1
    assert "SLO BROKEN: autosave p95" in done.stdout + done.stderr
