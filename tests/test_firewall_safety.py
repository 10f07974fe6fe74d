"""What must never be blocked, and what must hold however many verdicts arrive: the allowlist wins
(containment, IPv6, IPv4-mapped), the appliance's own addresses, gateways and DNS servers are
protected, the new-block breaker holds under 10k malicious verdicts, dry-run never touches the
firewall, and decisions end on time."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from flowguard.config import Settings
from flowguard.policy import Policy
from flowguard.store import Store
from flowguard.triage import FlowVerdict
from tests.servicekit import T0, Clock, FakeAdapter, flow, running

pytestmark = pytest.mark.anyio




def verdict(dst: str, score: float = 0.99, verdict: str = "stratum_mining") -> FlowVerdict:
    return FlowVerdict(**flow(dst=dst, score=score, verdict=verdict))


def make_policy(tmp_path: Path, protected: list[str] | None = None, adapter: object = None,
                **settings: object) -> tuple[Policy, Store, Clock, FakeAdapter]:
    config = Settings(data_dir=tmp_path, threshold_stratum_mining=0.9, threshold_reverse_tunnel=0.5,
                      **settings)  # type: ignore[arg-type]
    store = Store(config.database)
    clock = Clock()
    fake = adapter if adapter is not None else FakeAdapter()
    return Policy(config, store, fake, clock=clock, protected=protected), store, clock, fake  # type: ignore[arg-type]


def decide(policy: Policy, store: Store, clock: Clock, *flows: FlowVerdict) -> list[str]:
    ids = store.add_verdicts(list(flows), "test", clock())
    return [o.action for o in policy.apply(list(zip(ids, flows, strict=True)))]


ALLOWLIST = ("10.0.0.0/8", "198.51.100.0/24", "2001:db8:aa::/48", "203.0.113.77/32")
INSIDE = ["10.1.2.3", "10.255.255.255", "198.51.100.0", "198.51.100.255", "2001:db8:aa::1",
          "2001:db8:aa:ffff:ffff:ffff:ffff:ffff", "2001:DB8:AA:0:0:0:0:7", "::ffff:10.9.9.9",
          "::ffff:198.51.100.20", "203.0.113.77", "127.0.0.53", "::1", "169.254.1.1", "fe80::1"]
OUTSIDE = ["11.0.0.1", "198.51.101.1", "2001:db8:ab::1", "203.0.113.78", "::ffff:203.0.113.9"]


def test_the_allowlist_always_wins(tmp_path: Path) -> None:
    policy, store, clock, fake = make_policy(tmp_path, protected=[], allowlist=ALLOWLIST,
                                             max_new_blocks_per_minute=1000)
    actions = decide(policy, store, clock, *(verdict(a, score=1.0) for a in INSIDE))
    assert actions == ["allowlisted"] * len(INSIDE)
    actions = decide(policy, store, clock, *(verdict(a, verdict="reverse_tunnel") for a in OUTSIDE))
    assert actions == ["blocked"] * len(OUTSIDE)
    applied = {v for m, values in fake.calls if m == "apply" for v in values}
    assert applied == {"11.0.0.1", "198.51.101.1", "2001:db8:ab::1", "203.0.113.78", "203.0.113.9"}


def test_allowlisting_through_the_api_wins_over_an_open_block(tmp_path: Path) -> None:
    policy, store, clock, fake = make_policy(tmp_path, protected=[])
    assert decide(policy, store, clock, verdict("2001:db8:5::9")) == ["blocked"]
    policy.allow("2001:db8:5::/64")
    assert ("revoke", ["2001:db8:5::9"]) in fake.calls and store.active(clock()) == []
    assert decide(policy, store, clock, verdict("2001:db8:5::9")) == ["allowlisted"]


def test_own_addresses_gateways_and_dns_are_never_blocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowguard import localnet

    monkeypatch.setattr(localnet, "_ip_json", lambda *args: {
        ("address", "show"): [{"addr_info": [{"local": "192.0.2.2"}, {"local": "fd00::2"}]},
                              {"ifname": "no-addresses"}],
        ("-4", "route", "show", "default"): [{"dst": "default", "gateway": "192.0.2.1"}],
        ("-6", "route", "show", "default"): [{"dst": "default", "gateway": "fd00::1"}],
    }.get(args, []))
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# generated\nsearch lan\nnameserver 9.9.9.9\nnameserver fe80::53%eth0\n"
                      "nameserver 2620:fe::fe\noptions edns0\n")
    monkeypatch.setattr(localnet, "RESOLV_CONF", resolv)
    assert localnet.protected_addresses() == ["192.0.2.2", "fd00::2", "192.0.2.1", "fd00::1", "9.9.9.9",
                                              "fe80::53", "2620:fe::fe"]
    policy, store, clock, fake = make_policy(tmp_path)  # protected: discovered, as in the service
    mine = ["192.0.2.2", "fd00::2", "192.0.2.1", "fd00::1", "9.9.9.9", "2620:fe::fe"]
    assert decide(policy, store, clock, *(verdict(a) for a in mine)) == ["allowlisted"] * len(mine)
    assert decide(policy, store, clock, verdict("192.0.2.3")) == ["blocked"]
    assert fake.calls[-1] == ("apply", ["192.0.2.3"])

    off, store2, clock2, _ = make_policy(tmp_path / "off", protect_local=False)
    assert off.protected == []
    assert decide(off, store2, clock2, verdict("9.9.9.9")) == ["blocked"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"), reason="needs root and ip netns")
def test_discovery_reads_a_real_network_namespace(tmp_path: Path) -> None:
    """In a namespace of our own: an address, a default route and a resolv.conf (ip netns exec
    bind-mounts /etc/netns/NAME/resolv.conf)."""
    name = f"fghd-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 198.18.53.53\n")
        for cmd in ("link add fghd0 type veth peer name fghd1", "link set fghd0 up", "link set lo up",
                    "address add 198.18.7.2/24 dev fghd0", "route add default via 198.18.7.1"):
            subprocess.run(["ip", "-n", name, *cmd.split()], check=True)
        code = "from flowguard.localnet import protected_addresses as p; print(','.join(p()))"
        out = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", code], check=True,
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        found = out.stdout.strip().split(",")
        assert {"198.18.7.2", "198.18.7.1", "198.18.53.53"} <= set(found), found
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


async def test_the_breaker_holds_under_10k_malicious_verdicts(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, max_new_blocks_per_minute=25, max_body_bytes=16 << 20) as h:
        burst = [flow(dst=str(ipaddress.ip_address("100.64.0.0") + i)) for i in range(10_000)]
        body = await h.ingest(*burst)
        assert body["counts"] == {"blocked": 25, "suppressed": 9975}
        applied = [v for m, values in h.adapter.calls if m == "apply" for v in values]
        assert len(applied) == 25
        assert h.store.count_verdicts() == 10_000
        h.clock.advance(59)
        again = [flow(dst=str(ipaddress.ip_address("100.80.0.0") + i)) for i in range(500)]
        assert (await h.ingest(*again))["counts"] == {"suppressed": 500}
        h.clock.advance(2)
        assert (await h.ingest(*again[:30]))["counts"] == {"blocked": 25, "suppressed": 5}
        assert len(h.store.active(h.clock())) == 50


class ExplodingAdapter:
    """A firewall that must not be touched: any call fails the test."""

    name = "exploding"

    def __getattr__(self, method: str) -> object:
        raise AssertionError(f"dry-run called the firewall: {method}")


async def test_dry_run_never_touches_the_firewall(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, adapter=ExplodingAdapter(), dry_run=True,  # type: ignore[arg-type]
                       ttl_stratum_mining="1m") as h:
        body = await h.ingest(*(flow(dst=f"203.0.113.{i}") for i in range(1, 40)))
        assert body["counts"] == {"dry_run": 39}
        assert (await h.client.delete("/v1/decisions/1", headers={"X-Api-Key": "test-key-0123456789abcdef"})
                ).status_code == 200
        assert (await h.client.post("/v1/allowlist", json={"cidr": "203.0.113.0/28"},
                                    headers={"X-Api-Key": "test-key-0123456789abcdef"})).status_code == 201
        h.clock.advance(120)
        assert h.app.state.service.policy.tick()  # expiry, with nothing sent anywhere
        assert h.store.active(h.clock(), dry_run=True) == []


def test_decisions_end_on_time(tmp_path: Path) -> None:
    policy, store, clock, fake = make_policy(tmp_path, protected=[], ttl_stratum_mining="10m",
                                             ttl_reverse_tunnel="1h")
    decide(policy, store, clock, verdict("203.0.113.1"), verdict("203.0.113.2", verdict="reverse_tunnel"))
    clock.advance(599)
    assert policy.tick() == [] and len(store.active(clock())) == 2
    clock.advance(1)
    ended = policy.tick()
    assert [r.decision.value for r in ended] == ["203.0.113.1"]
    assert fake.calls[-1] == ("revoke", ["203.0.113.1"])
    assert [d.value for d in store.active(clock())] == ["203.0.113.2"]
    clock.now = T0 + timedelta(hours=1)
    assert [r.decision.value for r in policy.tick()] == ["203.0.113.2"]
    assert policy.tick() == [] and store.active(clock()) == []


def test_a_failing_firewall_is_resynced_and_still_never_sees_an_allowlisted_address(tmp_path: Path) -> None:
    policy, store, clock, fake = make_policy(tmp_path, protected=["192.0.2.53"],
                                             adapter=FakeAdapter(fail=True))
    assert decide(policy, store, clock, verdict("203.0.113.5"), verdict("192.0.2.53")) == ["blocked",
                                                                                          "allowlisted"]
    fake.fail = False
    policy.tick()
    assert fake.calls[-1] == ("sync", ["203.0.113.5"])
    every = {v for _, values in fake.calls for v in values}
    assert "192.0.2.53" not in every


def test_a_window_that_starts_at_the_server_still_blocks_the_server(tmp_path: Path) -> None:
    """A long flow's later window may begin with the server's packet, so nfstream makes the
    server the source: with the inside network allowlisted, the remote end is what is blocked."""
    policy, store, clock, fake = make_policy(tmp_path, protected=[], allowlist=["10.9.0.0/16"])
    flipped = FlowVerdict(**{**flow(dst="10.9.1.5", score=0.999), "src_ip": "203.0.113.7",
                             "src_port": 443, "dst_port": 51000})
    assert policy.remote_end(flipped) == ("203.0.113.7", "10.9.1.5")
    assert decide(policy, store, clock, flipped) == ["blocked"]
    assert [d.value for d in store.active(clock())] == ["203.0.113.7"]
    normal = FlowVerdict(**{**flow(dst="198.51.100.9", score=0.999), "src_ip": "10.9.1.6",
                            "src_port": 51000, "dst_port": 443})
    assert policy.remote_end(normal) == ("198.51.100.9", "10.9.1.6")
    store.close()
