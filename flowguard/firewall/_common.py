"""Small helpers shared by the adapters."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timezone

from flowguard.decisions import Decision


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def seconds_left(decision: Decision, now: datetime) -> int:
    """Whole seconds until `decision` expires, rounded up: a block may end up to 1 s late, never early."""
    return max(0, math.ceil((decision.expires_at - now).total_seconds()))


def live(decisions: Iterable[Decision], now: datetime) -> list[tuple[Decision, int]]:
    """The decisions that have not expired at `now`, each with its seconds left (rounded up)."""
    return [(d, seconds_left(d, now)) for d in decisions if not d.expired(now)]
