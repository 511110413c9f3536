"""``make up`` end to end: what it runs after installing (``python -m devstack``) brings up
Postgres, Redis, migrations, the API, the worker and the monitoring daemons, prints a curl that
saves a draft (202), and Ctrl-C stops everything it started.

Every port is a free one and ``.data`` lives in a temporary directory, so the test never meets a
developer's own ``make up``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.servers import free_port

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 120
STOP_TIMEOUT_S = 45


pytestmark = pytest.mark.live

def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the ``postgres`` OS user can enter (pytest's tmp_path is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="dw-make-up-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(UP_TIMEOUT_S + STOP_TIMEOUT_S + 60)
def test_make_up_prints_a_curl_that_saves_and_ctrl_c_stops_everything(workdir: Path) -> None:
    ports = {name: free_port() for name in ("PORT", "WORKER_METRICS_PORT", "DEV_PG_PORT", "DEV_REDIS_PORT",
                                            "DEV_PROMETHEUS_PORT", "DEV_ALERTMANAGER_PORT", "DEV_ALERT_SINK_PORT")}
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET")}
    env.update({name: str(port) for name, port in ports.items()})
    env.update({"DRAFTWIRE_ENV": "dev", "PYTHONPATH": str(REPO)})
    # Started the way a script's background job is (SIGINT ignored), and later signalled alone:
    # Ctrl-C must still reach devstack, and devstack itself must stop everything it started.
    proc = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(UP_TIMEOUT_S), "make up did not come up:\n" + "".join(lines[-40:])
        out = "".join(lines)
        assert f"http://127.0.0.1:{ports['PORT']}" in out and f"http://127.0.0.1:{ports['WORKER_METRICS_PORT']}" in out
        assert (workdir / ".data" / "pg").is_dir(), "Postgres data is not under ./.data"
        block = re.search(r"^\s*(curl .*?)\n\s*\n", out, re.S | re.M)
        assert block, out
        command = block.group(1).replace("\\\n", " ")
        done = subprocess.run([*shlex.split(command), "-w", "\n%{http_code}"], capture_output=True, text=True,
                              timeout=30, check=False)
        body, status = done.stdout.rsplit("\n", 1)
        assert status == "202", done.stdout + done.stderr
        reply = json.loads(body)
        assert reply["status"] == "queued" and reply["version"] == 1
        assert reply["jobId"] == f"draft:dev-user:{reply['draftId']}"
    finally:
        os.kill(proc.pid, signal.SIGINT)
        try:
            code: int | None = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # Ctrl-C did not work: stop it anyway, then fail
            code = None
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(STOP_TIMEOUT_S)
        reader.join(5)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0, "Ctrl-C did not stop make up:\n" + "".join(lines[-20:])
    assert "==> stopping" in "".join(lines)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_listening(port) for port in ports.values()):
        time.sleep(0.1)
    assert not [name for name, port in ports.items() if _listening(port)], "something make up started is still up"
