"""Disjoint address ranges with timeouts: how one nftables interval set holds overlapping decisions.

An interval set refuses overlapping elements, yet decisions overlap (a /24 and an address inside it,
with different expiries). `RangeSet` keeps the ranges disjoint and gives every address the longest
timeout of the decisions covering it: a block never ends early and never spreads to other addresses.

    >>> rs = RangeSet([Piece(0, 255, 60)])        # 10.0.0.0/24 for 60 s, as read from the set
    >>> rs.block(5, 5, 600)                        # 10.0.0.5 for 600 s
    >>> sorted((p.lo, p.hi, p.timeout) for p in rs.pieces)
    [(0, 4, 60), (5, 5, 600), (6, 255, 60)]
    >>> removed, added = rs.changes()              # what to delete from and add to the set

Addresses are integers (`int(ipaddress.ip_address(...))`); a timeout is in seconds, None for none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class Piece:
    """Addresses lo..hi (inclusive), blocked for `timeout` seconds (None: no timeout).

    Compared by identity, so `RangeSet.changes` can tell the pieces read from the firewall from
    equal-looking ones it made.
    """

    lo: int
    hi: int
    timeout: int | None


def _longer(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return None
    return max(a, b)


def _at_least(a: int | None, b: int | None) -> bool:
    """Does timeout `a` last at least as long as `b`?"""
    return a is None or (b is not None and a >= b)


class RangeSet:
    """The pieces of one set, changed in memory; `changes()` says what to send to the firewall."""

    def __init__(self, pieces: Iterable[Piece] = ()) -> None:
        self.pieces: list[Piece] = sorted(pieces, key=lambda p: p.lo)
        self._original = {id(p): p for p in self.pieces}

    def block(self, lo: int, hi: int, timeout: int | None, *, replace_exact: bool = False) -> None:
        """Block lo..hi for at least `timeout` seconds.

        replace_exact: when the firewall already holds exactly lo..hi (read from it, not added in
        this RangeSet), set its timeout to `timeout` even if that is shorter (the decision for that
        value is the newer word on it). Everything else only ever gets longer.
        """
        over = [p for p in self.pieces if p.hi >= lo and p.lo <= hi]
        if replace_exact and len(over) == 1 and (over[0].lo, over[0].hi) == (lo, hi):
            if id(over[0]) in self._original:
                self._replace(over, [Piece(lo, hi, timeout)])
                return
        removed: list[Piece] = []
        made: list[Piece] = []
        inside: list[tuple[int, int, int | None, bool]] = []  # (first, last, timeout, is a kept piece)
        for p in over:
            a, b = max(p.lo, lo), min(p.hi, hi)
            if _at_least(p.timeout, timeout):  # lasts as long already: leave it whole
                inside.append((a, b, p.timeout, True))
                continue
            removed.append(p)
            if p.lo < lo:
                made.append(Piece(p.lo, lo - 1, p.timeout))
            if p.hi > hi:
                made.append(Piece(hi + 1, p.hi, p.timeout))
            inside.append((a, b, timeout, False))
        segments: list[tuple[int, int, int | None]] = []
        cursor = lo
        for a, b, t, kept in sorted(inside):
            if a > cursor:
                segments.append((cursor, a - 1, timeout))
            if not kept:
                segments.append((a, b, t))
            cursor = b + 1
        if cursor <= hi:
            segments.append((cursor, hi, timeout))
        made.extend(Piece(a, b, t) for a, b, t in _merge(segments))
        self._replace(removed, made)

    def unblock(self, lo: int, hi: int) -> None:
        """Unblock lo..hi; addresses of overlapping pieces outside it stay blocked as they were."""
        over = [p for p in self.pieces if p.hi >= lo and p.lo <= hi]
        made = [Piece(p.lo, lo - 1, p.timeout) for p in over if p.lo < lo]
        made += [Piece(hi + 1, p.hi, p.timeout) for p in over if p.hi > hi]
        self._replace(over, made)

    def changes(self) -> tuple[list[Piece], list[Piece]]:
        """(pieces to delete from the firewall, pieces to add to it), each sorted by address."""
        now = {id(p) for p in self.pieces}
        removed = [p for k, p in self._original.items() if k not in now]
        added = [p for p in self.pieces if id(p) not in self._original]
        return sorted(removed, key=lambda p: p.lo), added

    def _replace(self, removed: list[Piece], made: list[Piece]) -> None:
        gone = {id(p) for p in removed}
        self.pieces = sorted([p for p in self.pieces if id(p) not in gone] + made, key=lambda p: p.lo)


def _merge(segments: list[tuple[int, int, int | None]]) -> list[tuple[int, int, int | None]]:
    """Join touching segments that share a timeout (segments are sorted and disjoint)."""
    out: list[tuple[int, int, int | None]] = []
    for a, b, t in segments:
        if out and out[-1][1] + 1 == a and out[-1][2] == t:
            out[-1] = (out[-1][0], b, t)
        else:
            out.append((a, b, t))
    return out
