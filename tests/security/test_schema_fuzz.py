"""Schemathesis against the served OpenAPI document, every check on (``--checks all``): no 5xx,
no response the document does not describe. Bounded here (``FUZZ_EXAMPLES`` per operation, 5
by default, about 250 requests per role); ``make fuzz`` runs it with 100."""

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
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
SEED = os.environ.get("FUZZ_SEED", "16")


def schemathesis(api: ServiceProcess, token: str, report: Path, *extra: str) -> subprocess.Popen[str]:
    command = [
        ST, "run", f"{api.url}/schema/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
        "--seed", SEED, "--header", f"Authorization: Bearer {token}", "--request-timeout", "10",
        "--report", "junit", "--report-junit-path", str(report), "--no-color", "--suppress-health-check", "all",
        *extra,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing(sec_api: ServiceProcess, mint: Callable[..., str], scratch: Path) -> None:
    """Every operation, every check, as a plain user and as an admin (the two runs at once):
    exit 0, 0 failures. The admin run leaves out /api/events: an admin may follow any channel,
    so a schema-valid request opens a stream that never ends; the user run covers it (404 for
    channels that are not the user's)."""
    runs = {
        "user": schemathesis(sec_api, mint("fuzz-user"), scratch / "user.xml"),
        "admin": schemathesis(sec_api, mint("fuzz-admin", admin=True), scratch / "admin.xml",
                              "--exclude-path", "/api/events"),
    }
    for role, run in runs.items():
        output, _ = run.communicate(timeout=850)
        (Path(os.environ.get("FUZZ_REPORT_DIR", scratch)) / f"schemathesis-{role}.txt").write_text(output)
        summary = output[-6000:]
        assert run.returncode == 0, summary
        assert "generated" in summary and "passed" in summary, summary
        print(role, [line.strip() for line in summary.splitlines() if "generated" in line])


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
