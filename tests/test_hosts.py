from __future__ import annotations

from flowguard.hosts import CORRELATION_WINDOW_MS, HostView
from flowguard.triage import FlowVerdict


def verdict(src: str, cls: str, first: int, last: int, dst: str = "198.51.100.1") -> FlowVerdict:
    return FlowVerdict(pcap="x", src_ip=src, src_port=40000, dst_ip=dst, dst_port=443, protocol=6,
                       first_seen_ms=first, last_seen_ms=last, packets=10, bytes=100,
                       application_name="TLS", verdict=cls, score=0.99, scores={}, model="m")


def test_mining_and_tunnel_on_one_host_are_correlated() -> None:
    view = HostView()
    view.add([verdict("10.0.0.5", "stratum_mining", 0, 1000),
              verdict("10.0.0.5", "reverse_tunnel", 2000, 3000, dst="203.0.113.9"),
              verdict("10.0.0.6", "stratum_mining", 0, 1000),
              verdict("10.0.0.7", "benign", 0, 1000)])
    hosts = view.summaries()
    assert [h.host for h in hosts] == ["10.0.0.5", "10.0.0.6"]  # correlated first, benign absent
    first = hosts[0].to_dict()
    assert first["correlated"] is True
    assert first["peers"] == {"stratum_mining": ["198.51.100.1"], "reverse_tunnel": ["203.0.113.9"]}
    assert hosts[1].correlated is False


def test_far_apart_in_time_is_not_correlated() -> None:
    view = HostView()
    view.add([verdict("10.0.0.5", "stratum_mining", 0, 1000),
              verdict("10.0.0.5", "reverse_tunnel", 1000 + CORRELATION_WINDOW_MS + 1, 10**10)])
    assert view.summaries()[0].correlated is False
