"""Schemathesis against the served OpenAPI document, every check on (``--checks all``): no 5xx,
no response the document does not describe. Bounded here (``FUZZ_EXAMPLES`` per operation, 12
by default); ``make fuzz`` runs it with more."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ServiceProcess

ST = str(Path(sys.executable).with_name("st"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SEED = os.environ.get("FUZZ_SEED", "16")


def schemathesis(api: ServiceProcess, token: str, report: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        ST, "run", f"{api.url}/schema/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
        "--seed", SEED, "--header", f"Authorization: Bearer {token}", "--request-timeout", "10",
        "--report", "junit", "--report-junit-path", str(report), "--no-color", "--suppress-health-check", "all",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", ["user", "admin"])
def test_schemathesis_finds_nothing(
    role: str, sec_api: ServiceProcess, mint: Callable[..., str], scratch: Path
) -> None:
    """Every operation, every check, as a plain user and as an admin: exit 0 (0 failures).
    The admin run leaves out /api/events: an admin may follow any channel, so a schema-valid
    request opens a stream that never ends; the user run covers it (404 for channels not theirs)."""
    token = mint(f"fuzz-{role}", admin=role == "admin")
    extra = ["--exclude-path", "/api/events"] if role == "admin" else []
    done = schemathesis(sec_api, token, scratch / f"{role}.xml", *extra)
    (Path(os.environ.get("FUZZ_REPORT_DIR", scratch)) / f"schemathesis-{role}.txt").write_text(done.stdout)
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary
    assert "No issues found" in done.stdout or "0 failures" in done.stdout or "passed" in done.stdout, summary
    print(summary)


async def test_schema_is_honest(sec_api: ServiceProcess) -> None:
    """The document lists /api/events, limit 1-100, the channel pattern, and for every operation
    only our error body for 4xx/5xx (never Litestar's {status_code, detail})."""
    async with httpx.AsyncClient(base_url=sec_api.url) as client:
        schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    assert "/api/events" in paths
    limit = next(p for p in paths["/api/drafts"]["get"]["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 100)
    channel = next(p for p in paths["/api/events"]["get"]["parameters"] if p["name"] == "channel")["schema"]
    assert channel["pattern"].startswith("^(job|draft):")
    for path, item in paths.items():
        for method, operation in item.items():
            errors = {code: r for code, r in operation["responses"].items() if int(code) >= 400}
            assert errors, f"{method} {path} documents no error"
            for code, response in errors.items():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (method, path, code)
            if path.startswith("/api/"):
                assert {"401", "429", "503"} <= set(errors), (method, path)
    assert schema["components"]["schemas"]["Error"]["required"] == ["error", "detail"]
