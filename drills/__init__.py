"""Game-day drills: for every alert in alerts/, produce its fault on a live stack, see it fire
and route, run its runbook's Check commands, apply the remedy and see it resolve.

``python -m drills [--alert NAME] [--quick]``; ``make drill`` / ``make drill ALERT=<name>``.
"""

from drills.catalog_features import DRILLS as FEATURE_DRILLS
from drills.catalog_platform import DRILLS as PLATFORM_DRILLS
from drills.catalog_platform import EXPLAINED

ALL = [*PLATFORM_DRILLS, *FEATURE_DRILLS]

__all__ = ("ALL", "EXPLAINED")
