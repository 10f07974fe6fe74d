"""What the service tests share: a recording firewall adapter, a clock tests move, verdict objects,
and the app running in-process behind an httpx client (lifespan included)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from flowguard.config import Settings
from flowguard.decisions import Decision
from flowguard.errors import FirewallError
from flowguard.model import ModelMetadata
from flowguard.service import create_app
from flowguard.store import Store

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"
WRITE = {"X-Api-Key": KEY}
T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


class FakeAdapter:
    """Implements firewall.base.FirewallAdapter and records every call: (method, [values])."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail = fail

    def _record(self, method: str, decisions: Sequence[Decision]) -> None:
        self.calls.append((method, [d.value for d in decisions]))
        if self.fail:
            raise FirewallError("fake firewall is down")

    def check(self) -> None:
        self.calls.append(("check", []))

    def apply(self, decisions: Sequence[Decision]) -> None:
        self._record("apply", decisions)

    def revoke(self, decisions: Sequence[Decision]) -> None:
        self._record("revoke", decisions)

    def sync(self, active: Sequence[Decision]) -> None:
        self._record("sync", active)

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


class Clock:
    """The service's time, moved by the test."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


_serial = 0


def flow(
    dst: str = "203.0.113.7",
    verdict: str = "stratum_mining",
    score: float = 0.99,
    src: str = "10.0.0.5",
    **fields: Any,
) -> dict[str, Any]:
    """A triage JSONL object; each call is a distinct flow unless `src_port`/times are given."""
    global _serial
    _serial += 1
    others = {"benign": 1 - score, "stratum_mining": 0.0, "reverse_tunnel": 0.0}
    others[verdict] = score
    obj = {
        "pcap": "sample.pcap", "src_ip": src, "src_port": 40000 + _serial % 20000, "dst_ip": dst,
        "dst_port": 3333, "protocol": 6, "first_seen_ms": 1_790_000_000_000 + _serial,
        "last_seen_ms": 1_790_000_060_000 + _serial, "packets": 40, "bytes": 4000,
        "application_name": "Mining", "verdict": verdict, "score": score, "scores": others,
        "model": "2026.11.22",
    }
    obj.update(fields)
    return obj


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    store: Store
    adapter: FakeAdapter
    clock: Clock
    settings: Settings
    extra: dict[str, Any] = field(default_factory=dict)

    async def ingest(self, *flows: dict[str, Any], key: str = KEY) -> dict[str, Any]:
        response = await self.client.post("/v1/verdicts", json=list(flows), headers={"X-Api-Key": key})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def metric(self, series: str) -> float:
        """The value of one series, written as in the exposition: 'name{label="v"}' or 'name'."""
        text = (await self.client.get("/metrics")).text
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == series:
                return float(value)
        raise AssertionError(f"{series} not in /metrics")


@asynccontextmanager
async def running(
    tmp_path: Path,
    model: ModelMetadata,
    adapter: FakeAdapter | None = None,
    store: Store | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """The service on a fresh database in tmp_path. Unless given: api_keys=(KEY, OTHER_KEY) and
    thresholds 0.9 (mining) and 0.5 (tunnel), so tests do not move with the model's own."""
    settings.setdefault("api_keys", (KEY, OTHER_KEY))
    settings.setdefault("threshold_stratum_mining", 0.9)
    settings.setdefault("threshold_reverse_tunnel", 0.5)
    settings.setdefault("protect_local", False)  # tests do not depend on the host's own addresses
    config = Settings(data_dir=tmp_path, **settings)
    store = store or Store(config.database)
    adapter = adapter or FakeAdapter()
    clock = Clock()
    app = create_app(config, store, adapter, model=model, clock=clock)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://flowguard") as client:
                yield Harness(app, client, store, adapter, clock, config)
    finally:
        store.close()
