"""Namespace test for training.lab.wanbridge (root only).

Topology (namespace names get a per-run suffix):
  fgwb-a [eth0 10.251.0.1] <veth> [wan0] fgwb-w [wan1] <veth> [eth0 10.251.0.2] fgwb-b
The bridge runs in the w namespace; a UDP/TCP echo server runs in b; RTTs are
measured from a.  All traffic stays inside the namespaces created here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from training.lab.wanbridge import disable_offloads

REPO = Path(__file__).resolve().parents[1]
IP_A, IP_B, PORT = "10.251.0.1", "10.251.0.2", 9751

SERVER = r"""
import socket, sys, threading
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((sys.argv[1], int(sys.argv[2])))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((sys.argv[1], int(sys.argv[2]))); t.listen(4)
def udp():
    while True:
        d, a = u.recvfrom(2048); u.sendto(d, a)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept()
    with c:
        while d := c.recv(65536):
            c.sendall(d)
"""

CLIENT = r"""
import json, socket, sys, time
host, port, n, burst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE: burst echoes pile up
end = time.monotonic() + float(sys.argv[5]); up = False
while not up and time.monotonic() < end:  # warm-up: bridge start + ARP
    s.sendto(b"warm", (host, port))
    try:
        up = s.recvfrom(2048)[0] == b"warm"
    except TimeoutError:
        pass
out = {"up": up, "rtts": [], "order": [], "tcp": None}
if up:
    while True:  # flush late warm-up echoes
        s.settimeout(0.05)
        try:
            s.recvfrom(2048)
        except TimeoutError:
            break
    s.settimeout(1.0)
    for i in range(n):
        msg = b"p%d" % i; t0 = time.monotonic(); s.sendto(msg, (host, port))
        while s.recvfrom(2048)[0] != msg:
            pass
        out["rtts"].append((time.monotonic() - t0) * 1000)
    for i in range(burst):
        s.sendto(b"b%d" % i, (host, port)); time.sleep(0.0005)
    try:
        while len(out["order"]) < burst:
            out["order"].append(int(s.recvfrom(2048)[0][1:]))
    except TimeoutError:
        pass
    with socket.create_connection((host, port), timeout=2) as c:
        payload = bytes(range(256)) * 64
        c.sendall(payload); got = b""
        while len(got) < len(payload):
            got += c.recv(65536)
        out["tcp"] = got == payload
print(json.dumps(out))
"""


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _must(*args: str) -> None:
    res = _sh(*args)
    assert res.returncode == 0, f"{' '.join(args)}: {res.stderr}"


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    if not (shutil.which("ip") and shutil.which("ethtool")):
        pytest.skip("needs iproute2 'ip' and 'ethtool'")
    tag = f"{os.getpid() % 100000}"
    ns = {k: f"fgwb-{k}-{tag}" for k in ("a", "w", "b")}
    procs: list[subprocess.Popen[str]] = []
    created: list[str] = []

    def teardown() -> None:
        for p in procs:
            p.kill()
            p.wait(timeout=5)
        for name in created:
            _sh("ip", "netns", "del", name)

    request.addfinalizer(teardown)
    for name in ns.values():
        res = _sh("ip", "netns", "add", name)
        if res.returncode != 0:
            pytest.skip(f"cannot create network namespace {name}: {res.stderr.strip()}")
        created.append(name)
    a, w, b = ns["a"], ns["w"], ns["b"]
    _must("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "wan0", "netns", w)
    _must("ip", "-n", b, "link", "add", "eth0", "type", "veth", "peer", "name", "wan1", "netns", w)
    for n, ifname, addr in ((a, "eth0", IP_A), (b, "eth0", IP_B), (w, "wan0", ""), (w, "wan1", "")):
        assert disable_offloads(ifname, n), f"ethtool -K {ifname} failed in {n}"
        if addr:
            _must("ip", "-n", n, "addr", "add", f"{addr}/24", "dev", ifname)
        _must("ip", "-n", n, "link", "set", ifname, "up")
        _must("ip", "-n", n, "link", "set", "lo", "up")
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-c", SERVER, IP_B, str(PORT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(server)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    return ns


@contextlib.contextmanager
def bridge(lab: dict[str, str], *opts: str) -> Iterator[dict[str, object]]:
    cmd = ["ip", "netns", "exec", lab["w"], sys.executable, "-m", "training.lab.wanbridge",
           "--if-a", "wan0", "--if-b", "wan1", "--verbose", *opts]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    result: dict[str, object] = {}
    try:
        yield result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        result.update(rc=proc.returncode, stdout=out, stderr=err)


def measure(lab: dict[str, str], n: int = 10, burst: int = 0, warm_s: float = 4.0) -> dict:
    res = subprocess.run(["ip", "netns", "exec", lab["a"], sys.executable, "-c", CLIENT,
                          IP_B, str(PORT), str(n), str(burst), str(warm_s)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_no_delay_roundtrip(lab: dict[str, str]) -> None:
    with bridge(lab, "--delay", "0") as br:
        out = measure(lab)
    assert out["up"], "no UDP echo through the bridge"
    assert out["tcp"] is True, "TCP echo through the bridge failed"
    assert statistics.median(out["rtts"]) < 10, out["rtts"]
    assert br["rc"] == 0, br["stderr"]
    assert "a->b: forwarded=" in str(br["stderr"]) and br["stdout"] == ""


def test_delay_50ms(lab: dict[str, str]) -> None:
    with bridge(lab, "--delay", "50") as br:
        out = measure(lab)
    assert out["up"] and out["tcp"] is True
    assert 95 <= min(out["rtts"]) and max(out["rtts"]) <= 140, out["rtts"]
    assert 95 <= statistics.median(out["rtts"]) <= 140, out["rtts"]
    assert br["rc"] == 0, br["stderr"]


def test_jitter_never_reorders(lab: dict[str, str]) -> None:
    with bridge(lab, "--delay", "5", "--jitter", "5", "--seed", "7") as br:
        out = measure(lab, n=3, burst=300)
    assert out["up"]
    assert out["order"] == list(range(300)), out["order"]
    assert br["rc"] == 0, br["stderr"]


def test_full_loss_drops_everything(lab: dict[str, str]) -> None:
    with bridge(lab, "--loss", "100") as br:
        out = measure(lab, warm_s=1.0)
    assert not out["up"]
    assert br["rc"] == 0
    assert "forwarded=0" in str(br["stderr"]), br["stderr"]
