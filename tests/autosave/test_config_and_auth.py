"""Settings and session tokens: the parts every process depends on before it serves anything."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from app.auth import TokenError, issue, verify
from app.config import ConfigError, load, parse_duration
from tests.support.processes import DRAFTWIRE


@pytest.mark.parametrize(
    ("text", "seconds"), [("15s", 15.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0), ("2", 2.0)]
)
def test_durations(text: str, seconds: float) -> None:
    """Durations accept the contract's forms (15s, 500ms, 5m) and bare seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_REQUEST_TIMEOUT", "soon"),
        ("JOB_MAX_ATTEMPTS", "0"),
        ("WORKER_CONCURRENCY", "-3"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_URL", "mysql://x"),
        ("AUTOSAVE_FLUSH_DELAY", "1 fortnight"),
        ("WORKER_NICE", "20"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    """A malformed setting raises ConfigError naming the variable."""
    with pytest.raises(ConfigError) as info:
        load({variable: value})
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_jwt_secret_required_outside_dev() -> None:
    """Outside dev the built-in JWT secret is refused."""
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load({"DRAFTWIRE_ENV": "prod"})
    assert load({"DRAFTWIRE_ENV": "prod", "JWT_SECRET": "x" * 32}).jwt_secret == "x" * 32


def test_no_environment_means_production() -> None:
    """Without DRAFTWIRE_ENV the process is production: no secret, the dev secret, or a short
    secret all refuse to start; only an explicit DRAFTWIRE_ENV=dev accepts the built-in one."""
    from app.config import DEV_JWT_SECRET

    with pytest.raises(ConfigError, match="JWT_SECRET: required"):
        load({})
    with pytest.raises(ConfigError, match="development secret is refused"):
        load({"JWT_SECRET": DEV_JWT_SECRET})
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load({"JWT_SECRET": "short"})
    assert load({"JWT_SECRET": "x" * 32}).env == "production"
    assert load({"DRAFTWIRE_ENV": "dev"}).jwt_secret == DEV_JWT_SECRET


def test_process_without_env_or_secret_refuses_to_start() -> None:
    """`draftwire api` with neither DRAFTWIRE_ENV nor JWT_SECRET exits 2 with one
    startup_failed line naming JWT_SECRET, before it listens anywhere."""
    done = subprocess.run([DRAFTWIRE, "api"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=30, check=False)
    assert done.returncode == 2
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert (record["msg"], record["variable"]) == ("startup_failed", "JWT_SECRET")


def test_startup_fails_with_one_line_naming_the_variable() -> None:
    """`draftwire api` with a bad value exits non-zero printing one startup_failed JSON line."""
    done = subprocess.run(
        [DRAFTWIRE, "api"], env={"PORT": "eighty", "PATH": "/usr/bin:/bin"}, capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 2
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["msg"] == "startup_failed"
    assert record["variable"] == "PORT"


def test_token_roundtrip_and_admin_role() -> None:
    """A token verifies to its user; the admin flag survives; HS256 is pinned."""
    secret = "s" * 32
    principal = verify(secret, issue(secret, "alice", admin=True))
    assert (principal.user_id, principal.admin) == ("alice", True)
    assert verify(secret, issue(secret, "bob")).admin is False


def test_forged_expired_and_none_alg_tokens_are_refused() -> None:
    """Wrong key, expired tokens and unsigned (alg=none) tokens are all refused."""
    import jwt

    secret = "s" * 32
    with pytest.raises(TokenError):
        verify(secret, issue("t" * 32, "alice"))
    with pytest.raises(TokenError):
        verify(secret, issue(secret, "alice", ttl_seconds=-60))
    unsigned = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, key=None, algorithm="none")
    with pytest.raises(TokenError):
        verify(secret, unsigned)


def test_a_remembered_token_still_expires_on_time() -> None:
    """Verified tokens are remembered, but only until their own expiry (plus PyJWT's leeway):
    a token that was valid a moment ago is refused once that passes, and a token signed with
    another key is refused even right after the same token text was accepted under the right one."""
    from app.auth.tokens import LEEWAY_S

    secret = "s" * 32
    token = issue(secret, "alice", ttl_seconds=-(LEEWAY_S - 2))  # exp 3 s ago: valid for 1-2 s more
    assert verify(secret, token).user_id == "alice"
    with pytest.raises(TokenError):
        verify("t" * 32, token)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            verify(secret, token)
        except TokenError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("a remembered token outlived its expiry")


def test_token_command_prints_a_valid_token() -> None:
    """`draftwire token --user ID --admin` prints a token the API accepts."""
    env = {"JWT_SECRET": "k" * 32, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [DRAFTWIRE, "token", "--user", "ops", "--admin", "--ttl", "5m"], env=env, capture_output=True, timeout=30, check=True
    )
    principal = verify("k" * 32, done.stdout.decode().strip())
    assert (principal.user_id, principal.admin) == ("ops", True)
