"""The nftables JSON that NftablesAdapter sends and reads (libnftables-json(5)); no I/O here."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from flowguard.errors import FirewallError
from flowguard.firewall._ranges import Piece

Json = dict[str, Any]

#: set name and nftables element type for each IP version
SETS = {4: ("blocked_v4", "ipv4_addr"), 6: ("blocked_v6", "ipv6_addr")}
_PROTO = {4: "ip", 6: "ip6"}
_BITS = {4: 32, 6: 128}


def rule_specs() -> list[tuple[str, list[Json]]]:
    """(comment, expr) of the four drop rules every flowguard chain holds."""
    specs: list[tuple[str, list[Json]]] = []
    for version in (4, 6):
        proto = _PROTO[version]
        for fld in ("saddr", "daddr"):
            match: Json = {"op": "==", "left": {"payload": {"protocol": proto, "field": fld}},
                     "right": f"@{SETS[version][0]}"}
            specs.append((f"flowguard {proto} {fld}", [{"match": match}, {"drop": None}]))
    return specs


@dataclass
class TableState:
    """What `list table` showed: sets (with their elements), base chains, and rules per chain."""

    sets: dict[str, Json] = field(default_factory=dict)
    chains: dict[str, Json] = field(default_factory=dict)
    rules: dict[str, list[Json]] = field(default_factory=dict)

    @classmethod
    def parse(cls, listing: Json) -> TableState:
        state = cls()
        for obj in listing.get("nftables", []):
            if "set" in obj:
                state.sets[obj["set"]["name"]] = obj["set"]
            elif "chain" in obj:
                state.chains[obj["chain"]["name"]] = obj["chain"]
            elif "rule" in obj:
                state.rules.setdefault(obj["rule"]["chain"], []).append(obj["rule"])
        return state

    def pieces(self, version: int) -> list[Piece]:
        """The elements of the set for `version`, as pieces (timeouts rounded up)."""
        found = self.sets.get(SETS[version][0], {})
        return [_piece(e, version) for e in found.get("elem", [])]


def _canon(expr: Any) -> str:
    return json.dumps(expr, sort_keys=True)


def has_rule(rules: list[Json], comment: str, expr: list[Json]) -> bool:
    """Is the rule there, recognised by its comment or, when made by hand, by its expression?"""
    want = _canon(expr)
    return any(r.get("comment") == comment or _canon(r.get("expr")) == want for r in rules)


def _piece(elem: Any, version: int) -> Piece:
    timeout: int | None = None
    if isinstance(elem, dict) and "elem" in elem:
        inner = elem["elem"]
        val = inner["val"]
        if "expires" in inner:  # whole seconds, truncated: +1 so a re-added piece never ends early
            timeout = min(int(inner["expires"]) + 1, int(inner.get("timeout", inner["expires"] + 1)))
        elif "timeout" in inner:
            timeout = int(inner["timeout"])
    else:
        val = elem
    lo, hi = span(val, version)
    return Piece(lo, hi, timeout)


def span(val: Any, version: int) -> tuple[int, int]:
    """The first and last address (as integers) of an element value as nft prints it."""
    try:
        if isinstance(val, str):
            net = ipaddress.ip_network(val, strict=False)
            return int(net.network_address), int(net.broadcast_address)
        if "prefix" in val:
            net = ipaddress.ip_network(f"{val['prefix']['addr']}/{val['prefix']['len']}", strict=False)
            return int(net.network_address), int(net.broadcast_address)
        if "range" in val:
            lo, hi = (int(ipaddress.ip_address(a)) for a in val["range"])
            return lo, hi
    except (ValueError, KeyError, TypeError) as exc:
        raise FirewallError(f"cannot read set element {val!r} listed by nft: {exc}") from exc
    raise FirewallError(f"cannot read set element {val!r} listed by nft (IPv{version} set)")


def element_value(piece: Piece, version: int) -> Any:
    """The JSON value for a piece: an address, a prefix, or a range."""
    lo = ipaddress.ip_address(piece.lo) if version == 4 else ipaddress.IPv6Address(piece.lo)
    size = piece.hi - piece.lo + 1
    if size == 1:
        return str(lo)
    if size & (size - 1) == 0 and piece.lo % size == 0:
        return {"prefix": {"addr": str(lo), "len": _BITS[version] - size.bit_length() + 1}}
    hi = ipaddress.ip_address(piece.hi) if version == 4 else ipaddress.IPv6Address(piece.hi)
    return {"range": [str(lo), str(hi)]}


def element_text(piece: Piece, version: int) -> str:
    """The piece as nft's CLI writes it: `10.0.0.1`, `10.0.0.0/24` or `10.0.0.6-10.0.0.9`."""
    val = element_value(piece, version)
    if isinstance(val, str):
        return val
    if "prefix" in val:
        return f"{val['prefix']['addr']}/{val['prefix']['len']}"
    return "-".join(val["range"])


def element(piece: Piece, version: int) -> Any:
    val = element_value(piece, version)
    return val if piece.timeout is None else {"elem": {"val": val, "timeout": piece.timeout}}


def describe(commands: list[Json], limit: int = 6) -> str:
    """The commands in nft's CLI words, for error messages: `add element inet t s { 10.0.0.1 timeout 3s }`."""
    lines = []
    for cmd in commands:
        for verb, body in cmd.items():
            for kind, obj in body.items():
                where = " ".join(str(obj.get(k)) for k in ("family", "table") if k in obj)
                name = obj.get("name") or obj.get("chain") or ""
                text = f"{verb} {kind} {where} {name}".replace("  ", " ").strip()
                if kind == "table":
                    text = f"{verb} table {obj.get('family')} {obj.get('name')}"
                if kind == "element":
                    items = [_elem_text(e) for e in obj.get("elem", [])]
                    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
                    text += " { " + ", ".join(items[:limit]) + more + " }"
                if kind == "rule":
                    text += f" ({obj.get('comment', '')})"
                lines.append(text)
    return "; ".join(lines)


def _elem_text(e: Any) -> str:
    if isinstance(e, dict) and "elem" in e:
        return f"{_val_text(e['elem']['val'])} timeout {e['elem'].get('timeout')}s"
    return _val_text(e)


def _val_text(val: Any) -> str:
    if isinstance(val, str):
        return val
    if "prefix" in val:
        return f"{val['prefix']['addr']}/{val['prefix']['len']}"
    if "range" in val:
        return "-".join(val["range"])
    return json.dumps(val)
