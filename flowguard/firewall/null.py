"""An adapter that enforces nothing: for dry runs, and for firewalls that pull `/decisions`."""

from __future__ import annotations

from collections.abc import Sequence

from flowguard.decisions import Decision

__all__ = ["NullAdapter"]


class NullAdapter:
    """Accepts every call and does nothing (it records nothing either)."""

    name = "none"

    def check(self) -> None:
        return None

    def apply(self, decisions: Sequence[Decision]) -> None:
        return None

    def revoke(self, decisions: Sequence[Decision]) -> None:
        return None

    def sync(self, active: Sequence[Decision]) -> None:
        return None
