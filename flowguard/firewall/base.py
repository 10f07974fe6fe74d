"""The one small interface every firewall adapter implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from flowguard.decisions import Decision


@runtime_checkable
class FirewallAdapter(Protocol):
    """Enforces decisions on one firewall. Every method is idempotent.

    Usage:
        adapter.check()                 # raises FirewallError if the firewall cannot be driven
        adapter.sync(store.active())    # on start: make the firewall hold exactly these
        adapter.apply([decision])       # block, for decision.remaining_seconds()
        adapter.revoke([decision])      # unblock before expiry
    """

    name: str

    def check(self) -> None:
        """Raise FirewallError when the firewall cannot be reached or changed."""

    def apply(self, decisions: Sequence[Decision]) -> None:
        """Block each decision's value until it expires (already blocked: refresh the timeout)."""

    def revoke(self, decisions: Sequence[Decision]) -> None:
        """Unblock each decision's value (not blocked: nothing to do)."""

    def sync(self, active: Sequence[Decision]) -> None:
        """Make the firewall hold exactly `active` (after a restart, from the store)."""
