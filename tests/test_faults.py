"""Faults, against a real `flowguard serve` process: SIGKILL while verdicts arrive, a firewall table
lost while the service was down, and a full disk.

Every address a firewall sees lives in a network namespace made here (fgft-*), and the small disk
is a tmpfs mounted in a private mount namespace that only the service (and the filler) see.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

KEY = "faults-key-0123456789abcdef"
WRITE = {"X-Api-Key": KEY}
READY_S = 60.0  # a loaded 2-core machine starts the service (the model) in a few seconds


_serial = 0


def flow(dst: str = "198.51.100.9", verdict: str = "benign", score: float = 0.97) -> dict[str, Any]:
    """A triage JSONL object; each call is a distinct flow."""
    global _serial
    _serial += 1
    scores = {"benign": round(1 - score, 6), "stratum_mining": 0.0, "reverse_tunnel": 0.0}
    scores[verdict] = score
    return {
        "pcap": "faults.pcap", "src_ip": "10.0.0.5", "src_port": 1024 + _serial % 60000, "dst_ip": dst,
        "dst_port": 3333, "protocol": 6, "first_seen_ms": 1_790_000_000_000 + _serial,
        "last_seen_ms": 1_790_000_060_000 + _serial, "packets": 40 + _serial, "bytes": 4000 + _serial,
        "application_name": "Mining", "verdict": verdict, "score": score, "scores": scores,
        "model": "2026.11.22",
    }


@dataclass
class Serve:
    """One `flowguard serve` process (possibly wrapped, e.g. in `unshare -m sh -c ...`)."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        assert self.proc.returncode == -signal.SIGKILL, self.text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)


@dataclass
class Services:
    """Starts services for one test and kills whatever is left at its end."""

    tmp: Path
    started: list[Serve] = field(default_factory=list)

    def start(self, env: dict[str, str], wrap: list[str] | None = None, name: str = "serve") -> Serve:
        port = free_port()
        log = self.tmp / f"{name}-{len(self.started)}.log"
        argv = [sys.executable, "-m", "flowguard", "serve", "--port", str(port)]
        if wrap is not None:  # a shell command line that ends by exec-ing the service
            argv = [*wrap[:-1], wrap[-1] + " exec " + " ".join(argv)]
        full_env = {**os.environ, "FLOWGUARD_API_KEYS": KEY, "FLOWGUARD_PROTECT_LOCAL": "false",
                    "FLOWGUARD_WRITE_REQUESTS_PER_MINUTE": "0", **env}
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        serve = Serve(f"http://127.0.0.1:{port}", proc, log)
        self.started.append(serve)
        deadline = time.monotonic() + READY_S
        while True:
            assert proc.poll() is None, f"flowguard serve exited {proc.returncode}:\n{serve.text()}"
            try:
                if httpx.get(serve.url + "/readyz", timeout=2).status_code == 200:
                    return serve
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"flowguard serve not ready in {READY_S} s:\n{serve.text()}"
            time.sleep(0.1)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services(tmp_path)
    yield s
    for serve in s.started:
        serve.stop()


def _sh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)


def _must(*args: str) -> str:
    res = _sh(*args)
    assert res.returncode == 0, f"{' '.join(args)}: {res.stderr}"
    return res.stdout


# -- 1. kill -9 while verdicts are being ingested -----------------------------------------------------


