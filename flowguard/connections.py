"""Connections rebuilt from their live windows, so a verdict can weigh all a connection has shown.

Live capture cuts every flow into short windows (5 s active, 2 s idle): a verdict comes within
seconds, but each window holds only what happened in it. A stratum miner whose pool pushes a job
every few seconds shows, window by window, a TLS handshake, then two packets, then two more: each
too little to judge. `ConnectionTracker` merges each window into its connection and returns the
connection so far as a flow record that `features.vectorize` reads like any other. Its statistics
are those nfstream would give for the connection cut at that moment: counts, sums, minima and
maxima add up; means and standard deviations combine exactly (Chan's parallel formulas, with the
sample variance nfstream reports); the gaps between windows, per direction, come from the windows'
first and last times; the first packets (`splt`) continue across windows. nDPI's label is the first
window's that has one (each window is dissected afresh, and only a connection's start says much).

Each connection also counts its exchanges: a window that begins after silence begins one, and
whoever sent its first payload began it. A reverse tunnel is used from outside, so its exchanges
are begun by the connection's responder, the outside end; an idle one is kept open by keepalives.
Automation and interactive sessions are driven from inside: the initiator begins every exchange.
An exchange that closes the connection counts for neither end: a command run over SSH, one a
connection, closes it with the server's answer, which may come after seconds of silence.
`tunnel_evidence` reads that; live capture and offline triage hold back a tunnel verdict until it
holds.

This is Python per window, never per packet: a few microseconds for each window the meter exports.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Sequence, Set
from operator import attrgetter
from typing import Any

from flowguard.features import SPLT_PACKETS

KEEP_S = 180
"""A connection's state is forgotten once it has seen no packet for this long (offline triage's
idle timeout: after it, a connection would be a new flow there too)."""
MAX_CONNECTIONS = 200_000
"""At most this many connections are remembered; the one longest without a packet goes first."""

EXCHANGE_SILENCE_MS = 2_000
"""A window that begins this long after its connection's last packet begins an exchange (the live
windows end after 2 s of silence, so the next one begins with whoever spoke next)."""
KEEPALIVE_PAYLOADS = 3
"""An exchange begun by the initiator with at most this many payload packets each way, that does not
close the connection, is a keepalive (SSH's keepalive@openssh.com and its reply: one or two
packets each way). A command, a keystroke's echo stream or a request is more."""

_DIRS = ("src2dst", "dst2src")


class Sample:
    """Size, mean, sum of squared deviations and extremes of a sample that grows by whole
    sub-samples (Chan et al.'s parallel formulas: the merge is exact), or by single values."""

    __slots__ = ("n", "mean", "m2", "min", "max")

    def __init__(self) -> None:
        self.n = 0
        self.mean = self.m2 = 0.0
        self.min: float = 0
        self.max: float = 0

    def add(self, n: int, mean: float, std: float, low: float, high: float) -> None:
        """Merge a sub-sample as nfstream reports one: size, mean, sample deviation, extremes."""
        if n <= 0:
            return
        m2 = std * std * (n - 1)
        if self.n:
            total = self.n + n
            delta = mean - self.mean
            self.mean += delta * n / total
            self.m2 += m2 + delta * delta * self.n * n / total
            self.min, self.max = min(self.min, low), max(self.max, high)
        else:
            self.mean, self.m2, self.min, self.max = mean, m2, low, high
        self.n += n

    def gap(self, ms: float) -> None:
        """Add one value (here: the gap between two windows)."""
        self.add(1, float(ms), 0.0, ms, ms)

    def remove(self, value: float) -> None:
        """Take one value back out (adding it undone; the extremes stay). Training's TLS copies
        (training.augment.wrapped) split a gap in two this way."""
        if self.n <= 1:
            self.n, self.mean, self.m2 = 0, 0.0, 0.0
            return
        n = self.n - 1
        mean = (self.n * self.mean - value) / n
        self.m2 = max(self.m2 - (value - self.mean) * (value - mean), 0.0)
        self.n, self.mean = n, mean

    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


