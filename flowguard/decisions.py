"""A decision: an address to block, for how long, and why. What the policy makes of verdicts, what the
store keeps, what firewall adapters enforce and what the pull lists publish.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timezone

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Decision:
    """Block `value` (one address or a CIDR) until `expires_at`.

    id: the store's id (0 before it is stored).
    scenario: the verdict class that caused it (`stratum_mining`, `reverse_tunnel`).
    verdict_id: the verdict that caused it, when there is one.
    origin: "flowguard" for policy decisions, "manual" for an operator's.
    """

    id: int
    value: str
    scenario: str
    created_at: datetime
    expires_at: datetime
    verdict_id: int | None = None
    score: float | None = None
    origin: str = "flowguard"
    type: str = "ban"

    @property
    def network(self) -> Network:
        return ipaddress.ip_network(self.value, strict=False)

    @property
    def scope(self) -> str:
        """CrowdSec's scope: "Ip" for one address, "Range" for a CIDR."""
        net = self.network
        return "Ip" if net.num_addresses == 1 else "Range"

    def remaining_seconds(self, now: datetime | None = None) -> int:
        now = now or datetime.now(timezone.utc)
        return max(0, int((self.expires_at - now).total_seconds()))

    def expired(self, now: datetime | None = None) -> bool:
        return self.remaining_seconds(now) <= 0
