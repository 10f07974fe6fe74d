"""From stored verdicts to decisions, and from decisions to the firewall.

What is blocked: the flow's responder, `dst_ip`, i.e. the remote server the inside host connected to
(the mining pool, the tunnel's sshd). flowguard sees flows as a SPAN port does and nfstream makes the
initiator the source, so for outbound mining and reverse tunnels the source is the inside host: it
is reported with the decision (`inside_host`), never blocked. When a window of a long flow begins
with the server's packet, nfstream makes the server its source: a flow from a lower port to an
ephemeral one (>= 32768) has its source blocked instead.

A verdict leads to a decision when:
  - its class is not benign and its score reaches the class's threshold (settings, else the model's);
  - its address is in no allowlisted CIDR (built-in loopback/link-local, settings, the API's) and
    is not one of this host's own addresses, default gateways or DNS servers (`protect_local`);
  - fewer than `max_new_blocks_per_minute` new decisions were made in the last 60 s; beyond that
    the verdict stays stored but nothing is enforced (`blocks_suppressed`, and a warning in the log).
An address with an open decision has that decision extended (now + the class's TTL), never a second
one. With `dry_run`, decisions are recorded and marked dry-run, and the firewall adapter is never
called. `tick()` (run every `expire_interval`) ends expired decisions and revokes them on the
adapter; `start()` makes the adapter hold exactly the store's active decisions.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowguard import localnet
from flowguard.config import ALWAYS_ALLOWED, BLOCKING_CLASSES, Settings
from flowguard.decisions import Decision, Network
from flowguard.firewall.base import FirewallAdapter
from flowguard.store import AllowEntry, DecisionRecord, Store, utcnow
from flowguard.triage import FlowVerdict

log = logging.getLogger("flowguard.policy")

RATE_WINDOW = timedelta(seconds=60)

EPHEMERAL = 32768
"""Ports from here up are clients' ephemeral ports (Linux 32768-60999, Windows 49152-65535)."""
ACTIONS = ("benign", "below_threshold", "allowlisted", "blocked", "dry_run", "extended", "kept",
           "suppressed")
"""What a verdict led to: not flagged; under the threshold; address allowlisted; a new decision;
a new dry-run decision; an open decision extended; an enforced decision left as it is (dry-run mode);
over the new-block rate limit (stored, not enforced)."""


@dataclass(frozen=True)
class Outcome:
    """What the policy did with one verdict."""

    verdict_id: int
    action: str
    value: str | None = None
    inside_host: str | None = None
    decision: Decision | None = None
    allowlisted_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict_id": self.verdict_id, "action": self.action, "value": self.value,
                               "inside_host": self.inside_host}
        if self.decision is not None:
            out.update(decision_id=self.decision.id, scenario=self.decision.scenario,
                       expires_at=self.decision.expires_at.isoformat())
        if self.allowlisted_by is not None:
            out["allowlisted_by"] = self.allowlisted_by
        return out


def normalize_address(text: str) -> str:
    """An address in its canonical text (IPv4-mapped IPv6 as IPv4); ValueError if not an address."""
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def normalize_cidr(text: str) -> str:
    """A CIDR (or a bare address, as /32 or /128) in canonical text; ValueError if neither."""
    return str(ipaddress.ip_network(text.strip(), strict=False))