class _Direction:
    """Running statistics of one direction of a connection: payload sizes and the gaps between
    its packets."""

    __slots__ = ("bytes", "first", "last", "ps", "piat", "syn", "psh", "rst", "fin")

    def __init__(self) -> None:
        self.bytes = self.first = self.last = 0
        self.ps, self.piat = Sample(), Sample()
        self.syn = self.psh = self.rst = self.fin = 0

    def add(self, w: Any, d: str) -> None:
        """Merge direction `d` of window `w` (an nfstream flow) into this one."""
        (n, nbytes, first, last, mn, mean, std, mx, pmean, pstd, pmax, syn, psh, rst,
         fin) = _READ[d](w)
        if n == 0:
            return
        if self.ps.n:
            self.piat.gap(first - self.last)  # between the windows, in this direction
        else:
            self.first = first
        self.ps.add(n, mean, std, mn, mx)
        self.piat.add(n - 1, pmean, pstd, 0, pmax)  # the gaps inside the window
        self.bytes += nbytes
        self.last = last
        self.syn += syn
        self.psh += psh
        self.rst += rst
        self.fin += fin

    def values(self) -> tuple[Any, ...]:
        """This direction's attributes, in the order of _OUT (for ConnectionSoFar)."""
        ps, piat = self.ps, self.piat
        return (ps.n, self.bytes, self.first, self.last, ps.min, ps.mean, ps.std(), ps.max,
                piat.mean, piat.std(), piat.max, self.syn, self.psh, self.rst, self.fin)


_FIELDS = ("packets", "bytes", "first_seen_ms", "last_seen_ms", "min_ps", "mean_ps", "stddev_ps",
           "max_ps", "mean_piat_ms", "stddev_piat_ms", "max_piat_ms", "syn_packets", "psh_packets",
           "rst_packets", "fin_packets")
_READ = {d: attrgetter(*(f"{d}_{f}" for f in _FIELDS)) for d in _DIRS}
_OUT = {d: tuple(f"{d}_{f}" for f in _FIELDS) for d in _DIRS}


class _Connection:
    __slots__ = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "first", "last", "dirs",
                 "piat", "application_name", "application_is_guessed", "splt_direction", "splt_ps",
                 "splt_piat_ms", "windows", "responder", "inbound", "outbound", "keepalives", "held")

    def __init__(self, w: Any) -> None:
        self.src_ip, self.src_port = w.src_ip, w.src_port
        self.dst_ip, self.dst_port = w.dst_ip, w.dst_port
        self.protocol = w.protocol
        self.first = self.last = w.bidirectional_first_seen_ms
        self.dirs = (_Direction(), _Direction())
        self.piat = Sample()  # gaps between packets, either direction
        self.application_name, self.application_is_guessed = "Unknown", 0
        self.splt_direction: list[int] = []
        self.splt_ps: list[int] = []
        self.splt_piat_ms: list[int] = []
        self.windows = 0
        # the outside end: the one the SYN went to; a connection first seen without its SYN (the
        # capture began after it) has the lower port as its service end
        if w.src2dst_syn_packets or w.src_port > w.dst_port:
            self.responder = (w.dst_ip, w.dst_port)
        else:
            self.responder = (w.src_ip, w.src_port)
        self.inbound = self.outbound = self.keepalives = 0
        self.held: Any = None  # the reverse-tunnel verdict held back on this connection, if any

    def add(self, w: Any) -> None:
        flipped = w.src_ip != self.src_ip or w.src_port != self.src_port
        ours = _DIRS[::-1] if flipped else _DIRS  # the window's name for each of our directions
        for mine, theirs in zip(self.dirs, ours, strict=True):
            mine.add(w, theirs)
        gap = w.bidirectional_first_seen_ms - self.last if self.windows else 0
        if self.windows:
            self.piat.gap(gap)
            if gap >= EXCHANGE_SILENCE_MS and w.splt_ps[0] > 0:
                self._count_exchange(w)
        self.piat.add(w.bidirectional_packets - 1, w.bidirectional_mean_piat_ms,
                      w.bidirectional_stddev_piat_ms, 0, w.bidirectional_max_piat_ms)
        room = SPLT_PACKETS - len(self.splt_direction)
        if room > 0:
            dirs = [d for d in w.splt_direction[:room] if d >= 0]
            k = len(dirs)
            self.splt_direction += [1 - d for d in dirs] if flipped else dirs
            self.splt_ps += w.splt_ps[:k]
            piat = list(w.splt_piat_ms[:k])
            if piat:
                piat[0] = gap  # nfstream starts each flow at 0; in the connection it is the gap
            self.splt_piat_ms += piat
        if self.application_name == "Unknown" and w.application_name not in ("", "Unknown"):
            self.application_name = w.application_name
            self.application_is_guessed = w.application_is_guessed
        elif not self.windows:
            self.application_is_guessed = w.application_is_guessed
        self.last = max(self.last, w.bidirectional_last_seen_ms)
        self.windows += 1

    def _count_exchange(self, w: Any) -> None:
        """Count the exchange window `w` begins (its first packet carries payload). One that closes
        the connection (a FIN or RST in the window) is not counted, whoever began it: it says
        nothing of the connection's use, and a command run over SSH, one a connection, ends with
        the server's answer after the command worked in silence."""
        if w.src2dst_fin_packets or w.dst2src_fin_packets or w.src2dst_rst_packets \
                or w.dst2src_rst_packets:
            return
        if (w.src_ip, w.src_port) == self.responder:
            self.inbound += 1
        elif w.src2dst_psh_packets <= KEEPALIVE_PAYLOADS and w.dst2src_psh_packets <= KEEPALIVE_PAYLOADS:
            self.keepalives += 1
        else:
            self.outbound += 1

    def snapshot(self) -> ConnectionSoFar:
        return ConnectionSoFar(self)


