"""Userspace L2 "WAN" bridge: delay, jitter and loss between two interfaces.

Why this exists: the lab kernel has no ``netem`` qdisc, so ``tc qdisc ... netem
delay 40ms`` is unavailable.  Instead, a "wan" network namespace holds two
interfaces without IPs (e.g. ``wan0``/``wan1``, each a veth peer of a host
namespace) and this module forwards every Ethernet frame from one to the other
through AF_PACKET raw sockets, holding each frame until its deadline.

Ordering: each direction has one FIFO queue and one sender thread.  A frame's
deadline is ``max(previous deadline in that direction, now + delay + jitter)``,
so deadlines are non-decreasing along the queue and frames always leave in
arrival order (jitter stretches gaps but never reorders).  Loss is an
independent per-frame Bernoulli draw taken on arrival.

Offloads: with GRO/GSO/TSO on, the socket can see super-frames larger than the
MTU, which cannot be sent back out; with TX checksum offload on, frames arrive
with unfinished checksums and the far host drops them.  Callers must run
``disable_offloads()`` (``ethtool -K IF gro off gso off tso off tx off``) on
every veth end (both namespaces).  Send errors are counted and skipped.

CLI::

    python -m training.lab.wanbridge --if-a wan0 --if-b wan1 \\
        --delay 40 --jitter 5 --loss 0.5 [--seed 1] [--verbose]

Runs until SIGTERM/SIGINT and exits 0; with ``--verbose`` prints per-direction
counters to stderr at exit.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Self

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # not exported by Python 3.11's socket module
RECV_SIZE = 65536
POLL_S = 0.2


@dataclass
class DirCounters:
    """Per-direction frame counters."""

    forwarded: int = 0
    dropped: int = 0  # random loss or queue overflow
    errors: int = 0  # failed sends (e.g. frame larger than MTU)


def disable_offloads(ifname: str, netns: str | None = None) -> bool:
    """Turn off GRO/GSO/TSO and TX checksum offload on ``ifname``; True on success."""
    cmd = ["ethtool", "-K", ifname, "gro", "off", "gso", "off", "tso", "off", "tx", "off"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    res = subprocess.run(cmd, capture_output=True, check=False)
    return res.returncode == 0


def _open_packet_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:  # root may exceed net.core.[rw]mem_max; absorbs multi-ms bursts
            sock.setsockopt(socket.SOL_SOCKET, force, 4 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, 4 << 20)
    try:  # Linux >= 4.20; we also filter on pkttype below.
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass
    sock.bind((ifname, ETH_P_ALL))
    mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname), PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.settimeout(POLL_S)
    return sock


class _Direction:
    """One direction: receiver thread queues (deadline, frame), sender thread emits."""

    def __init__(self, name: str, src: socket.socket, dst: socket.socket,
                 bridge: WanBridge, rng: random.Random) -> None:
        self.name = name
        self.src, self.dst = src, dst
        self.bridge = bridge
        self.rng = rng
        self.counters = DirCounters()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.cond = threading.Condition()
        self.last_deadline = 0.0
        self.threads = [
            threading.Thread(target=self._recv_loop, name=f"wan-rx-{name}", daemon=True),
            threading.Thread(target=self._send_loop, name=f"wan-tx-{name}", daemon=True),
        ]

    def _sample_delay(self) -> float:
        b = self.bridge
        j = 0.0
        if b.jitter_s > 0:
            if b.jitter_dist == "normal":
                j = self.rng.gauss(0.0, b.jitter_s)
            else:
                j = self.rng.uniform(-b.jitter_s, b.jitter_s)
        return max(0.0, b.delay_s + j)

    def _recv_loop(self) -> None:
        b, stop = self.bridge, self.bridge.stop_event
        while not stop.is_set():
            try:
                frame, addr = self.src.recvfrom(RECV_SIZE)
            except TimeoutError:
                continue
            except OSError:
                if stop.is_set():
                    return
                continue
            now = time.monotonic()
            if addr[2] == PACKET_OUTGOING:
                continue  # our own transmission on this interface
            if b.loss > 0 and self.rng.random() < b.loss:
                self.counters.dropped += 1
                continue
            with self.cond:
                if len(self.queue) >= b.max_queue:
                    self.counters.dropped += 1
                    continue
                deadline = max(self.last_deadline, now + self._sample_delay())
                self.last_deadline = deadline
                self.queue.append((deadline, frame))
                if len(self.queue) == 1:  # sender only needs waking for a new head
                    self.cond.notify()

    def _send_loop(self) -> None:
        stop = self.bridge.stop_event
        while True:
            with self.cond:
                while True:
                    if stop.is_set():
                        return
                    if self.queue:
                        wait = self.queue[0][0] - time.monotonic()
                        if wait <= 0:
                            _, frame = self.queue.popleft()
                            break
                        self.cond.wait(wait)
                    else:
                        self.cond.wait(POLL_S)
            try:
                self.dst.send(frame)
                self.counters.forwarded += 1
            except OSError:
                self.counters.errors += 1


class WanBridge:
    """Transparent L2 bridge between ``if_a`` and ``if_b`` with delay/jitter/loss.

    ``delay_ms``/``jitter_ms`` apply one-way, to each direction independently;
    ``loss_pct`` is a percentage.  ``counters`` maps "a->b"/"b->a" to DirCounters.
    """

    def __init__(self, if_a: str, if_b: str, delay_ms: float = 0.0, jitter_ms: float = 0.0,
                 loss_pct: float = 0.0, seed: int | None = None,
                 jitter_dist: str = "uniform", max_queue: int = 100_000) -> None:
        if jitter_dist not in ("uniform", "normal"):
            raise ValueError(f"jitter_dist must be uniform or normal, not {jitter_dist!r}")
        if delay_ms < 0 or jitter_ms < 0 or not 0 <= loss_pct <= 100:
            raise ValueError("delay/jitter must be >= 0 and loss in [0, 100]")
        self.if_a, self.if_b = if_a, if_b
        self.delay_s = delay_ms / 1000.0
        self.jitter_s = jitter_ms / 1000.0
        self.jitter_dist = jitter_dist
        self.loss = loss_pct / 100.0
        self.max_queue = max_queue
        self.seed = seed
        self.stop_event = threading.Event()
        self.counters: dict[str, DirCounters] = {}
        self._socks: list[socket.socket] = []
        self._dirs: list[_Direction] = []

    def start(self) -> None:
        sa = _open_packet_socket(self.if_a)
        try:
            sb = _open_packet_socket(self.if_b)
        except OSError:
            sa.close()
            raise
        self._socks = [sa, sb]
        master = random.Random(self.seed)
        self._dirs = [
            _Direction("a->b", sa, sb, self, random.Random(master.random())),
            _Direction("b->a", sb, sa, self, random.Random(master.random())),
        ]
        self.counters = {d.name: d.counters for d in self._dirs}
        for t in (t for d in self._dirs for t in d.threads):
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for d in self._dirs:
            with d.cond:
                d.cond.notify_all()
        for t in (t for d in self._dirs for t in d.threads):
            t.join(timeout=2.0)
        for s in self._socks:
            s.close()
        self._socks = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.lab.wanbridge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--if-a", required=True, help="first interface (no IP)")
    p.add_argument("--if-b", required=True, help="second interface (no IP)")
    p.add_argument("--delay", type=float, default=0.0, help="one-way delay, ms (each direction)")
    p.add_argument("--jitter", type=float, default=0.0, help="jitter, ms (never reorders)")
    p.add_argument("--jitter-dist", choices=("uniform", "normal"), default="uniform",
                   help="uniform in [-J, +J] or normal with sigma J")
    p.add_argument("--loss", type=float, default=0.0, help="drop probability, percent")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-queue", type=int, default=100_000, help="frames queued per direction")
    p.add_argument("--verbose", action="store_true", help="print counters to stderr at exit")
    args = p.parse_args(argv)

    bridge = WanBridge(args.if_a, args.if_b, args.delay, args.jitter, args.loss, args.seed,
                       args.jitter_dist, args.max_queue)
    done = threading.Event()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        bridge.start()
    except OSError as exc:
        print(f"wanbridge: cannot open {args.if_a}/{args.if_b}: {exc}", file=sys.stderr)
        return 1
    while not done.wait(0.5):  # short waits keep signal handling prompt
        pass
    bridge.stop()
    if args.verbose:
        for name, c in bridge.counters.items():
            print(f"wanbridge {name}: forwarded={c.forwarded} dropped={c.dropped} "
                  f"errors={c.errors}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
