"""What a drill is and what one run of it found."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drills.faults import Background
from drills.live import Live

Step = Callable[[Live, Background], Awaitable[None]]


@dataclass(frozen=True)
class Drill:
    """One alert's game day: the fault that fires it, the runbook step that clears it."""

    alert: str
    domain: str
    """docs/runbooks/<domain>.md and alerts/<domain>.rules.yml."""
    fault: str
    """The fault, in words (for the report)."""
    remedy: str
    """The runbook remediation step applied, in words."""
    produce: Step
    apply_remedy: Step
    shows: str | Callable[[str], bool]
    """A regex some Check command's output must match while the fault is on (or a predicate)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Labels telling this rule apart from others of the same name (APIErrorBudgetBurn)."""
    process_down: bool = False
    """A process is down on purpose: a Check's curl to it may fail to connect (exit 7 or 28)."""
    fire_timeout: float = 90
    resolve_timeout: float = 90
    quick: bool = False
    """Part of the short subset ``make test`` runs."""

    @property
    def key(self) -> str:
        suffix = "-".join(self.labels.values())
        return f"{self.alert}-{suffix}" if suffix else self.alert


@dataclass(frozen=True)
class Explained:
    """An alert not drilled live, and why; its promtool test covers the rule."""

    alert: str
    domain: str
    why: str


@dataclass
class Result:
    """One drill's measurements and verdict."""

    key: str
    alert: str
    priority: str
    fault: str
    remedy: str
    fire_s: float | None = None
    route: str = ""
    checks_ran: int = 0
    checks_total: int = 0
    checks_skipped: list[str] = field(default_factory=list)
    checks_failed: list[str] = field(default_factory=list)
    shown: bool = False
    resolve_s: float | None = None
    resolved_notified: bool = False
    error: str = ""

    @property
    def verdict(self) -> str:
        if self.error:
            return f"FAIL: {self.error}"
        if self.checks_failed:
            return f"FAIL: check failed: {self.checks_failed[0]}"
        if not self.shown:
            return "FAIL: no Check showed the fault"
        return "pass"