class ConnectionSoFar:
    """A connection as its windows so far describe it: the attributes `features.vectorize` and the
    verdict outputs read, with src2dst the connection's first window's initiator."""

    def __init__(self, c: _Connection) -> None:
        self.src_ip, self.src_port, self.dst_ip, self.dst_port = (c.src_ip, c.src_port, c.dst_ip,
                                                                  c.dst_port)
        self.protocol = c.protocol
        self.bidirectional_first_seen_ms = c.first
        self.bidirectional_last_seen_ms = c.last
        self.bidirectional_duration_ms = c.last - c.first
        self.application_name = c.application_name
        self.application_is_guessed = c.application_is_guessed
        self.windows = c.windows
        self.inbound_exchanges = c.inbound
        self.outbound_exchanges = c.outbound
        self.keepalive_exchanges = c.keepalives
        s2d, d2s = c.dirs[0].values(), c.dirs[1].values()
        attrs = self.__dict__
        attrs.update(zip(_OUT["src2dst"], s2d, strict=True))
        attrs.update(zip(_OUT["dst2src"], d2s, strict=True))
        packets, total = s2d[0] + d2s[0], s2d[1] + d2s[1]
        self.bidirectional_packets = packets
        self.bidirectional_bytes = total
        self.bidirectional_mean_piat_ms = c.piat.mean
        self.bidirectional_stddev_piat_ms = c.piat.std()
        self.bidirectional_max_piat_ms = c.piat.max
        pad = SPLT_PACKETS - len(c.splt_direction)
        self.splt_direction = c.splt_direction + [-1] * pad
        self.splt_ps = c.splt_ps + [0] * pad
        self.splt_piat_ms = c.splt_piat_ms + [0] * pad


def tunnel_evidence(c: ConnectionSoFar) -> bool:
    """Has the connection so far behaved as a reverse tunnel does after its opening: its responder
    (the outside end) has begun an exchange that did not close it, or it has been kept open by
    keepalives alone? False while the initiator has begun every exchange and at least one was more
    than a keepalive (SSH automation, an interactive session), or nothing has followed the opening
    yet."""
    return c.inbound_exchanges > 0 or (c.keepalive_exchanges > 0 and c.outbound_exchanges == 0)


Timeline = dict[tuple[Any, ...], tuple[list[int], list[bool]]]
"""Per connection (`connection_key`): the end of each of its live windows, in ms, and whether the
connection had shown `tunnel_evidence` by then."""


