"""Real ``draftwire`` processes for end-to-end tests: the dev stack's launcher
(:mod:`devstack.processes`), plus the suite's throwaway token secret."""

from __future__ import annotations

from devstack.processes import DRAFTWIRE, ServiceProcess, cpu_seconds

TEST_SECRET = "test-secret-0123456789abcdef-0123456789"  # noqa: S105 - throwaway, for test tokens only

__all__ = ("DRAFTWIRE", "TEST_SECRET", "ServiceProcess", "cpu_seconds")
