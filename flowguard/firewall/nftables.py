"""Enforce decisions with nftables: interval sets with timeouts, and drop rules, in a table of our own.

    table inet flowguard {
        set blocked_v4 { type ipv4_addr; flags interval,timeout; }
        set blocked_v6 { type ipv6_addr; flags interval,timeout; }
        chain forward {                  # and `input`: one base chain per hook in `hooks`
            type filter hook forward priority -10; policy accept;
            ip saddr @blocked_v4 drop
            ip daddr @blocked_v4 drop
            ip6 saddr @blocked_v6 drop
            ip6 daddr @blocked_v6 drop
        }
    }

Every call reads the table (`list table`) and then makes one transaction (`nft -j -f -`, the JSON on
stdin) that also puts back whatever part of the table is missing, so a flushed or deleted table heals
on the next call. Nothing outside the table is ever read or changed.

Elements carry `timeout <seconds left>s`, rounded up: a block ends within 1 s after the decision
expires, never before. Re-applying a value sets its timeout again (delete and add in one
transaction, so it works on kernels where `add element` leaves an existing timeout alone).
Overlapping decisions (a /24 and an address inside it) are kept as disjoint ranges, each address
with the longest timeout that covers it (see `_ranges.RangeSet`). `revoke` unblocks the decision's
whole range; if other active decisions overlap it, `sync` puts them back.

Usage:
    fw = NftablesAdapter()                       # or NftablesAdapter(netns="fw", hooks=("forward",))
    fw.check()                                   # FirewallError: nft missing, no permission, ...
    fw.sync(store.active())
    fw.apply([decision]); fw.revoke([decision])
    fw.list_blocked()                            # {"10.0.0.1": 3597, "10.9.0.0/24": 120}
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any

from flowguard.decisions import Decision
from flowguard.errors import ConfigError, FirewallError
from flowguard.firewall import _nftjson as nj
from flowguard.firewall._common import live, utcnow
from flowguard.firewall._ranges import Piece, RangeSet

__all__ = ["HOOKS", "NftablesAdapter"]

#: the netfilter hooks a flowguard chain can sit on
HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,62}\Z")
_NETNS = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
_ATTEMPTS = 3  # a piece may expire between reading and changing the set: read again and retry


class NftablesAdapter:
    """Drives `nft` on this host, or in the network namespace `netns` (`ip netns exec NETNS nft`).

    Parameters:
        table: name of the `inet` table flowguard owns.
        netns: run nft inside this named network namespace (`ip netns list`); None: this one.
        nft: the nft binary (a path or a name on PATH).
        hooks: one base chain (named after the hook) per netfilter hook, in `HOOKS`.
        priority: the chains' priority (before the usual filter chains at 0).
        timeout_s: how long one nft call may take.
    """

    name = "nftables"

    def __init__(
        self,
        table: str = "flowguard",
        *,
        netns: str | None = None,
        nft: str = "nft",
        hooks: Sequence[str] = ("forward", "input"),
        priority: int = -10,
        timeout_s: float = 10.0,
    ) -> None:
        if not _IDENT.match(table):
            raise ConfigError(f"nftables table {table!r} is not a name (letters, digits, '_', '-')")
        if netns is not None and not _NETNS.match(netns):
            raise ConfigError(f"nftables netns {netns!r} is not a namespace name (letters, digits, '_.-')")
        if not nft:
            raise ConfigError("nftables nft must name the nft binary")
        hooks = tuple(hooks)
        bad = [h for h in hooks if h not in HOOKS]
        if bad or not hooks or len(set(hooks)) != len(hooks):
            allowed = ", ".join(HOOKS)
            raise ConfigError(f"nftables hooks {list(hooks)!r}: give each of them once, from {allowed}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigError(f"nftables priority {priority!r} must be an integer")
        if timeout_s <= 0:
            raise ConfigError(f"nftables timeout_s {timeout_s!r} must be > 0")
        self.table, self.netns, self.nft = table, netns, nft
        self.hooks, self.priority, self.timeout_s = hooks, priority, timeout_s
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = f", netns={self.netns!r}" if self.netns else ""
        return f"NftablesAdapter(table={self.table!r}{where}, hooks={self.hooks!r})"

    # -- FirewallAdapter ------------------------------------------------------------------------------

    def check(self) -> None:
        """Create whatever part of the table is missing; FirewallError if nft cannot do it."""
        with self._lock:
            fixes = self._structure(self._read())
            if fixes:
                self._run(fixes, "set up the table")

    def apply(self, decisions: Sequence[Decision]) -> None:
        """Block each unexpired decision's value for its seconds left (re-applying sets the timeout)."""
        todo = live(decisions, utcnow())
        if not todo:
            return

        def edit(sets: dict[int, RangeSet]) -> None:
            for d, seconds in todo:
                net = d.network
                sets[net.version].block(_lo(net), _hi(net), seconds, replace_exact=True)

        self._change(edit, f"apply {len(todo)} decision(s)")

    def revoke(self, decisions: Sequence[Decision]) -> None:
        """Unblock each decision's value (its whole range); values not blocked are fine."""
        if not decisions:
            return
        nets = [d.network for d in decisions]

        def edit(sets: dict[int, RangeSet]) -> None:
            for net in nets:
                sets[net.version].unblock(_lo(net), _hi(net))

        self._change(edit, f"revoke {len(nets)} decision(s)")

    def sync(self, active: Sequence[Decision]) -> None:
        """Make the sets hold exactly the unexpired `active` decisions: flush and fill, one transaction."""
        sets = {4: RangeSet(), 6: RangeSet()}
        for d, seconds in live(active, utcnow()):
            net = d.network
            sets[net.version].block(_lo(net), _hi(net), seconds)
        with self._lock:
            cmds = self._structure(self._read())
            for version, (set_name, _) in nj.SETS.items():
                cmds.append({"flush": {"set": self._obj(name=set_name)}})
                if sets[version].pieces:
                    elems = [nj.element(p, version) for p in sets[version].pieces]
                    cmds.append({"add": {"element": self._obj(name=set_name, elem=elems)}})
            self._run(cmds, f"sync {sum(len(s.pieces) for s in sets.values())} element(s)")

    # -- reading --------------------------------------------------------------------------------------

    def list_blocked(self) -> dict[str, int]:
        """Every element of both sets -> seconds left (-1: no timeout). Keys as nft writes them:
        `10.0.0.1`, `10.9.0.0/24`, `10.0.0.6-10.0.0.9` (where overlapping decisions were split)."""
        with self._lock:
            state = self._read()
        out: dict[str, int] = {}
        for version, (set_name, _) in nj.SETS.items():
            for elem in state.sets.get(set_name, {}).get("elem", []):
                inner = elem["elem"] if isinstance(elem, dict) and "elem" in elem else {"val": elem}
                lo, hi = nj.span(inner["val"], version)
                key = nj.element_text(Piece(lo, hi, None), version)
                out[key] = int(inner.get("expires", -1))
        return out

    # -- internals ------------------------------------------------------------------------------------

    def _change(self, edit: Callable[[dict[int, RangeSet]], None], what: str) -> None:
        """Read the sets, edit them in memory, send the difference (and any repair) as one transaction."""
        with self._lock:
            error: FirewallError | None = None
            for _ in range(_ATTEMPTS):
                state = self._read()
                sets = {v: RangeSet(state.pieces(v)) for v in nj.SETS}
                edit(sets)
                cmds = self._structure(state) + self._element_commands(sets)
                if not cmds:
                    return
                try:
                    self._run(cmds, what)
                    return
                except FirewallError as exc:
                    error = exc
            assert error is not None
            raise error

    def _element_commands(self, sets: dict[int, RangeSet]) -> list[nj.Json]:
        cmds: list[nj.Json] = []
        for version, rs in sets.items():
            set_name = nj.SETS[version][0]
            removed, added = rs.changes()
            if removed:
                elems = [nj.element_value(p, version) for p in removed]
                cmds.append({"delete": {"element": self._obj(name=set_name, elem=elems)}})
            if added:
                elems = [nj.element(p, version) for p in added]
                cmds.append({"add": {"element": self._obj(name=set_name, elem=elems)}})
        return cmds

    def _structure(self, state: nj.TableState) -> list[nj.Json]:
        """Commands that add the sets, chains and rules the table lacks (none when it is whole)."""
        cmds: list[nj.Json] = []
        for set_name, type_ in nj.SETS.values():
            found = state.sets.get(set_name)
            if found is None:
                flags = ["interval", "timeout"]
                cmds.append({"add": {"set": self._obj(name=set_name, type=type_, flags=flags)}})
            elif found.get("type") != type_ or not {"interval", "timeout"} <= set(found.get("flags", [])):
                raise FirewallError(
                    f"set {set_name} in table inet {self.table}{self._where()} is "
                    f"{found.get('type')} with flags {found.get('flags', [])}; flowguard needs {type_} with "
                    f"flags interval,timeout (delete the table and flowguard makes it again)"
                )
        for hook in self.hooks:
            chain = state.chains.get(hook)
            if chain is None:
                cmds.append({"add": {"chain": self._obj(name=hook, type="filter", hook=hook,
                                                        prio=self.priority, policy="accept")}})
            elif chain.get("hook") != hook:
                raise FirewallError(
                    f"chain {hook} in table inet {self.table}{self._where()} is not a base chain on the "
                    f"{hook} hook (hook: {chain.get('hook')}); delete it and flowguard makes it again"
                )
            rules = state.rules.get(hook, [])
            for comment, expr in nj.rule_specs():
                if chain is None or not nj.has_rule(rules, comment, expr):
                    cmds.append({"add": {"rule": self._obj(chain=hook, comment=comment, expr=expr)}})
        return cmds

    def _read(self) -> nj.TableState:
        """The table as it is now, made (empty) first when it does not exist."""
        listing = [{"list": {"table": {"family": "inet", "name": self.table}}}]
        try:
            out = self._run(listing, "list the table")
        except FirewallError:
            self._run([{"add": {"table": {"family": "inet", "name": self.table}}}], "create the table")
            out = self._run(listing, "list the table")
        try:
            return nj.TableState.parse(json.loads(out))
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise FirewallError(
                f"cannot read `nft -j list table inet {self.table}`{self._where()}: {exc}"
            ) from exc

    def _obj(self, **fields: Any) -> nj.Json:
        return {"family": "inet", "table": self.table, **fields}

    def _where(self) -> str:
        return f" (netns {self.netns})" if self.netns else ""

    def _argv(self) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, self.nft, "-j", "-f", "-"]

    def _run(self, commands: list[nj.Json], what: str) -> str:
        """Send `commands` as one nft transaction; its stdout, or FirewallError with nft's message."""
        argv = self._argv()
        try:
            proc = subprocess.run(argv, input=json.dumps({"nftables": commands}), capture_output=True,
                                  text=True, timeout=self.timeout_s, check=False)
        except FileNotFoundError as exc:
            missing = exc.filename or argv[0]
            raise FirewallError(f"cannot {what}: {missing!r} not found (setting nftables nft)") from exc
        except subprocess.TimeoutExpired as exc:
            raise FirewallError(f"cannot {what}: `{' '.join(argv)}` took over {self.timeout_s} s") from exc
        if proc.returncode != 0:
            message = " ".join(line.strip() for line in proc.stderr.splitlines() if line.strip())
            raise FirewallError(
                f"nft could not {what} (table inet {self.table}{self._where()}): "
                f"{message or f'exit status {proc.returncode}'} [{nj.describe(commands)}]"
            )
        return proc.stdout


def _lo(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return int(net.network_address)


def _hi(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return int(net.broadcast_address)