def evidence_timeline(windows: Sequence[Any], so_far: Sequence[ConnectionSoFar] | None = None,
                      wanted: Set[tuple[Any, ...]] | None = None) -> Timeline:
    """The `Timeline` of a capture's live `windows` (in the order read). `so_far`: the windows'
    connections so far, where already merged (`ConnectionTracker().add(windows)`); `wanted`: only
    these connections' windows are merged and kept."""
    tracker = ConnectionTracker() if so_far is None else None
    timeline: Timeline = {}
    for i, w in enumerate(windows):
        key = connection_key(w)
        if wanted is not None and key not in wanted:
            continue
        c = tracker.add([w])[0] if tracker is not None else so_far[i]  # type: ignore[index]
        ends, shown = timeline.setdefault(key, ([], []))
        ends.append(w.bidirectional_last_seen_ms)
        shown.append(tunnel_evidence(c))
    return timeline


def shown_by(timeline: Timeline, key: tuple[Any, ...], last_ms: int) -> bool:
    """Had the connection `key` shown `tunnel_evidence` by `last_ms`, as its windows tell?"""
    ends, shown = timeline.get(key, ([], []))
    i = bisect_right(ends, last_ms) - 1
    return i >= 0 and shown[i]


def tunnel_evidence_at(windows: Sequence[Any], flows: Sequence[tuple[tuple[Any, ...], int]]) -> list[bool]:
    """For each of `flows`, given as (connection_key, last packet's time in ms), whether its
    connection had shown `tunnel_evidence` by that time, as the live `windows` of the same capture
    tell (offline triage reads a capture again as live windows for this). Only the windows of those
    connections are merged."""
    timeline = evidence_timeline(windows, wanted={key for key, _ in flows})
    return [shown_by(timeline, key, last_ms) for key, last_ms in flows]


def connection_key(w: Any) -> tuple[Any, ...]:
    """The same key for every window of a connection, whichever end each window begins at."""
    a, b = (w.src_ip, w.src_port), (w.dst_ip, w.dst_port)
    return (w.protocol, *((a, b) if a <= b else (b, a)))


class ConnectionTracker:
    """Merges live windows into their connections (see the module docstring).

        tracker = ConnectionTracker()
        so_far = tracker.add(windows)      # one ConnectionSoFar per window, in order

    Not thread-safe: one classifier thread owns it.
    """

    def __init__(self, keep_s: float = KEEP_S, max_connections: int = MAX_CONNECTIONS) -> None:
        self.keep_ms = int(keep_s * 1000)
        self.max_connections = max_connections
        self._open: OrderedDict[tuple[Any, ...], _Connection] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._open)

    def hold(self, window: Any, verdict: Any) -> None:
        """Remember a verdict held back on the connection of `window` (live capture holds a
        reverse-tunnel verdict until `tunnel_evidence`, then gives it on the connection's windows
        from then on): the best scored one (its `score`)."""
        conn = self._open.get(connection_key(window))
        if conn is not None and (conn.held is None or verdict.score > conn.held.score):
            conn.held = verdict

    def held(self, window: Any) -> Any:
        """The verdict held back on the connection of `window`, or None."""
        conn = self._open.get(connection_key(window))
        return None if conn is None else conn.held

    def add(self, windows: Iterable[Any]) -> list[ConnectionSoFar]:
        out = []
        now = 0
        for w in windows:
            key = connection_key(w)
            conn = self._open.get(key)
            if conn is None or w.bidirectional_first_seen_ms - conn.last >= self.keep_ms:
                conn = self._open[key] = _Connection(w)
            conn.add(w)
            self._open.move_to_end(key)
            out.append(conn.snapshot())
            now = max(now, w.bidirectional_last_seen_ms)
        self._forget(now)
        return out

    def _forget(self, now: int) -> None:
        while self._open:
            key, oldest = next(iter(self._open.items()))
            if len(self._open) <= self.max_connections and now - oldest.last < self.keep_ms:
                break
            del self._open[key]
