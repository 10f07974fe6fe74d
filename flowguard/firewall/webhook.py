"""Publish decisions to an HTTP receiver (a firewall's API gateway, a SOAR, a script), signed.

Each call POSTs JSON:

    apply   {"action": "add",    "decision": {...}, "timestamp": 1700000000}   one POST per decision
    revoke  {"action": "delete", "decision": {...}, "timestamp": ...}          one POST per decision
    sync    {"action": "sync",   "decisions": [{...}, ...], "timestamp": ...}  the whole active list
    check   {"action": "check",  "timestamp": ...}                             answer 2xx if ready

A decision is `{id, value, scope, type, scenario, origin, duration_s, expires_at, score, verdict_id}`
(`duration_s`: whole seconds left, rounded up; `expires_at`: ISO 8601, UTC). Headers:

    X-Flowguard-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the shared secret>
    X-Flowguard-Timestamp: <unix seconds>   (also inside the signed body, to refuse replays)

Receivers check with `verify_signature(secret, body, header)`. Connection errors, timeouts, 429 and
5xx are retried with exponential backoff (`backoff_s * 2**n`, at most `max_backoff_s`, or the
receiver's Retry-After if longer); other 4xx are not. After the last attempt: FirewallError.

Usage:
    hook = WebhookAdapter("https://soar.example/flowguard", secret="...")
    hook.apply([decision])
    hook.close()
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx

from flowguard.decisions import Decision
from flowguard.errors import ConfigError, FirewallError
from flowguard.firewall._common import live, seconds_left, utcnow

__all__ = [
    "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookAdapter", "decision_json", "sign", "verify_signature",
]

SIGNATURE_HEADER = "X-Flowguard-Signature"
TIMESTAMP_HEADER = "X-Flowguard-Timestamp"
_RETRY_STATUS = frozenset({429}) | frozenset(range(500, 600))
_RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header value for `body`: `sha256=<hex digest>`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Does `header` (the X-Flowguard-Signature value) sign `body` with `secret`? Constant-time."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def decision_json(decision: Decision, now: datetime) -> dict[str, Any]:
    """A decision as the webhook sends it."""
    return {
        "id": decision.id,
        "value": decision.value,
        "scope": decision.scope,
        "type": decision.type,
        "scenario": decision.scenario,
        "origin": decision.origin,
        "duration_s": seconds_left(decision, now),
        "expires_at": decision.expires_at.isoformat(),
        "score": decision.score,
        "verdict_id": decision.verdict_id,
    }


class WebhookAdapter:
    """POSTs signed decisions to `url`.

    Parameters:
        url: the receiver, http:// or https://.
        secret: the shared HMAC key (non-empty).
        client: an httpx.Client to send with (tests pass one with httpx.MockTransport); when None,
            the adapter makes one (with `timeout_s`) and `close()` closes it.
        attempts: tries per POST (>= 1).
        backoff_s: the first retry waits this long, then twice as long each time.
        max_backoff_s: the longest wait between tries.
        timeout_s: per-request timeout of the client the adapter makes.
        sleep: how to wait (tests pass a fake).
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        client: httpx.Client | None = None,
        attempts: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook url {url!r} must start with http:// or https://")
        if not secret:
            raise ConfigError("webhook secret must not be empty (the HMAC key receivers verify with)")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"webhook attempts {attempts!r} must be an integer >= 1")
        if backoff_s < 0:
            raise ConfigError(f"webhook backoff_s {backoff_s!r} must be >= 0")
        if max_backoff_s < 0:
            raise ConfigError(f"webhook max_backoff_s {max_backoff_s!r} must be >= 0")
        if timeout_s <= 0:
            raise ConfigError(f"webhook timeout_s {timeout_s!r} must be > 0")
        self.url = url
        self._secret = secret
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)
        self.attempts, self.backoff_s, self.max_backoff_s = attempts, backoff_s, max_backoff_s
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"WebhookAdapter(url={self.url!r}, attempts={self.attempts})"

    # -- FirewallAdapter ------------------------------------------------------------------------------

    def check(self) -> None:
        """POST `{"action": "check"}`; FirewallError unless the receiver answers 2xx."""
        self._post({"action": "check"}, "check")

    def apply(self, decisions: Sequence[Decision]) -> None:
        """POST one `add` per unexpired decision."""
        now = utcnow()
        for d, _ in live(decisions, now):
            self._post({"action": "add", "decision": decision_json(d, now)}, f"add {d.value}")

    def revoke(self, decisions: Sequence[Decision]) -> None:
        """POST one `delete` per decision."""
        now = utcnow()
        for d in decisions:
            self._post({"action": "delete", "decision": decision_json(d, now)}, f"delete {d.value}")

    def sync(self, active: Sequence[Decision]) -> None:
        """POST one `sync` with every unexpired decision: the receiver should hold exactly these."""
        now = utcnow()
        items = [decision_json(d, now) for d, _ in live(active, now)]
        self._post({"action": "sync", "decisions": items}, f"sync {len(items)} decision(s)")

    def close(self) -> None:
        """Close the HTTP client if the adapter made it."""
        if self._owns_client:
            self._client.close()

    # -- internals ------------------------------------------------------------------------------------

    def _post(self, payload: dict[str, Any], what: str) -> None:
        problem = ""
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(time.time()))
            body = json.dumps({**payload, "timestamp": int(timestamp)}, separators=(",", ":")).encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self._secret, body),
                TIMESTAMP_HEADER: timestamp,
            }
            retry_after = 0.0
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except _RETRY_ERRORS as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                raise FirewallError(f"webhook {what} to {self.url} failed: {problem}") from exc
            else:
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code} {response.reason_phrase}: {response.text[:200]}"
                if response.status_code not in _RETRY_STATUS:
                    raise FirewallError(f"webhook {what} to {self.url} was refused: {problem}")
                retry_after = _retry_after(response)
            if attempt < self.attempts:
                delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
                self._sleep(max(delay, min(retry_after, self.max_backoff_s)))
        tries = f"{self.attempts} attempt(s)"
        raise FirewallError(f"webhook {what} to {self.url} failed after {tries}: {problem}")


def _retry_after(response: httpx.Response) -> float:
    """Seconds from a Retry-After header given in seconds (0 when absent or a date)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
