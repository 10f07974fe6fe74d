"""What firewalls pull: the blocklist (text and JSON, with validators for conditional GETs) and
decisions in CrowdSec's LAPI shape.

The blocklist is rendered once per state of the decisions and served from memory until a decision
changes or the next one expires, so polling firewalls cost one small query per request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, TypeGuard

from flowguard.decisions import Decision
from flowguard.store import Store


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def go_duration(seconds: int) -> str:
    """A duration as Go prints it, which CrowdSec bouncers parse: 23h59m58s, 4m0s, 9s."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def scope(value: str) -> str:
    """Decision.scope without parsing the address (the lists render thousands at a time)."""
    address, slash, prefix = value.partition("/")
    if not slash or prefix == ("128" if ":" in address else "32"):
        return "Ip"
    return "Range"


def crowdsec_decision(decision: Decision, now: datetime) -> dict[str, Any]:
    """A decision as CrowdSec's LAPI returns it (models.Decision)."""
    return {
        "id": decision.id,
        "origin": decision.origin,
        "type": decision.type,
        "scope": scope(decision.value),
        "value": decision.value,
        "duration": go_duration(decision.remaining_seconds(now)),
        "until": iso(decision.expires_at),
        "scenario": decision.scenario,
        "simulated": False,
    }


def blocklist_entry(decision: Decision) -> dict[str, Any]:
    return {
        "id": decision.id,
        "value": decision.value,
        "scope": scope(decision.value),
        "scenario": decision.scenario,
        "origin": decision.origin,
        "created_at": iso(decision.created_at),
        "expires_at": iso(decision.expires_at),
        "verdict_id": decision.verdict_id,
        "score": decision.score,
    }


@dataclass(frozen=True)
class Feed:
    """One rendering of the blocklist and its validators."""

    bodies: dict[str, bytes]
    digest: str
    last_modified: datetime | None
    seq: int
    valid_until: datetime | None

    def body(self, kind: str) -> bytes:
        """kind: "text" (with comments), "bare" (addresses only) or "json"."""
        return self.bodies[kind]

    def etag(self, kind: str) -> str:
        return f'"{self.digest}-{kind}"'

    def headers(self, etag: str) -> dict[str, str]:
        out = {"ETag": etag, "Cache-Control": "no-cache"}
        if self.last_modified is not None:
            out["Last-Modified"] = format_datetime(self.last_modified.replace(microsecond=0), usegmt=True)
        return out


class BlocklistCache:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store, self.clock = store, clock
        self._feed: Feed | None = None
        self._writes = -1  # store.writes when the feed was last checked against the database
        self._lock = threading.Lock()

    def cached(self) -> Feed | None:
        """The feed if it is surely current without asking the database (nothing was written since
        it was checked and no decision has expired), else None: a check for the event loop."""
        feed = self._feed
        if self.store.writes == self._writes and _unexpired(feed, self.clock()):
            return feed
        return None

    def get(self) -> Feed:
        now = self.clock()
        feed, writes = self._feed, self.store.writes
        if _unexpired(feed, now) and (writes == self._writes or self.store.change_seq() == feed.seq):
            self._writes = writes  # nothing written, or nothing that changes the list
            return feed
        with self._lock:
            self._feed = self._render(now)
            self._writes = writes
            return self._feed

    def _render(self, now: datetime) -> Feed:
        state = self.store.feed_state(now)
        decisions = sorted(self.store.active(now), key=lambda d: d.id)
        text = "".join(f"{d.value} # {d.scenario} until {iso(d.expires_at)}\n" for d in decisions).encode()
        bare = "".join(f"{d.value}\n" for d in decisions).encode()
        body = {"generated_at": iso(now), "count": len(decisions),
                "decisions": [blocklist_entry(d) for d in decisions]}
        bodies = {"text": text, "bare": bare, "json": json.dumps(body, separators=(",", ":")).encode()}
        return Feed(bodies, hashlib.sha256(text).hexdigest()[:32], state.last_modified, state.seq,
                    state.next_expiry)


def _unexpired(feed: Feed | None, now: datetime) -> TypeGuard[Feed]:
    """A feed was rendered and none of its decisions has expired since."""
    return feed is not None and (feed.valid_until is None or now < feed.valid_until)


def not_modified(headers: Any, etag: str, last_modified: datetime | None, now: datetime) -> bool:
    """Does the client's copy (If-None-Match, else If-Modified-Since) match the feed?

    If-Modified-Since has whole seconds, so it is not trusted while the list changed less than a
    second ago (a second change within that second would be missed).
    """
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if_modified_since = headers.get("if-modified-since")
    if not if_modified_since or last_modified is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    if now - last_modified < timedelta(seconds=1):
        return False
    return last_modified.replace(microsecond=0) <= since


def stream_body(new: Sequence[Decision], deleted: Sequence[Decision], now: datetime) -> dict[str, Any]:
    return {"new": [crowdsec_decision(d, now) for d in new],
            "deleted": [crowdsec_decision(d, now) for d in deleted]}
