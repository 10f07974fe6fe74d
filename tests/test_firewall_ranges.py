"""The parts of the nftables adapter that need no root: range arithmetic, nft JSON, error messages."""

from __future__ import annotations

import ipaddress
import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowguard.decisions import Decision
from flowguard.errors import ConfigError, FirewallError
from flowguard.firewall import _nftjson as nj
from flowguard.firewall._common import seconds_left
from flowguard.firewall._ranges import Piece, RangeSet
from flowguard.firewall.nftables import NftablesAdapter


def ip(a: str) -> int:
    return int(ipaddress.ip_address(a))


def spans(rs: RangeSet) -> list[tuple[str, str, int | None]]:
    return [(str(ipaddress.ip_address(p.lo)), str(ipaddress.ip_address(p.hi)), p.timeout) for p in rs.pieces]


def test_address_inside_range_with_longer_timeout_is_split_out() -> None:
    old = Piece(ip("10.0.0.0"), ip("10.0.0.255"), 60)
    rs = RangeSet([old])
    rs.block(ip("10.0.0.5"), ip("10.0.0.5"), 600)
    assert spans(rs) == [("10.0.0.0", "10.0.0.4", 60), ("10.0.0.5", "10.0.0.5", 600),
                         ("10.0.0.6", "10.0.0.255", 60)]
    removed, added = rs.changes()
    assert removed == [old] and len(added) == 3


def test_covered_address_with_shorter_timeout_changes_nothing() -> None:
    rs = RangeSet([Piece(ip("10.0.0.0"), ip("10.0.0.255"), 60)])
    rs.block(ip("10.0.0.5"), ip("10.0.0.5"), 10, replace_exact=True)
    assert rs.changes() == ([], [])


def test_wider_range_keeps_longer_pieces_and_fills_around_them() -> None:
    keep = Piece(ip("10.0.0.5"), ip("10.0.0.5"), 600)
    short = Piece(ip("10.0.0.9"), ip("10.0.0.9"), 5)
    rs = RangeSet([keep, short])
    rs.block(ip("10.0.0.0"), ip("10.0.0.255"), 60)
    assert spans(rs) == [("10.0.0.0", "10.0.0.4", 60), ("10.0.0.5", "10.0.0.5", 600),
                         ("10.0.0.6", "10.0.0.255", 60)]
    removed, _ = rs.changes()
    assert removed == [short]  # the longer piece is left alone, the shorter one swallowed


def test_exact_value_is_refreshed_even_shorter_but_only_if_read_from_the_firewall() -> None:
    old = Piece(ip("10.0.0.1"), ip("10.0.0.1"), 600)
    rs = RangeSet([old])
    rs.block(old.lo, old.hi, 30, replace_exact=True)
    assert spans(rs) == [("10.0.0.1", "10.0.0.1", 30)]
    rs.block(old.lo, old.hi, 10, replace_exact=True)  # same call: the longer of the two stands
    assert spans(rs) == [("10.0.0.1", "10.0.0.1", 30)]
    assert rs.changes()[0] == [old]


def test_no_timeout_outlasts_everything() -> None:
    rs = RangeSet([Piece(ip("10.0.0.0"), ip("10.0.0.255"), None)])
    rs.block(ip("10.0.0.7"), ip("10.0.0.7"), 10**6)
    assert rs.changes() == ([], [])


def test_unblock_keeps_the_rest_of_a_wider_piece() -> None:
    rs = RangeSet([Piece(ip("10.0.0.0"), ip("10.0.0.255"), 60), Piece(ip("10.0.1.1"), ip("10.0.1.1"), 9)])
    rs.unblock(ip("10.0.0.128"), ip("10.0.1.255"))
    assert spans(rs) == [("10.0.0.0", "10.0.0.127", 60)]
    rs.unblock(ip("192.0.2.1"), ip("192.0.2.1"))  # not blocked: nothing to do
    assert len(rs.changes()[1]) == 1