class Policy:
    """Applies the rules in the module docstring. Thread-safe: one decision at a time.

    Usage:
        policy = Policy(settings, store, adapter, model_thresholds={"stratum_mining": 0.92, ...})
        policy.start()                                  # adapter.check(), adapter.sync(active)
        outcomes = policy.apply(zip(ids, verdicts))     # after store.add_verdicts
        policy.tick()                                   # periodically: expire, retry a failed sync
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        adapter: FirewallAdapter | None = None,
        model_thresholds: Mapping[str, float] | None = None,
        clock: Callable[[], datetime] = utcnow,
        protected: Sequence[str] | None = None,
    ) -> None:
        """protected: addresses never blocked besides the allowlists; by default, with the
        protect_local setting, this host's own addresses, gateways and DNS servers."""
        self.settings = settings
        self.store = store
        self.adapter = adapter
        self.clock = clock
        self.thresholds = {c: settings.threshold_for(c, model_thresholds or {}) for c in BLOCKING_CLASSES}
        self.stats: Counter[str] = Counter()
        """Running totals: blocks_suppressed, firewall_errors, decisions_<action>."""
        self._lock = threading.RLock()
        self._recent: deque[datetime] = deque(store.created_since(clock() - RATE_WINDOW))
        self._needs_sync = False
        if protected is None:
            protected = localnet.protected_addresses() if settings.protect_local else []
        self.protected = [ipaddress.ip_network(normalize_address(a)) for a in protected]
        self._fixed = [ipaddress.ip_network(c) for c in (*ALWAYS_ALLOWED, *settings.allowlist)]
        self._fixed += [n for n in self.protected if not any(n.subnet_of(f) for f in self._fixed  # type: ignore[arg-type]
                                                             if f.version == n.version)]
        self._networks: list[Network] = []
        self._reload_allowlist()

    # -- allowlist --------------------------------------------------------------------------------

    def _reload_allowlist(self) -> None:
        self._networks = self._fixed + [ipaddress.ip_network(e.cidr) for e in self.store.allowlist()]

    def remote_end(self, flow: FlowVerdict) -> tuple[str, str]:
        """(address to block, inside host) of a flagged flow: the responder `dst_ip`, unless the
        flow runs from a server port to an ephemeral one. A long flow is exported in windows, and a
        window that begins with the server's packet (a job push, a keepalive) has the server as its
        source: then the source is the remote end."""
        if flow.protocol in (6, 17) and flow.src_port < flow.dst_port and flow.dst_port >= EPHEMERAL:
            return normalize_address(flow.src_ip), flow.dst_ip
        return normalize_address(flow.dst_ip), flow.src_ip

    def allowlisted(self, address: str) -> Network | None:
        """The allowlisted network holding `address` (normalised), if any."""
        ip = ipaddress.ip_address(address)
        for net in self._networks:
            if ip.version == net.version and ip in net:
                return net
        return None

    def fixed_allowlist(self) -> list[str]:
        """The CIDRs that come from the code and the settings (not removable through the API)."""
        return [str(n) for n in self._fixed]

    def allow(self, cidr: str, note: str = "") -> tuple[AllowEntry, bool, list[DecisionRecord]]:
        """Allowlist a CIDR: (entry, newly added, open decisions it ended, which are revoked)."""
        net = ipaddress.ip_network(normalize_cidr(cidr))
        with self._lock:
            now = self.clock()
            entry, fresh = self.store.add_allow(str(net), note, now)
            self._reload_allowlist()
            covered = [
                r.decision.id for r in self.store.decisions(now, dry_run=None)
                if r.decision.network.version == net.version and r.decision.network.subnet_of(net)  # type: ignore[arg-type]
            ]
            ended = self.store.revoke(covered, now, reason="allowlisted")
            self._revoke_on_adapter([r for r in ended if not r.dry_run])
        for record in ended:
            log.info("unblocked %s: now allowlisted by %s", record.decision.value, net)
        return entry, fresh, ended

    def disallow(self, cidr: str) -> bool:
        """Remove an API-added CIDR; False if the API never added it."""
        with self._lock:
            removed = self.store.remove_allow(normalize_cidr(cidr))
            self._reload_allowlist()
        return removed

    # -- decisions --------------------------------------------------------------------------------

    def apply(self, verdicts: Sequence[tuple[int, FlowVerdict]]) -> list[Outcome]:
        """Decide on stored verdicts (id, verdict); one Outcome per verdict, in order."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            outcomes: dict[int, Outcome] = {}
            groups: dict[str, list[tuple[int, int, FlowVerdict]]] = {}
            for index, (verdict_id, flow) in enumerate(verdicts):
                if flow.verdict not in self.thresholds:
                    outcomes[index] = Outcome(verdict_id, "benign")
                    continue
                value, inside = self.remote_end(flow)
                if flow.score < self.thresholds[flow.verdict]:
                    outcomes[index] = Outcome(verdict_id, "below_threshold", value, inside)
                elif (net := self.allowlisted(value)) is not None:
                    outcomes[index] = Outcome(verdict_id, "allowlisted", value, inside,
                                              allowlisted_by=str(net))
                else:
                    groups.setdefault(value, []).append((index, verdict_id, flow))
            to_apply: list[Decision] = []
            suppressed = 0
            with self.store.transaction():  # one commit for the whole batch
                for value, items in groups.items():
                    _, best_id, best = max(items, key=lambda item: item[2].score)
                    action, record = self._decide(value, best_id, best, now)
                    if action == "suppressed":
                        suppressed += len(items)
                    if record is not None and action in ("blocked", "extended") and not record.dry_run:
                        to_apply.append(record.decision)
                    for index, verdict_id, flow in items:
                        outcomes[index] = Outcome(verdict_id, action, value, self.remote_end(flow)[1],
                                                  record.decision if record else None)
            self.stats.update(f"decisions_{o.action}" for o in outcomes.values())
            if suppressed:
                self.stats["blocks_suppressed"] += suppressed
                log.warning(
                    "new-block limit reached (%d in the last minute): %d flagged verdicts stored "
                    "but not enforced", self.settings.max_new_blocks_per_minute, suppressed,
                )
            if to_apply and not self.settings.dry_run:
                self._call_adapter("apply", to_apply)
        return [outcomes[i] for i in range(len(verdicts))]

    def _decide(
        self, value: str, verdict_id: int, flow: FlowVerdict, now: datetime
    ) -> tuple[str, DecisionRecord | None]:
        expires = now + timedelta(seconds=self.settings.ttl_for(flow.verdict))
        dry = self.settings.dry_run
        current = self.store.open_decision(value)
        if current is not None and current.active(now):
            if dry and not current.dry_run:
                return "kept", current
            enforce = current.dry_run and not dry
            if enforce and not self._take_slot(now):
                return "suppressed", current
            record = self.store.extend_decision(current.decision.id, expires, now, verdict_id, flow.score,
                                                enforce=enforce)
            return ("blocked" if enforce else "extended"), record
        if not self._take_slot(now):
            return "suppressed", None
        record = self.store.add_decision(value, flow.verdict, expires, now, verdict_id, flow.score,
                                         dry_run=dry)
        log.info("%s %s (%s, score %.3f, inside host %s) until %s", "dry-run block" if dry else "block",
                 value, flow.verdict, flow.score, self.remote_end(flow)[1],
                 expires.isoformat(timespec="seconds"))
        return ("dry_run" if dry else "blocked"), record

    def _take_slot(self, now: datetime) -> bool:
        """One new block within the per-minute limit (sliding window)?"""
        while self._recent and self._recent[0] <= now - RATE_WINDOW:
            self._recent.popleft()
        if len(self._recent) >= self.settings.max_new_blocks_per_minute:
            return False
        self._recent.append(now)
        return True

    def revoke(self, decision_id: int) -> DecisionRecord | None:
        """End one open decision now (an operator's call); None if it is not open."""
        with self._lock:
            ended = self.store.revoke([decision_id], self.clock(), reason="revoked")
            self._revoke_on_adapter([r for r in ended if not r.dry_run])
        return ended[0] if ended else None

    # -- time and the firewall ---------------------------------------------------------------------

    def start(self) -> None:
        """Check the adapter and make it hold exactly the active decisions (FirewallError if it
        cannot be driven). Does nothing to the firewall in dry-run mode."""
        if self.adapter is None or self.settings.dry_run:
            return
        self.adapter.check()
        with self._lock:
            now = self.clock()
            self._expire(now)
            self.adapter.sync(self.store.active(now))

    def tick(self) -> list[DecisionRecord]:
        """End expired decisions (revoking them on the adapter), retry a sync that failed."""
        with self._lock:
            now = self.clock()
            ended = self._expire(now)
            if self._needs_sync and self.adapter is not None and not self.settings.dry_run:
                self._needs_sync = False
                self._call_adapter("sync", self.store.active(now))
        return ended

    def _expire(self, now: datetime) -> list[DecisionRecord]:
        ended = self.store.expire(now)
        if ended:
            log.info("%d decisions expired", len(ended))
            self._revoke_on_adapter([r for r in ended if not r.dry_run])
        return ended

    def _revoke_on_adapter(self, records: Sequence[DecisionRecord]) -> None:
        if records and not self.settings.dry_run:
            self._call_adapter("revoke", [r.decision for r in records])

    def _call_adapter(self, method: str, decisions: Sequence[Decision]) -> None:
        """Call the adapter; a failure is logged and counted, and a full sync is retried on the next
        tick: the verdicts and decisions are stored whatever the firewall does."""
        if self.adapter is None:
            return
        try:
            getattr(self.adapter, method)(decisions)
        except Exception as exc:  # an adapter failure must never lose the ingest that caused it
            self.stats["firewall_errors"] += 1
            self._needs_sync = True
            log.error("firewall %s: %s of %d decisions failed: %s", self.adapter.name, method,
                      len(decisions), exc)
