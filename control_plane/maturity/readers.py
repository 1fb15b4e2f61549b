"""Who may read which rubric: ``read`` on ``maturity:RUBRIC`` in the platform domain."""

from __future__ import annotations

from control_plane.authorization import Guard
from control_plane.inventory.assets import PLATFORM_DOMAIN
from control_plane.maturity.scoring import RUBRICS


def readable_rubrics(guard: Guard) -> list[str]:
    """The rubrics the caller may read, each allow recorded; 403 when it may read none."""
    allowed = [r for r in RUBRICS if guard.decide("read", f"maturity:{r}", PLATFORM_DOMAIN).allowed]
    for rubric in allowed or RUBRICS[:1]:
        guard.require("read", f"maturity:{rubric}", PLATFORM_DOMAIN)
    return allowed
