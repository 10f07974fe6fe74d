"""End to end, as a user runs it: `flowguard serve` in its own process, `flowguard triage --publish`
of the sample captures, then what a firewall pulls: the mining and tunnel servers, none of the
benign ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PCAPS
from tests.ports import free_port

KEY = "e2e-key-0123456789abcdef"


def servers_by_label() -> dict[str, set[str]]:
    """Server addresses of the samples' conversations, by their label (labels.json, either form)."""
    out: dict[str, set[str]] = {}
    for path in sorted(PCAPS.glob("*.labels.json")):
        labels = json.loads(path.read_text())
        conversations = labels.get("conversations") or [labels["conversation"]]
        for conv in conversations:
            out.setdefault(conv.get("label", labels["label"]), set()).add(conv["server_ip"])
    return out


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "FLOWGUARD_API_KEYS": KEY, "FLOWGUARD_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "flowguard", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "flowguard serve did not get ready in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    # uvicorn shuts down, then re-raises the SIGTERM it caught
    assert proc.returncode in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
    log_text = (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in log_text
    assert KEY not in log_text                                         # keys are never logged


def test_triage_publish_then_pull(service: str) -> None:
    env = {**os.environ, "FLOWGUARD_API_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, "-m", "flowguard", "triage", str(PCAPS), "--format", "jsonl", "--publish", service],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    flows = [json.loads(line) for line in proc.stdout.splitlines()]
    flagged = {f["dst_ip"] for f in flows if f["verdict"] != "benign"}

    labelled = servers_by_label()
    bad = labelled.get("stratum_mining", set()) | labelled.get("reverse_tunnel", set())
    good = labelled["benign"]
    assert bad and good
    assert bad <= flagged, f"the model did not flag {sorted(bad - flagged)}"

    key = {"X-Api-Key": KEY}
    lines = httpx.get(service + "/v1/blocklist.txt", timeout=10).text.splitlines()
    listed = {line.split(" # ")[0] for line in lines}
    assert listed == flagged
    assert bad <= listed and not good & listed
    assert all(" # " in line and " until " in line for line in lines)

    stream = httpx.get(service + "/v1/decisions/stream", params={"startup": "true"}, headers=key, timeout=10)
    assert stream.status_code == 200
    new = {d["value"]: d for d in stream.json()["new"]}
    assert bad <= set(new) and not good & set(new)
    assert {d["scenario"] for d in new.values()} <= {"stratum_mining", "reverse_tunnel"}
    assert all(d["type"] == "ban" and d["scope"] == "Ip" for d in new.values())
    again = httpx.get(service + "/v1/decisions/stream", headers=key, timeout=10)
    assert again.json() == {"new": [], "deleted": []}

    stored = httpx.get(service + "/v1/verdicts", params={"limit": 1000}, timeout=10).json()["verdicts"]
    assert len(stored) == len(flows)
