"""`triage --publish`: batching, retries and failures, against a fake service at the transport."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from flowguard.errors import PublishError
from flowguard.publish import Publisher, verdicts_url
from flowguard.triage import FlowVerdict


def verdict(n: int) -> FlowVerdict:
    scores = {"benign": 0.03, "stratum_mining": 0.97, "reverse_tunnel": 0.0}
    return FlowVerdict("s.pcap", "10.0.0.5", 40000 + n, "203.0.113.7", 3333, 6, n, n + 1, 3, 100, "Mining",
                       "stratum_mining", 0.97, scores, "m1")


class FakeService:
    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        self.headers: list[httpx.Headers] = []
        self.sizes: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        status = self.statuses.pop(0) if self.statuses else 201
        self.headers.append(request.headers)
        self.sizes.append(len(request.content))
        if status == 0:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content)
        if status >= 300:
            return httpx.Response(status, json={"ok": False, "status": status, "error": f"nope {status}",
                                                "errors": []})
        self.bodies.append(body)
        return httpx.Response(status, json={"ok": True, "ids": list(range(len(body["verdicts"]))),
                                            "counts": {"blocked": len(body["verdicts"])}})


def publisher(service: FakeService, **kwargs) -> Publisher:
    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(service))
    p = Publisher("http://svc:8080/", "the-key-0123456789", client=client, sleep=sleeps.append, **kwargs)
    p.sleeps = sleeps  # type: ignore[attr-defined]
    return p


def test_url_forms() -> None:
    assert verdicts_url("http://h:1") == "http://h:1/v1/verdicts"
    assert verdicts_url("https://h/base/") == "https://h/base/v1/verdicts"
    assert verdicts_url("http://h/v1/verdicts") == "http://h/v1/verdicts"
    with pytest.raises(PublishError, match="not an http"):
        verdicts_url("h:8080")


def test_batches_by_count_and_size() -> None:
    service = FakeService()
    p = publisher(service, batch_size=100, max_batch_bytes=20_000)
    p.add(verdict(n) for n in range(250))
    p.flush()
    sizes = [len(b["verdicts"]) for b in service.bodies]
    assert sum(sizes) == 250 == p.sent and max(sizes) <= 100
    assert max(service.sizes) <= 20_000 + 100 and len(service.sizes) > 3   # the size limit cut batches
    assert p.actions == {"blocked": 250}
    assert service.headers[0]["x-api-key"] == "the-key-0123456789"
    assert service.bodies[0]["source"] == f"triage@{socket.gethostname()}"
    assert service.bodies[0]["verdicts"][0] == verdict(0).to_dict()


def test_retries_what_may_pass() -> None:
    service = FakeService(0, 503, 201)
    p = publisher(service)
    p.add([verdict(1)])
    p.flush()
    assert p.sent == 1 and p.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]


def test_gives_up_after_attempts() -> None:
    p = publisher(FakeService(0, 0, 0, 0))
    p.add([verdict(1)])
    with pytest.raises(PublishError, match=r"failed after 4 attempts: ConnectError"):
        p.flush()


def test_a_refusal_is_not_retried() -> None:
    service = FakeService(401)
    p = publisher(service)
    p.add([verdict(1)])
    with pytest.raises(PublishError, match=r"http://svc:8080/v1/verdicts failed: HTTP 401: nope 401"):
        p.flush()
    assert p.sleeps == []  # type: ignore[attr-defined]


def test_triage_publish_failure_is_one_line_and_exit_1(sample_pcaps: list[Path]) -> None:
    """Nothing listens on the port: stdout is what it would be, stderr says why, exit 1."""
    one = [p for p in sample_pcaps if p.name.startswith("mining-btc")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = [sys.executable, "-m", "flowguard", "triage", "--format", "jsonl", *map(str, one)]
    plain = subprocess.run(base, capture_output=True, text=True, timeout=300)
    published = subprocess.run([*base, "--publish", f"http://127.0.0.1:{port}"],
                               capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and published.returncode == 1
    assert published.stdout == plain.stdout
    lines = published.stderr.strip().splitlines()
    assert len(lines) == 1, published.stderr
    assert lines[0].startswith(f"flowguard: error: publishing to http://127.0.0.1:{port}/v1/verdicts failed")
