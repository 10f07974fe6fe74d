"""The host view: a host's flagged flows side by side.

A host that mines and also holds a reverse tunnel open within a short time of it is the pattern
flowguard exists for (an agent that mines on its GPUs and keeps a way in). The host of a flow is its
initiator (`src_ip`): the machine inside that opened the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowguard.model import CLASSES
from flowguard.triage import FlowVerdict

CORRELATION_WINDOW_MS = 3_600_000
"""Mining and a tunnel from one host within this time of each other are reported together."""


@dataclass
class HostSummary:
    host: str
    flows: dict[str, int] = field(default_factory=dict)  # verdict class -> flagged flows
    peers: dict[str, set[str]] = field(default_factory=dict)  # verdict class -> remote addresses
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> (first, last) ms
    max_score: float = 0.0

    def add(self, v: FlowVerdict) -> None:
        self.flows[v.verdict] = self.flows.get(v.verdict, 0) + 1
        self.peers.setdefault(v.verdict, set()).add(v.dst_ip)
        first, last = self.spans.get(v.verdict, (v.first_seen_ms, v.last_seen_ms))
        self.spans[v.verdict] = (min(first, v.first_seen_ms), max(last, v.last_seen_ms))
        self.max_score = max(self.max_score, v.score)

    @property
    def correlated(self) -> bool:
        """Mining and a reverse tunnel within CORRELATION_WINDOW_MS of each other."""
        mining, tunnel = self.spans.get("stratum_mining"), self.spans.get("reverse_tunnel")
        if mining is None or tunnel is None:
            return False
        gap = max(mining[0], tunnel[0]) - min(mining[1], tunnel[1])  # negative when they overlap
        return gap <= CORRELATION_WINDOW_MS

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "correlated": self.correlated,
            "flagged_flows": {c: self.flows[c] for c in CLASSES if c in self.flows},
            "peers": {c: sorted(p) for c, p in self.peers.items()},
            "first_seen_ms": min(s[0] for s in self.spans.values()),
            "last_seen_ms": max(s[1] for s in self.spans.values()),
            "max_score": round(self.max_score, 6),
        }


class HostView:
    """Collects flagged flows per host; `summaries()` lists correlated hosts first."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostSummary] = {}

    def add(self, verdicts: list[FlowVerdict]) -> None:
        for v in verdicts:
            if v.verdict != CLASSES[0]:
                self.hosts.setdefault(v.src_ip, HostSummary(v.src_ip)).add(v)

    def summaries(self) -> list[HostSummary]:
        return sorted(self.hosts.values(),
                      key=lambda h: (not h.correlated, -sum(h.flows.values()), h.host))
