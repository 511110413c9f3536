"""House rules the linters do not check: module size, and every environment variable read
through app/config.py (one place documents them all)."""

from __future__ import annotations

import re
from pathlib import Path

from app import config

REPO = Path(__file__).resolve().parents[1]
CODE = ("app", "observability", "devstack", "loadtests", "tests", "dashboards", "deploy")
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for top in CODE for p in (REPO / top).rglob("*.py") if ".venv" not in p.parts)


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_app_reads_the_environment_only_through_config() -> None:
    """Variables are read (os.environ.get / [...] / os.getenv) in app/ only by app/config.py;
    handing the environment to a child process (pg_dump) is not reading it."""
    readers = re.compile(r"os\.environ\.get|os\.environ\[|getenv\(")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "app").rglob("*.py")
                 if p.name != "config.py" and readers.search(p.read_text())]
    assert not offenders, f"read these through app/config.py instead: {offenders}"


def test_every_setting_has_a_documented_field() -> None:
    """Each variable in config's table maps to a Settings field with a docstring."""
    source = (REPO / "app" / "config.py").read_text()
    for variable, (name, _parse) in config._PARSERS.items():
        assert re.search(rf"\n    {name}: .*\n    \"\"\"", source), f"{variable}: field {name} has no docstring"