def test_element_values_render_as_address_prefix_or_range() -> None:
    assert nj.element_value(Piece(ip("10.0.0.1"), ip("10.0.0.1"), 5), 4) == "10.0.0.1"
    assert nj.element_value(Piece(ip("10.0.0.0"), ip("10.0.0.255"), 5), 4) == {
        "prefix": {"addr": "10.0.0.0", "len": 24}}
    odd = Piece(ip("10.0.0.6"), ip("10.0.0.9"), 5)
    assert nj.element_value(odd, 4) == {"range": ["10.0.0.6", "10.0.0.9"]}
    v6 = ipaddress.ip_network("fd00:252::/64")
    piece = Piece(int(v6.network_address), int(v6.broadcast_address), 7)
    val = {"prefix": {"addr": "fd00:252::", "len": 64}}
    assert nj.element(piece, 6) == {"elem": {"val": val, "timeout": 7}}
    assert nj.element_value(Piece(1, 1, None), 6) == "::1"  # not 0.0.0.1
    for val in ("10.0.0.1", {"prefix": {"addr": "10.0.0.0", "len": 24}}, {"range": ["10.0.0.6", "10.0.0.9"]}):
        lo, hi = nj.span(val, 4)
        assert nj.element_value(Piece(lo, hi, None), 4) == val


def test_listing_is_parsed_and_timeouts_round_up() -> None:
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"set": {"family": "inet", "name": "blocked_v4", "table": "flowguard", "type": "ipv4_addr",
                 "flags": ["interval", "timeout"], "elem": [
                     {"elem": {"val": "10.0.0.1", "timeout": 30, "expires": 12}},
                     {"elem": {"val": {"prefix": {"addr": "10.1.0.0", "len": 16}},
                               "timeout": 9, "expires": 9}},
                     "10.2.0.1"]}},
        {"chain": {"family": "inet", "table": "flowguard", "name": "input", "hook": "input", "prio": -10}},
        {"rule": {"chain": "input", "expr": nj.rule_specs()[0][1]}},
    ]}
    state = nj.TableState.parse(listing)
    assert [(p.timeout) for p in state.pieces(4)] == [13, 9, None]
    assert state.pieces(6) == []
    comment, expr = nj.rule_specs()[0]
    assert nj.has_rule(state.rules["input"], comment, expr)  # made by hand: known by its expression
    assert not nj.has_rule(state.rules["input"], *nj.rule_specs()[1])


def test_seconds_left_rounds_up() -> None:
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    later = now + timedelta(seconds=2.01)
    d = Decision(id=1, value="10.0.0.1", scenario="x", created_at=now, expires_at=later)
    assert seconds_left(d, now) == 3 and d.remaining_seconds(now) == 2


def test_bad_options_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="nftables table"):
        NftablesAdapter("bad name")
    with pytest.raises(ConfigError, match="prerouting, input, forward, output, postrouting"):
        NftablesAdapter(hooks=("forward", "forward"))
    with pytest.raises(ConfigError, match="nftables netns"):
        NftablesAdapter(netns="a b")


def _fake_nft(tmp_path: Path, script: str) -> str:
    path = tmp_path / "nft"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_nft_errors_carry_nfts_message_and_the_commands(tmp_path: Path) -> None:
    listing = json.dumps({"nftables": [{"set": {"name": "blocked_v4", "type": "ipv4_addr",
                                                "flags": ["interval", "timeout"]}},
                                       {"set": {"name": "blocked_v6", "type": "ipv6_addr",
                                                "flags": ["interval", "timeout"]}}]})
    # `list` answers; any change fails like nft does
    nft = _fake_nft(tmp_path, f"""in=$(cat)
case "$in" in *'"list"'*) echo '{listing}'; exit 0;; esac
echo 'internal:0:0-0: Error: Could not process rule: Operation not permitted' >&2; exit 1
""")
    fw = NftablesAdapter(nft=nft, hooks=("input",))
    now = datetime.now(timezone.utc)
    d = Decision(id=1, value="10.0.0.1", scenario="x", created_at=now, expires_at=now + timedelta(seconds=30))
    with pytest.raises(FirewallError) as err:
        fw.apply([d])
    msg = str(err.value)
    assert "Operation not permitted" in msg and "table inet flowguard" in msg
    assert "add element inet flowguard blocked_v4 { 10.0.0.1 timeout 30s }" in msg
    assert "add chain inet flowguard input" in msg


def test_missing_nft_names_the_setting() -> None:
    with pytest.raises(FirewallError, match="not found \\(setting nftables nft\\)"):
        NftablesAdapter(nft="/nonexistent/nft").check()


def test_wrong_set_type_is_reported_not_replaced(tmp_path: Path) -> None:
    wrong = {"name": "blocked_v4", "type": "ipv4_addr", "flags": ["interval"]}
    listing = json.dumps({"nftables": [{"set": wrong}]})
    nft = _fake_nft(tmp_path, f"cat >/dev/null; echo '{listing}'\n")
    with pytest.raises(FirewallError, match="blocked_v4 .* needs ipv4_addr with flags interval,timeout"):
        NftablesAdapter(nft=nft).check()
