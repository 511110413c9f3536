"""Throwaway PostgreSQL and Redis servers for ``make up``, the test suite, the load tests and the
benchmarks.

Each runs from a directory of its own on a free loopback port and never touches anyone's data.
PostgreSQL refuses to run as root, so as root its commands run as the ``postgres`` OS user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


class DevstackError(RuntimeError):
    """A throwaway server could not be started; the message says what to install or check."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevstackError(f"server on port {port} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise DevstackError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM a child still running, then SIGKILL if it has not exited within ``timeout`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise DevstackError("PostgreSQL server binaries not found: apt-get install postgresql-15")


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    """``initdb`` + ``pg_ctl`` in ``root``; database ``draftwire`` owned by superuser ``postgres``."""

    root: Path
    port: int = field(default_factory=free_port)
    database: str = "draftwire"

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*_as_postgres(), *args], capture_output=True, check=False)  # noqa: S603

    def start(self) -> PostgresServer:
        bin_dir = _pg_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            done = self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                             "-E", "UTF8", "--no-sync")
            if done.returncode:
                raise DevstackError(f"initdb failed: {done.stderr.decode()[-500:]}")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=1000"
        done = self._run(str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                         "-o", options, "-w", "-t", "30", "start")
        if done.returncode:
            log_path = self.root / "postgres.log"
            log = log_path.read_text(errors="replace")[-800:] if log_path.exists() else ""
            raise DevstackError(f"pg_ctl start failed: {done.stderr.decode()[-300:]} {log}")
        created = self._run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            self.database)
        if created.returncode and b"already exists" not in created.stderr:
            raise DevstackError(f"createdb failed: {created.stderr.decode()[-300:]}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class RedisServer:
    """``redis-server`` in the foreground of a child process; no persistence unless ``aof``."""

    root: Path
    port: int = field(default_factory=free_port)
    aof: bool = False
    password: str | None = None
    """``requirepass`` of the default user (given on stdin, never on the command line); None: no AUTH."""
    unix_socket: Path | None = None
    """Also listen on this unix socket (mode 700); None: TCP only."""
    tls: tuple[Path, Path] | None = None
    """(certificate, key) PEM files: ``port`` then speaks TLS only (``rediss://``), no client
    certificate asked for; None: plain TCP."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise DevstackError("redis-server not found: apt-get install redis-server")
        if self.password and any(c in self.password for c in '"\\\n'):
            raise DevstackError("RedisServer password: no quotes, backslashes or newlines")
        self.root.mkdir(parents=True, exist_ok=True)
        listen = ["--port", str(self.port)]
        if self.tls:
            cert, key = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                      "--tls-key-file", str(key), "--tls-auth-clients", "no"]
        if self.unix_socket:
            listen += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        args = [binary, "-", *listen, "--bind", "127.0.0.1", "--dir", str(self.root), "--save", "",
                "--appendonly", "yes" if self.aof else "no", "--logfile", str(self.root / "redis.log"),
                "--databases", "64"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,  # noqa: S603
                                     stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None
        if self.password:
            self.proc.stdin.write(f'requirepass "{self.password}"\n'.encode())
        self.proc.stdin.close()  # "-" reads its configuration from stdin until EOF
        wait_for_port(self.port, 10, self.proc)
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
