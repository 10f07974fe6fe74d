"""NftablesAdapter against the real nft, proven with real TCP connections (root only).

    fgfw-a-N [eth0 10.252.0.1, fd00:252::1] ── [a0] fgfw-r-N [b0] ── [eth0 10.252.1.1, fd00:252:1::1] fgfw-b-N

fgfw-r-N routes between the two and runs the adapter (netns=fgfw-r-N, chains on forward and input).
A TCP server listens in b; a client process in a connects on request. Every address lives inside the
namespaces made here, and they are deleted at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from flowguard.decisions import Decision
from flowguard.firewall.nftables import NftablesAdapter

pytestmark = pytest.mark.netns

A4, B4, A6, B6, PORT = "10.252.0.1", "10.252.1.1", "fd00:252::1", "fd00:252:1::1", 9752
PROBE_TIMEOUT_S = 0.2  # namespaces answer in well under a millisecond: no answer in 0.2 s means dropped

SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1]))); s.listen(128)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

CLIENT = r"""
import socket, sys
for line in sys.stdin:
    host, port, timeout = line.split()
    try:
        with socket.create_connection((host, int(port)), timeout=float(timeout)):
            print("ok", flush=True)
    except OSError as e:
        print("fail", type(e).__name__, flush=True)
"""


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _must(*args: str) -> str:
    res = _sh(*args)
    assert res.returncode == 0, f"{' '.join(args)}: {res.stderr}"
    return res.stdout


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (ip netns, nft)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH"
    return None


@dataclass
class Lab:
    a: str
    r: str
    b: str
    client: subprocess.Popen[str]

    def connects(self, host: str = B4, timeout: float = PROBE_TIMEOUT_S) -> bool:
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(f"{host} {PORT} {timeout}\n")
        self.client.stdin.flush()
        return self.client.stdout.readline().startswith("ok")

    def nft(self, *args: str) -> str:
        return _must("ip", "netns", "exec", self.r, "nft", *args)

    def adapter(self) -> NftablesAdapter:
        return NftablesAdapter(netns=self.r)

    def other_table_intact(self) -> bool:
        return "192.0.2.77" in self.nft("list", "table", "inet", "other")


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    tag = os.getpid() % 100000
    a, r, b = (f"fgfw-{k}-{tag}" for k in ("a", "r", "b"))
    created: list[str] = []
    procs: list[subprocess.Popen[str]] = []

    def teardown() -> None:
        for p in procs:
            p.kill()
            p.wait(timeout=5)
        for name in created:
            _sh("ip", "netns", "del", name)

    request.addfinalizer(teardown)
    for name in (a, r, b):
        res = _sh("ip", "netns", "add", name)
        if res.returncode != 0:
            pytest.skip(f"cannot create network namespace {name}: {res.stderr.strip()}")
        created.append(name)
    _must("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "a0", "netns", r)
    _must("ip", "-n", b, "link", "add", "eth0", "type", "veth", "peer", "name", "b0", "netns", r)
    for ns, dev, v4, v6 in ((a, "eth0", f"{A4}/24", f"{A6}/64"), (b, "eth0", f"{B4}/24", f"{B6}/64"),
                            (r, "a0", "10.252.0.254/24", "fd00:252::fe/64"),
                            (r, "b0", "10.252.1.254/24", "fd00:252:1::fe/64")):
        _must("ip", "-n", ns, "addr", "add", v4, "dev", dev)
        _must("ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad")
        _must("ip", "-n", ns, "link", "set", dev, "up")
        _must("ip", "-n", ns, "link", "set", "lo", "up")
    for ns, gw4, gw6 in ((a, "10.252.0.254", "fd00:252::fe"), (b, "10.252.1.254", "fd00:252:1::fe")):
        _must("ip", "-n", ns, "route", "add", "default", "via", gw4)
        _must("ip", "-n", ns, "-6", "route", "add", "default", "via", gw6)
    forwarding = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    _must("ip", "netns", "exec", r, "sysctl", "-qw", *forwarding)
    # someone else's table, which flowguard must never touch
    _must("ip", "netns", "exec", r, "nft", "add table inet other; "
          "add set inet other keep { type ipv4_addr; elements = { 192.0.2.77 } }")

    server = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", SERVER, str(PORT)],
                              stdout=subprocess.PIPE, text=True)
    procs.append(server)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    client = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", CLIENT],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(client)
    lab = Lab(a, r, b, client)
    deadline = time.monotonic() + 10  # neighbour discovery and the first routes take a moment
    while not (lab.connects(B4) and lab.connects(B6)):
        assert time.monotonic() < deadline, "a cannot reach b through the router"
        time.sleep(0.1)
    yield lab


@pytest.fixture
def fw(lab: Lab) -> Iterator[NftablesAdapter]:
    adapter = lab.adapter()
    adapter.sync([])  # every test starts with empty sets
    yield adapter
    assert lab.other_table_intact(), "flowguard changed a table it does not own"


def decision(value: str, seconds: float, id: int = 1) -> Decision:
    now = datetime.now(timezone.utc)
    return Decision(id=id, value=value, scenario="stratum_mining", created_at=now,
                    expires_at=now + timedelta(seconds=seconds))


def test_setup_is_idempotent_and_leaves_other_tables_alone(lab: Lab, fw: NftablesAdapter) -> None:
    fw.check()
    fw.check()
    table = lab.nft("list", "table", "inet", "flowguard")
    for line in ("type ipv4_addr", "type ipv6_addr", "flags interval,timeout",
                 "hook forward priority filter - 10; policy accept;",
                 "hook input priority filter - 10; policy accept;"):
        assert line in table
    for rule in ("ip saddr @blocked_v4 drop", "ip daddr @blocked_v4 drop",
                 "ip6 saddr @blocked_v6 drop", "ip6 daddr @blocked_v6 drop"):
        assert table.count(rule) == 2, rule  # once in each chain, however often check() ran
    assert lab.other_table_intact()


def test_block_takes_effect_then_expires(lab: Lab, fw: NftablesAdapter) -> None:
    assert lab.connects()
    d = decision(A4, 3)
    t0 = time.time()
    fw.apply([d])
    applied = time.time()
    assert not lab.connects(), "the block did not take effect"
    assert lab.connects(B6), "an IPv4 decision blocked IPv6"
    expires = d.expires_at.timestamp()
    lifted = None
    while time.time() < expires + 3:
        started = time.time()
        if lab.connects(timeout=0.05):
            lifted = started
            break
        time.sleep(0.01)
    assert lifted is not None, "the block outlived its decision by 3 s"
    late = lifted - expires
    print(f"\napply took {(applied - t0) * 1000:.1f} ms; block lifted {late:+.2f} s after expires_at")
    assert -0.05 <= late <= 1.2  # timeouts are whole seconds rounded up; a probe every ~60 ms


def test_revoke_unblocks_at_once_and_missing_is_fine(lab: Lab, fw: NftablesAdapter) -> None:
    d = decision(A4, 60)
    fw.apply([d])
    assert not lab.connects()
    t0 = time.time()
    fw.revoke([d])
    print(f"\nrevoke took {(time.time() - t0) * 1000:.1f} ms")
    assert lab.connects()
    fw.revoke([d, decision("192.0.2.1", 60), decision("2001:db8::/48", 60)])  # not blocked: no error
    assert fw.list_blocked() == {}


def test_cidr_blocks_and_overlaps_are_split(lab: Lab, fw: NftablesAdapter) -> None:
    net = decision("10.252.0.0/24", 60)
    fw.apply([net])
    assert not lab.connects()
    fw.apply([decision(A4, 600)])  # inside the /24, longer: split out rather than refused
    blocked = fw.list_blocked()
    assert set(blocked) == {"10.252.0.0", A4, "10.252.0.2-10.252.0.255"}
    assert 595 <= blocked[A4] <= 600 and 55 <= blocked["10.252.0.0"] <= 60
    assert not lab.connects()
    fw.apply([decision("10.252.0.0/16", 30)])  # wider, shorter: fills around, keeps the longer pieces
    assert not lab.connects()
    assert 595 <= fw.list_blocked()[A4] <= 600
    fw.revoke([decision("10.252.0.0/16", 1)])
    assert lab.connects() and fw.list_blocked() == {}


def test_ipv6_is_blocked(lab: Lab, fw: NftablesAdapter) -> None:
    assert lab.connects(B6)
    fw.apply([decision("fd00:252::/64", 60)])
    assert not lab.connects(B6)
    assert lab.connects(B4), "an IPv6 decision blocked IPv4"
    assert set(fw.list_blocked()) == {"fd00:252::/64"}
    fw.revoke([decision("fd00:252::/64", 60)])
    assert lab.connects(B6)


def test_apply_twice_is_one_element_with_a_fresh_timeout(lab: Lab, fw: NftablesAdapter) -> None:
    fw.apply([decision(A4, 30)])
    fw.apply([decision(A4, 30)])
    assert list(fw.list_blocked()) == [A4]
    fw.apply([decision(A4, 90)])
    assert 88 <= fw.list_blocked()[A4] <= 90
    fw.apply([decision(A4, 20)])  # the newer decision for the same value wins, even when shorter
    assert 18 <= fw.list_blocked()[A4] <= 20
    assert not lab.connects()


def test_sync_restores_the_exact_active_set_after_a_flush(lab: Lab, fw: NftablesAdapter) -> None:
    active = [decision(A4, 60, 1), decision("10.99.0.0/16", 120, 2), decision("fd00:252::1", 60, 3),
              decision("10.98.0.1", -5, 4)]  # expired: skipped
    fw.apply(active)
    lab.nft("add", "element", "inet", "flowguard", "blocked_v4", "{ 10.97.0.1 timeout 1h }")  # stray
    lab.nft("flush", "table", "inet", "flowguard")  # another admin, or a reboot of the rules
    assert lab.connects(), "a flushed table should not block"
    t0 = time.time()
    fw.sync(active)
    print(f"\nsync took {(time.time() - t0) * 1000:.1f} ms")
    blocked = fw.list_blocked()
    assert set(blocked) == {A4, "10.99.0.0/16", "fd00:252::1"}
    assert 115 <= blocked["10.99.0.0/16"] <= 120
    assert not lab.connects() and not lab.connects(B6)
    lab.nft("delete", "table", "inet", "flowguard")  # gone altogether: the next call rebuilds it
    fw.apply([decision(A4, 60)])
    assert not lab.connects()
    fw.sync([])
    assert fw.list_blocked() == {} and lab.connects()
