"""The service facing a network attacker: keys kept hashed and never logged, bodies bounded, every
field validated, writes rate-limited per key, no stack trace in any answer, CORS off by default."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from flowguard.errors import StoreError
from tests.servicekit import KEY, OTHER_KEY, WRITE, flow, running

pytestmark = pytest.mark.anyio




def assert_error_shape(body: dict[str, Any], status: int) -> None:
    assert set(body) == {"ok", "status", "error", "errors"} and body["ok"] is False
    assert body["status"] == status and isinstance(body["error"], str) and isinstance(body["errors"], list)


async def test_keys_are_kept_hashed_and_never_logged(
    tmp_path: Path, model, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path, model) as h:
        await h.ingest(flow(dst="203.0.113.8"), key=KEY)
        await h.ingest(flow(dst="203.0.113.9"), key=OTHER_KEY)
        assert (await h.client.get("/v1/decisions/stream", headers={"X-Api-Key": KEY})).status_code == 200
        bad = "wrong-key-0123456789abcdef-secret"
        response = await h.client.post("/v1/verdicts", json=[flow()], headers={"X-Api-Key": bad})
        assert response.status_code == 401
        assert (await h.client.get("/v1/model")).text.count(KEY) == 0
        assert all(KEY not in str(v) for v in h.settings.api_keys)
    db = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("flowguard.db"))
    assert db  # the database (and its WAL) were written
    for secret in (KEY, OTHER_KEY, bad):
        assert secret.encode() not in db
        assert secret not in caplog.text
    assert "flowguard.service" in caplog.text  # the log was captured at all


async def test_request_size_limit(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, max_body_bytes=4096) as h:
        big = [flow(pcap="x" * 100) for _ in range(40)]
        response = await h.client.post("/v1/verdicts", json=big, headers=WRITE)
        assert response.status_code == 413
        assert_error_shape(response.json(), 413)

        async def chunks():  # no Content-Length: the limit holds on the stream too
            for _ in range(10):
                yield b"[" + b" " * 1000

        response = await h.client.post("/v1/verdicts", content=chunks(), headers=WRITE)
        assert response.status_code == 413
        assert h.store.count_verdicts() == 0


BAD_FIELDS = [
    ({"src_ip": "10.0.0.256"}, "src_ip"), ({"dst_ip": "203.0.113.7/24"}, "dst_ip"),
    ({"dst_ip": "example.com"}, "dst_ip"), ({"dst_ip": "::ffff:1.2.3"}, "dst_ip"),
    ({"dst_ip": "1" * 100}, "dst_ip"),
    ({"src_port": -1}, "src_port"), ({"dst_port": 65536}, "dst_port"), ({"dst_port": "22; rm"}, "dst_port"),
    ({"protocol": 256}, "protocol"), ({"score": 1.01}, "score"), ({"score": -0.1}, "score"),
    ({"scores": {"benign": 2.0}}, "scores"), ({"scores": {"evil": 0.5}}, "scores"),
    ({"verdict": "malware"}, "verdict"), ({"first_seen_ms": -5}, "first_seen_ms"),
    ({"last_seen_ms": 10**20}, "last_seen_ms"), ({"first_seen_ms": 2_000_000_000_000}, "first_seen_ms"),
    ({"packets": -1}, "packets"), ({"application_name": "a" * 300}, "application_name"),
]


@pytest.mark.parametrize(("change", "field"), BAD_FIELDS)
async def test_every_field_is_validated_with_the_one_error_shape(
    tmp_path: Path, model, change: dict[str, Any], field: str
) -> None:
    async with running(tmp_path, model) as h:
        response = await h.client.post("/v1/verdicts", json=[flow(), flow(**change)], headers=WRITE)
        assert response.status_code == 422, response.text
        body = response.json()
        assert_error_shape(body, 422)
        assert "body.1" in body["error"]
        assert field in body["error"] or field == "first_seen_ms"
        assert h.store.count_verdicts() == 0


async def test_nan_and_infinity_are_refused(tmp_path: Path, model) -> None:
    import json

    async with running(tmp_path, model) as h:
        for literal in ("NaN", "Infinity", "-Infinity"):
            text = json.dumps([flow(score=0.5)]).replace('"score": 0.5', f'"score": {literal}')
            response = await h.client.post("/v1/verdicts", content=text,
                                           headers={**WRITE, "Content-Type": "application/json"})
            assert response.status_code == 422, response.text
            assert_error_shape(response.json(), 422)
        assert h.store.count_verdicts() == 0


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", "/v1/allowlist", {"json": {"cidr": "10.0.0.0/33"}}),
    ("POST", "/v1/allowlist", {"json": {"cidr": "not-a-network"}}),
    ("DELETE", "/v1/allowlist?cidr=300.1.1.1/8", {}),
    ("GET", "/v1/verdicts?ip=1.2.3", {}), ("GET", "/v1/verdicts?since=yesterday", {}),
    ("GET", "/v1/verdicts?min_score=2", {}), ("GET", "/v1/verdicts?limit=100000", {}),
    ("GET", "/v1/verdicts?cursor=%00%01", {}), ("GET", "/v1/decisions?ip=::g", {}),
    ("GET", "/v1/verdicts/99999999999999999999999", {}),
    ("POST", "/v1/verdicts/1/feedback", {"json": {"label": "maybe"}}),
])
async def test_other_inputs_are_validated(tmp_path: Path, model, method: str, path: str,
                                          kwargs: dict[str, Any]) -> None:
    async with running(tmp_path, model) as h:
        response = await h.client.request(method, path, headers=WRITE, **kwargs)
        assert response.status_code == 422, response.text
        assert_error_shape(response.json(), 422)


async def test_writes_are_rate_limited_per_key(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, write_requests_per_minute=5) as h:
        for _ in range(5):
            await h.ingest(flow(verdict="benign", score=0.9))
        response = await h.client.post("/v1/verdicts", json=[flow()], headers=WRITE)
        assert response.status_code == 429
        assert_error_shape(response.json(), 429)
        assert int(response.headers["Retry-After"]) == 12
        assert (await h.client.post("/v1/allowlist", json={"cidr": "10.0.0.0/8"}, headers=WRITE)
                ).status_code == 429                                   # every write endpoint
        await h.ingest(flow(verdict="benign", score=0.9), key=OTHER_KEY)  # another key has its own
        assert (await h.client.get("/v1/verdicts")).status_code == 200  # reads are not limited
        h.clock.advance(12)
        await h.ingest(flow(verdict="benign", score=0.9))            # one token back
        assert (await h.client.post("/v1/verdicts", json=[flow()], headers=WRITE)).status_code == 429
        bad = {"X-Api-Key": "nobody-0123456789abcdef"}
        for _ in range(10):  # a wrong key is refused as such, and does not use up anyone's tokens
            assert (await h.client.post("/v1/verdicts", json=[flow()], headers=bad)).status_code == 401
    async with running(tmp_path / "unlimited", model, write_requests_per_minute=0) as h:
        for _ in range(50):
            await h.ingest(flow(verdict="benign", score=0.9))


class BrokenStore:
    def __getattr__(self, name: str) -> Any:
        raise StoreError("disk I/O error at /secret/path/flowguard.db line 42")


async def test_no_stack_trace_in_any_answer(tmp_path: Path, model, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, model) as h:
        svc = h.app.state.service
        real = svc.store
        svc.store = BrokenStore()
        try:
            for method, path, kwargs in (("POST", "/v1/verdicts", {"json": [flow()]}),
                                         ("GET", "/v1/verdicts", {}), ("GET", "/v1/verdicts/1", {}),
                                         ("GET", "/v1/allowlist", {})):
                response = await h.client.request(method, path, headers=WRITE, **kwargs)
                assert response.status_code == 500, (path, response.text)
                body = response.json()
                assert_error_shape(body, 500)
                for leak in ("Traceback", "File \"", "StoreError", "/secret/path", "line 42"):
                    assert leak not in response.text
        finally:
            svc.store = real
        assert "Traceback" in caplog.text or "StoreError" in caplog.text  # the log has the details


async def test_cors_is_off_by_default(tmp_path: Path, model) -> None:
    async with running(tmp_path, model) as h:
        origin = {"Origin": "https://evil.example"}
        for response in (await h.client.get("/v1/blocklist.txt", headers=origin),
                         await h.client.options("/v1/verdicts", headers={
                             **origin, "Access-Control-Request-Method": "POST"})):
            assert not [k for k in response.headers if k.lower().startswith("access-control-")]
    async with running(tmp_path / "cors", model, cors_origins=("https://soc.example",)) as h:
        response = await h.client.get("/v1/blocklist.txt", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in response.headers
        response = await h.client.get("/v1/blocklist.txt", headers={"Origin": "https://soc.example"})
        assert response.headers["access-control-allow-origin"] == "https://soc.example"
