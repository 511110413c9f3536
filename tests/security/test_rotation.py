"""Secret rotation (issue 16, point 3), following docs/runbooks/security.md step by step: its
shell steps run as written (one shell state carried from step to step, ``draftwire token`` and
``curl`` for real), and API processes started with the environment each step leaves stand in
for the restarts. Two APIs run mid-rotation, one on the old configuration and one on the new."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.auth import issue
from tests.deploy.rendered import named
from tests.realtime.support import Client
from tests.security.conftest import SECRETS, bearer
from tests.support.processes import DRAFTWIRE, TEST_SECRET, ServiceProcess

RUNBOOK = Path(__file__).parents[2] / "docs" / "runbooks" / "security.md"
MARK = "__STATE__"


def steps() -> dict[str, str]:
    """The runbook's ``<!-- step: name -->`` shell blocks, by name, in order."""
    return dict(re.findall(r"<!-- step: ([\w-]+) -->\n```sh\n(.*?)```", RUNBOOK.read_text(), flags=re.S))


def run_step(name: str, state: dict[str, str]) -> str:
    """Run one step in bash with ``state`` as its environment; ``state`` becomes the environment
    it leaves (exports and unsets carry over, as in the operator's shell). Returns its output."""
    script = f"{steps()[name]}\necho {MARK}\nenv -0\n"
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], env=state, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, f"step {name}: {done.stderr.decode()}"
    output, _, env = done.stdout.decode().partition(f"{MARK}\n")
    state.clear()
    state.update(dict(item.split("=", 1) for item in env.split("\0") if "=" in item))
    return output


def secrets_of(state: dict[str, str]) -> dict[str, str]:
    keys = {k: state[k] for k in ("JWT_SECRET", "JWT_SECRET_PREVIOUS") if state.get(k)}
    SECRETS.extend(keys.values())
    return keys


def test_the_runbook_names_real_objects() -> None:
    """The Kubernetes commands of the runbook name deployments the overlays have, and the
    steps the test follows are all there."""
    text = RUNBOOK.read_text()
    for name in re.findall(r"deployment/(draftwire-[a-z]+)", text):
        assert named("production", "Deployment", name), name
    assert list(steps()) == ["new-secret", "check-grace", "end-grace", "check-after", "leak", "check-leak"]


async def test_rotation_follows_the_runbook(sec_spawn: Callable[..., ServiceProcess], scratch: Path) -> None:
    """Old sessions keep working through the grace period on every process; new ones work once
    the new configuration runs; dropping the previous secret ends old sessions; after a leak,
    tokens signed with the leaked key are refused and open sockets end with the restart."""
    state = {"PATH": f"{Path(DRAFTWIRE).parent}:/usr/bin:/bin", "HOME": str(scratch), "JWT_SECRET": TEST_SECRET}
    before = sec_spawn("api")  # every process before the rotation: JWT_SECRET only

    run_step("new-secret", state)
    mid = sec_spawn("api", **secrets_of(state))  # the first process restarted with the new config
    old_token = _token({**state, "JWT_SECRET": TEST_SECRET}, "alice")
    new_token = _token(state, "alice")
    async with httpx.AsyncClient(timeout=10) as http:
        answers = {(api_name, token_name): (await http.get(f"{api.url}/api/drafts", headers=bearer(token))).status_code
                   for api_name, api in (("old-config", before), ("new-config", mid))
                   for token_name, token in (("old", old_token), ("new", new_token))}
    # The runbook's warning, as measured: switch the signer only after every process restarted.
    assert answers == {("old-config", "old"): 200, ("old-config", "new"): 401,
                       ("new-config", "old"): 200, ("new-config", "new"): 200}

    state["DRAFTWIRE_URL"] = mid.url
    assert run_step("check-grace", state).splitlines() == ["old token: 200", "new token: 200"]
    before.kill()  # replaced by the restart (how it goes does not matter here)

    run_step("end-grace", state)
    assert "JWT_SECRET_PREVIOUS" not in state
    after = sec_spawn("api", **secrets_of(state))
    mid.kill()
    state["DRAFTWIRE_URL"] = after.url
    assert run_step("check-after", state).splitlines() == ["old token: 401", "new token: 200"]

    socket = await Client.open(after.url, _token(state, "bob"))
    await socket.send({"op": "ping"})
    await socket.wait_op("pong")
    run_step("leak", state)
    os.killpg(after.pid, signal.SIGTERM)  # the restart: the process drains its streams first
    assert await socket.wait_closed() == 1001  # the restart ends every open stream
    after.kill()  # how the rest of its shutdown goes is another suite's subject
    leak_fixed = sec_spawn("api", **secrets_of(state))
    state["DRAFTWIRE_URL"] = leak_fixed.url
    leaked = _token({**state, "JWT_SECRET": state["LEAKED_JWT_SECRET"]}, "bob")
    assert run_step("check-leak", state).splitlines() == ["leaked key: 401"]
    reconnect = await Client.open(leak_fixed.url, leaked)
    assert await reconnect.wait_closed() == 1008  # the old session cannot come back


def _token(state: dict[str, str], user: str) -> str:
    """A token signed with the state's JWT_SECRET (what ``draftwire token`` prints, without
    paying for a process start each time: the runbook's own steps run the real command)."""
    return issue(state["JWT_SECRET"], user)


def test_previous_secret_is_checked_at_start_up() -> None:
    """JWT_SECRET_PREVIOUS shorter than 32 bytes, equal to JWT_SECRET, or the development
    secret is refused naming the variable; a real process exits 2 with one startup_failed line."""
    from app.config import DEV_JWT_SECRET, ConfigError, load

    for previous in ("short", TEST_SECRET, DEV_JWT_SECRET):
        with pytest.raises(ConfigError) as refused:
            load({"JWT_SECRET": TEST_SECRET, "JWT_SECRET_PREVIOUS": previous})
        assert refused.value.variable == "JWT_SECRET_PREVIOUS"
    assert load({"JWT_SECRET": TEST_SECRET, "JWT_SECRET_PREVIOUS": ""}).jwt_verify_keys == (TEST_SECRET,)
    env = {"PATH": os.environ["PATH"], "JWT_SECRET": TEST_SECRET, "JWT_SECRET_PREVIOUS": TEST_SECRET}
    done = subprocess.run([DRAFTWIRE, "api"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and '"variable": "JWT_SECRET_PREVIOUS"' in done.stdout, done.stdout