def test_sigkill_mid_ingest_loses_no_acknowledged_verdict(services: Services, tmp_path: Path) -> None:
    env = {"FLOWGUARD_DATA_DIR": str(tmp_path / "data")}
    first = services.start(env)
    acked: dict[int, dict[str, Any]] = {}
    batches = {"acked": 0, "failed": 0}
    stop = threading.Event()
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=first.url, headers=WRITE, timeout=10) as http:
            while not stop.is_set():
                batch = [flow(dst=f"198.51.100.{n % 250 + 1}") for n in range(5)]
                try:
                    response = http.post("/v1/verdicts", json=batch)
                except httpx.TransportError:  # the kill: this batch was never acknowledged
                    batches["failed"] += 1
                    return
                if response.status_code != 201:
                    errors.append(f"{response.status_code} {response.text}")
                    return
                ids = response.json()["ids"]
                assert len(ids) == len(batch)
                acked.update(zip(ids, batch, strict=True))
                batches["acked"] += 1

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while batches["acked"] < 20 and thread.is_alive():  # kill it mid-stream, well into the ingest
        assert time.monotonic() < deadline, "the service acknowledged too few batches in 30 s"
        time.sleep(0.01)
    assert not errors, errors
    first.kill9()
    thread.join(timeout=15)
    stop.set()
    assert not thread.is_alive() and not errors, errors
    assert len(acked) >= 100 and len(set(acked)) == len(acked)

    second = services.start(env)
    stored: dict[int, dict[str, Any]] = {}
    cursor: str | None = None
    while True:  # page through everything stored, oldest first
        params: dict[str, Any] = {"limit": 1000, "order": "asc"}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(second.url + "/v1/verdicts", params=params, timeout=10).json()
        stored.update({v["id"]: v for v in page["verdicts"]})
        cursor = page.get("next")
        if not cursor:
            break
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged verdicts lost, e.g. {missing[:5]}"
    for verdict_id, sent in acked.items():
        got = {k: stored[verdict_id][k] for k in sent}
        assert got == sent, f"verdict {verdict_id} changed: {got} != {sent}"
    one = next(iter(acked))
    single = httpx.get(f"{second.url}/v1/verdicts/{one}", timeout=10)
    assert single.status_code == 200 and {k: single.json()[k] for k in acked[one]} == acked[one]
    # at most the batch in flight at the kill may be there too, never anything half-written
    assert len(stored) - len(acked) <= 5
    print(f"\n{batches['acked']} batches acknowledged ({len(acked)} verdicts), all {len(acked)} back after "
          f"SIGKILL; {len(stored) - len(acked)} unacknowledged in-flight verdicts stored")


# -- 2. the nftables sets are rebuilt from the store on restart ---------------------------------------


def _why_no_nft() -> str | None:
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (ip netns, nft)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH"
    return None


@pytest.fixture
def netns() -> Iterator[str]:
    reason = _why_no_nft()
    if reason:
        pytest.skip(reason)
    name = f"fgft-{os.getpid() % 100000}"
    _sh("ip", "netns", "del", name)  # a leftover of a killed run
    res = _sh("ip", "netns", "add", name)
    if res.returncode != 0:
        pytest.skip(f"cannot create network namespace {name}: {res.stderr.strip()}")
    try:
        probe = _sh("ip", "netns", "exec", name, "nft", "list", "ruleset")
        if probe.returncode != 0:
            pytest.skip(f"nft cannot run in a namespace: {probe.stderr.strip()}")
        yield name
    finally:
        _sh("ip", "netns", "del", name)


