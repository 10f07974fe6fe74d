"""WebhookAdapter against an in-process receiver (httpx.MockTransport): signature, body, retries."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from flowguard.decisions import Decision
from flowguard.errors import ConfigError, FirewallError
from flowguard.firewall import FirewallAdapter, WebhookAdapter
from flowguard.firewall.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature

SECRET = "s3cret"
URL = "https://receiver.test/flowguard"
DECISION_KEYS = {"id", "value", "scope", "type", "scenario", "origin", "duration_s", "expires_at", "score",
                 "verdict_id"}


def decision(value: str = "198.51.100.7", seconds: float = 600, id: int = 1) -> Decision:
    now = datetime.now(timezone.utc)
    return Decision(id=id, value=value, scenario="stratum_mining", created_at=now,
                    expires_at=now + timedelta(seconds=seconds), verdict_id=42, score=0.97)


class Receiver:
    """Verifies every request like a real receiver would, then answers from `statuses` (then 200)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        body = request.content
        assert request.method == "POST" and str(request.url) == URL
        assert request.headers["content-type"] == "application/json"
        assert verify_signature(SECRET, body, request.headers[SIGNATURE_HEADER])
        payload = json.loads(body)
        assert str(payload["timestamp"]) == request.headers[TIMESTAMP_HEADER]
        self.bodies.append(payload)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json={"ok": status < 400})


def adapter(receiver: Receiver, sleeps: list[float] | None = None, **kw: Any) -> WebhookAdapter:
    client = httpx.Client(transport=httpx.MockTransport(receiver))
    waits = sleeps if sleeps is not None else []
    return WebhookAdapter(URL, SECRET, client=client, sleep=waits.append, **kw)


def test_signature_helpers() -> None:
    body = b'{"action":"add"}'
    header = sign(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, body, header)
    assert verify_signature(SECRET.encode(), body, header)
    assert not verify_signature("other", body, header)
    assert not verify_signature(SECRET, body + b" ", header)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "sha256=" + "0" * 64)


def test_apply_revoke_sync_bodies() -> None:
    rx = Receiver()
    hook = adapter(rx)
    assert isinstance(hook, FirewallAdapter)
    d, cidr, gone = decision(), decision("203.0.113.0/24", 60, id=2), decision("192.0.2.9", -5, id=3)
    hook.apply([d, cidr, gone])  # the expired one is skipped
    hook.revoke([d])
    hook.sync([d, gone])
    hook.check()
    assert [b["action"] for b in rx.bodies] == ["add", "add", "delete", "sync", "check"]
    first = rx.bodies[0]["decision"]
    assert set(first) == DECISION_KEYS
    assert first["value"] == "198.51.100.7" and first["scope"] == "Ip" and first["type"] == "ban"
    assert first["scenario"] == "stratum_mining" and first["origin"] == "flowguard"
    assert first["verdict_id"] == 42 and first["score"] == 0.97 and first["id"] == 1
    assert 599 <= first["duration_s"] <= 600
    assert datetime.fromisoformat(first["expires_at"]) == d.expires_at
    assert rx.bodies[1]["decision"]["scope"] == "Range"
    assert [x["id"] for x in rx.bodies[3]["decisions"]] == [1]


def test_retries_5xx_then_succeeds_with_backoff() -> None:
    rx, sleeps = Receiver(503, 502, 429), []
    hook = adapter(rx, sleeps, attempts=4, backoff_s=0.01)
    hook.apply([decision()])
    assert rx.calls == 4
    assert sleeps == [0.01, 0.02, 0.04]


def test_gives_up_after_last_attempt() -> None:
    rx, sleeps = Receiver(503, 503, 503), []
    with pytest.raises(FirewallError, match=r"after 3 attempt\(s\): HTTP 503"):
        adapter(rx, sleeps, attempts=3, backoff_s=0).apply([decision()])
    assert rx.calls == 3 and len(sleeps) == 2


def test_no_retry_on_4xx() -> None:
    rx, sleeps = Receiver(400), []
    with pytest.raises(FirewallError, match="refused: HTTP 400"):
        adapter(rx, sleeps).apply([decision()])
    assert rx.calls == 1 and sleeps == []


def test_retries_connection_errors_and_honours_retry_after() -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if len(calls) == 2:
            raise httpx.ReadTimeout("timed out", request=request)
        if len(calls) == 3:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(204)

    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(flaky))
    WebhookAdapter(URL, SECRET, client=client, sleep=sleeps.append, backoff_s=0.1).revoke([decision()])
    assert len(calls) == 4
    assert sleeps == [0.1, 0.2, 2.0]


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="webhook url"):
        WebhookAdapter("ftp://x", SECRET)
    with pytest.raises(ConfigError, match="webhook secret"):
        WebhookAdapter(URL, "")
    with pytest.raises(ConfigError, match="webhook attempts"):
        WebhookAdapter(URL, SECRET, attempts=0)
