"""The client's pure logic (backoff, Retry-After, the SSE parser, autosave ordering, seq
de-duplication) under ``node --test``, so ``make test`` runs it with the rest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_TESTS = Path(__file__).parent / "js" / "client_logic.test.mjs"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js 20+ (node --test)")
def test_client_logic_under_node() -> None:
    """Every node:test case in tests/web/js passes."""
    result = subprocess.run(["node", "--test", str(NODE_TESTS)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