def blocked_v4(ns: str) -> set[str]:
    """The values in inet flowguard blocked_v4 (empty when the table or set is missing)."""
    res = _sh("ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "flowguard", "blocked_v4")
    if res.returncode != 0:
        return set()
    values: set[str] = set()
    for item in json.loads(res.stdout)["nftables"]:
        for elem in item.get("set", {}).get("elem", []):
            val = elem["elem"]["val"] if isinstance(elem, dict) and "elem" in elem else elem
            if isinstance(val, dict) and "prefix" in val:
                val = f"{val['prefix']['addr']}/{val['prefix']['len']}"
            values.add(str(val))
    return values


def wait_for(what: str, check: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


@pytest.mark.netns
def test_restart_resyncs_nftables_from_the_store(services: Services, netns: str, tmp_path: Path) -> None:
    active, revoked, expiring = "203.0.113.10", "203.0.113.20", "203.0.113.30"
    env = {"FLOWGUARD_DATA_DIR": str(tmp_path / "data"), "FLOWGUARD_FIREWALL": "nftables",
           "FLOWGUARD_NFT_NETNS": netns, "FLOWGUARD_THRESHOLD_STRATUM_MINING": "0.5",
           "FLOWGUARD_THRESHOLD_REVERSE_TUNNEL": "0.5", "FLOWGUARD_TTL_STRATUM_MINING": "1h",
           "FLOWGUARD_TTL_REVERSE_TUNNEL": "2s", "FLOWGUARD_EXPIRE_INTERVAL": "1h"}
    first = services.start(env, name="nft")
    body = [flow(active, "stratum_mining", 0.99), flow(revoked, "stratum_mining", 0.99),
            flow(expiring, "reverse_tunnel", 0.99)]
    response = httpx.post(first.url + "/v1/verdicts", json=body, headers=WRITE, timeout=15)
    assert response.status_code == 201, response.text
    made = {d["value"]: d for d in response.json()["decisions"]}
    assert {made[v]["action"] for v in (active, revoked, expiring)} == {"blocked"}, made
    wait_for("all three in the set", lambda: {active, revoked, expiring} <= blocked_v4(netns))
    gone = httpx.delete(f"{first.url}/v1/decisions/{made[revoked]['decision_id']}", headers=WRITE, timeout=15)
    assert gone.status_code == 200, gone.text
    wait_for("the revoked one out of the set", lambda: revoked not in blocked_v4(netns))

    first.kill9()
    # another admin, or a reboot, takes the table away while the service is down
    _must("ip", "netns", "exec", netns, "nft", "delete", "table", "inet", "flowguard")
    assert blocked_v4(netns) == set()
    # the short one's time is up while the service is down (its decision is still open in the store)
    expires = time.time() + 2.5
    while time.time() < expires:
        time.sleep(0.1)

    second = services.start(env, name="nft")
    assert blocked_v4(netns) == {active}, second.text()   # synced before it listens
    listed = httpx.get(second.url + "/v1/blocklist.txt", params={"comments": "false"}, timeout=10).text
    assert listed.split() == [active]


# -- 3. a full disk ---------------------------------------------------------------------------------


def _why_no_tmpfs(tmp_path: Path) -> str | None:
    if sys.platform != "linux":
        return "needs Linux mount namespaces"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH"
    point = tmp_path / "probe"
    point.mkdir()
    res = _sh("unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m fgft-probe '{point}'")
    if res.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {res.stderr.strip()}"
    return None


def test_full_disk_gives_a_clear_error_and_reads_go_on(services: Services, tmp_path: Path) -> None:
    reason = _why_no_tmpfs(tmp_path)
    if reason:
        pytest.skip(reason)
    disk = tmp_path / "disk"
    disk.mkdir()
    data = disk / "data"
    env = {"FLOWGUARD_DATA_DIR": str(data), "FLOWGUARD_THRESHOLD_STRATUM_MINING": "0.5"}
    wrap = ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=3m fgft-disk '{disk}' &&"]
    serve = services.start(env, wrap=wrap, name="disk")  # unshare and sh exec: the pid is the service
    assert not (data / "flowguard.db").exists(), "the tmpfs leaked out of its mount namespace"
    http = httpx.Client(base_url=serve.url, timeout=30)

    ok = http.post("/v1/verdicts", json=[flow("203.0.113.40", "stratum_mining", 0.99)], headers=WRITE)
    assert ok.status_code == 201, ok.text
    kept_id = ok.json()["ids"][0]

    def in_ns(script: str) -> subprocess.CompletedProcess[str]:
        return _sh("nsenter", "-t", str(serve.proc.pid), "-m", "sh", "-c", script)

    in_ns(f"cat /dev/zero > '{disk}/filler'")  # ends with ENOSPC
    assert "100%" in in_ns(f"df '{disk}'").stdout
    failed = None
    for _ in range(40):  # the WAL may hold a little room already: write until the disk is felt
        response = http.post("/v1/verdicts", json=[flow() for _ in range(200)], headers=WRITE)
        if response.status_code != 201:
            failed = response
            break
    assert failed is not None, "200 x 40 verdicts stored on a full disk?"
    assert failed.status_code == 507, failed.text
    body = failed.json()
    assert set(body) == {"ok", "status", "error", "errors"} and body["ok"] is False and body["status"] == 507
    assert "disk is full" in body["error"] and "database" in body["error"], body["error"]
    assert str(tmp_path) not in failed.text  # no path in an answer (the log has it)
    assert "disk is full" in serve.text()
    assert serve.proc.poll() is None, serve.text()

    for path in ("/healthz", "/readyz", "/v1/blocklist.txt", "/v1/verdicts", f"/v1/verdicts/{kept_id}",
                 "/v1/decisions"):
        assert http.get(path).status_code == 200, (path, http.get(path).text)
    assert "203.0.113.40" in http.get("/v1/blocklist.txt").text

    in_ns(f"rm -f '{disk}/filler'")  # room again: writes work again without a restart
    again = http.post("/v1/verdicts", json=[flow() for _ in range(10)], headers=WRITE)
    assert again.status_code == 201, again.text
    print(f"\nfull disk: {failed.status_code} {body['error']!r}; reads 200; writes back after freeing")
    http.close()
