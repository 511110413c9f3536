"""A runbook section's **Check** commands, extracted from the Markdown and run against the drill's
stack.

The shell helpers come from the runbooks' own "Before you start" block (docs/runbooks/README.md):
its function definitions (``promq``...) are taken as written; the variables it documents
(``API``, ``API2``, ``WORKER``, ``WORKER2``, ``PROM``, ``AM``, ``TOKEN``) are set to the drill's
URLs. ``dc`` (docker compose) does not exist outside compose, so lines that call it are listed
as skipped, not run; ``logs`` reads the drill's process logs instead of ``dc logs``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.monitoring import REPO

RUNBOOKS = REPO / "docs" / "runbooks"
VARIABLES = ("API", "API2", "WORKER", "WORKER2", "PROM", "AM", "TOKEN")
"""What the README's "Before you start" block asks the reader to set; a drill sets the same."""
DRILL_LOGS = "logs() { cat \"$DRILL_LOGS\"/*.log | jq -cR 'fromjson? // empty'; }"
"""``logs`` for a stack without compose: every JSON line the drill's processes wrote."""
CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class CheckRun:
    """One Check command and what it did."""

    command: str
    code: int | None
    """Exit status; None when skipped."""
    output: str
    skipped: str = ""
    """Why it was not run (compose-only)."""

    @property
    def ran(self) -> bool:
        return self.code is not None


def fenced_bash(text: str) -> list[list[str]]:
    """The lines of every ```bash block of ``text``."""
    return [block.strip("\n").splitlines() for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def section(domain: str, alert: str) -> str:
    """The Markdown under ``## <alert>`` of docs/runbooks/<domain>.md (up to the next ``## ``)."""
    text = (RUNBOOKS / f"{domain}.md").read_text()
    match = re.search(rf"^## {re.escape(alert)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        raise LookupError(f"docs/runbooks/{domain}.md has no section ## {alert}")
    return match.group(1)


def check_commands(domain: str, alert: str) -> list[str]:
    """The commands of the first bash block after the section's ``**Check.**``, comment-only
    lines left out."""
    body = section(domain, alert)
    start = body.find("**Check.**")
    if start < 0:
        raise LookupError(f"docs/runbooks/{domain}.md#{alert.lower()} has no **Check.** paragraph")
    blocks = fenced_bash(body[start:])
    if not blocks:
        raise LookupError(f"docs/runbooks/{domain}.md#{alert.lower()}: no bash block under **Check.**")
    return [line.strip() for line in blocks[0] if line.strip() and not line.strip().startswith("#")]


def helper_functions(readme: Path = RUNBOOKS / "README.md") -> list[str]:
    """The shell functions the "Before you start" block defines (``name() { ... }`` lines)."""
    text = readme.read_text()
    start = text.index("## Before you start")
    block = fenced_bash(text[start:])[0]
    return [line for line in block if re.match(r"^\w+\(\) \{", line)]


def documented_variables(readme: Path = RUNBOOKS / "README.md") -> set[str]:
    """The variables the "Before you start" block assigns."""
    text = readme.read_text()
    block = fenced_bash(text[text.index("## Before you start"):])[0]
    return {m.group(1) for line in block if (m := re.match(r"^([A-Z][A-Z0-9_]*)=", line))}


def compose_only(command: str) -> bool:
    """Whether a command needs docker compose (``dc ...`` anywhere as a command)."""
    return any(part.split()[:1] == ["dc"] for part in re.split(r"[;|&]+|\$\(", command) if part.strip())


def prelude() -> str:
    """The shell set-up every Check runs after: the README's functions, ``logs`` for the drill."""
    functions = [f for f in helper_functions() if not f.startswith("logs()")]
    return "\n".join(["set -o pipefail", *functions, DRILL_LOGS])


def run_checks(commands: list[str], variables: dict[str, str], logs_dir: Path) -> list[CheckRun]:
    """Run each command in bash with ``variables`` exported; compose-only ones are skipped."""
    missing = set(VARIABLES) - set(variables)
    if missing:
        raise ValueError(f"the drill must set {sorted(missing)}")
    env_lines = [f"export {k}={shlex.quote(v)}" for k, v in variables.items()]
    env_lines.append(f"export DRILL_LOGS={shlex.quote(str(logs_dir))}")
    head = prelude() + "\n" + "\n".join(env_lines) + "\n"
    runs = []
    for command in commands:
        if compose_only(command):
            runs.append(CheckRun(command, None, "", skipped="compose only (dc)"))
            continue
        try:
            done = subprocess.run(["bash", "-c", head + command], capture_output=True, text=True,  # noqa: S603, S607
                                  timeout=CHECK_TIMEOUT_S, cwd=REPO, check=False)
            runs.append(CheckRun(command, done.returncode, (done.stdout + done.stderr)[-4000:]))
        except subprocess.TimeoutExpired:
            runs.append(CheckRun(command, -1, f"timed out after {CHECK_TIMEOUT_S:g} s"))
    return runs
