"""The one module that imports nfstream: capture sources in, flow records out.

Per-packet work stays in nfstream's engine (statistics, `splt_analysis`, timeouts): no NFPlugin is
used, since any plugin makes nfstream call Python for every packet. Training and triage read
captures through `read_flows` with the same `CaptureOptions`, so the model sees in production the
flows it was trained on.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from flowguard.errors import CaptureError, ConfigError
from flowguard.records import FlowRecord

ACCOUNTING_PAYLOAD = 3
"""Sizes are transport payload bytes: the same whatever the link type (Ethernet, cooked, raw IP),
and a bare TCP acknowledgement counts 0."""


@dataclass(frozen=True)
class CaptureOptions:
    """How nfstream cuts packets into flows. A model records the options it was trained with.

    idle_timeout: seconds without a packet after which a flow ends.
    active_timeout: seconds after which a long flow is exported as a window and a new one begins,
        so a mining session or a tunnel that lasts days still gets verdicts.
    splt_packets: how many first packets of each flow keep their size, direction and gap.
    opening_timeout: seconds after which the window that opens a connection (the one holding its
        SYN) is exported, when sooner than active_timeout; 0: at active_timeout like any other.
        Cutting a live connection's opening short makes its first verdict come sooner while the
        windows after it stay long enough to judge (off by default: LIVE_OPENING_TIMEOUT).
    """

    idle_timeout: int = 180
    active_timeout: int = 300
    splt_packets: int = 20
    opening_timeout: int = 0

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "active_timeout", "splt_packets"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"capture option {name} must be a positive integer, got {value!r}")
        if self.splt_packets > 255:
            raise ConfigError(f"capture option splt_packets must be 1..255, got {self.splt_packets}")
        opening = self.opening_timeout
        if not isinstance(opening, int) or not 0 <= opening <= self.active_timeout:
            raise ConfigError(f"capture option opening_timeout must be 0 (off) or 1..active_timeout "
                              f"({self.active_timeout}), got {opening!r}")

    @property
    def cuts_opening(self) -> bool:
        """Whether a connection's first window ends sooner than the others (opening_timeout)."""
        return 0 < self.opening_timeout < self.active_timeout

    def describe_windows(self) -> str:
        """The windows in words, e.g. "windows of 5 s, a connection's first 3 s, 2 s idle"."""
        opening = f", a connection's first {self.opening_timeout} s" if self.cuts_opening else ""
        return f"windows of {self.active_timeout} s{opening}, {self.idle_timeout} s idle"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptureOptions:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def _flow_options(options: CaptureOptions) -> dict[str, Any]:
    """What makes a flow, the same for files and interfaces: the model's features depend on it."""
    return {
        "decode_tunnels": True,
        "idle_timeout": options.idle_timeout,
        "active_timeout": options.active_timeout,
        "statistical_analysis": True,
        "splt_analysis": options.splt_packets,
        "n_dissections": 20,
        "accounting_mode": ACCOUNTING_PAYLOAD,
    }


def read_flows(source: str | os.PathLike[str], options: CaptureOptions,
               bpf_filter: str | None = None) -> Iterator[FlowRecord]:
    """Yield the flows nfstream builds from a capture file (or interface name); `bpf_filter`: only
    of the packets it passes."""
    import nfstream.meter
    from nfstream import NFStreamer

    patched = {}
    if _opening_ms(options):
        patched["create_engine"] = _engine(nfstream.meter.create_engine, options)
    try:
        streamer = NFStreamer(source=os.fspath(source), n_meters=1, bpf_filter=bpf_filter,
                              **_flow_options(options))
        with _meter_patched(nfstream.meter, patched):
            yield from streamer
    except ValueError as exc:  # nfstream reports bad sources and engine errors as ValueError
        raise CaptureError(f"{os.fspath(source)}: {exc}") from exc


@contextlib.contextmanager
def _meter_patched(meter: Any, patched: dict[str, Any]) -> Iterator[None]:
    """nfstream's meter module with `patched` in place of its functions, for as long as the
    iteration runs: the meters are forked at the streamer's first next() and take them along."""
    saved = {name: getattr(meter, name) for name in patched}
    for name, value in patched.items():
        setattr(meter, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(meter, name, value)


MAX_FILTERED_HOSTS = 256
"""`hosts_filter` narrows a read to the packets of at most this many addresses (libpcap takes 0.5 s
to compile a filter of 256, 4 s for 512, a minute for 1024)."""


def hosts_filter(ends: Iterable[tuple[int, str]]) -> str | None:
    """A BPF filter that passes the TCP or UDP packets to and from the given (protocol, address)
    ends, VLAN-tagged or not: a superset of the packets of the connections they are ends of. None
    if there are more than MAX_FILTERED_HOSTS addresses or a protocol is neither TCP nor UDP."""
    ends = set(ends)
    names = {{6: "tcp", 17: "udp"}.get(proto) for proto, _ in ends}
    addresses = sorted({address for _, address in ends})
    if not ends or None in names or len(addresses) > MAX_FILTERED_HOSTS:
        return None
    protocols = " or ".join(sorted(n for n in names if n))
    match = f"({protocols}) and ({' or '.join(f'host {a}' for a in addresses)})"
    return f"({match}) or (vlan and {match})"


LIVE_ACTIVE_TIMEOUT = 5
"""Live capture's default window: a long flow is exported (and classified) every 5 s of activity."""
LIVE_IDLE_TIMEOUT = 2
"""... and a flow that falls quiet for 2 s is exported then: a stratum login, or a burst of use of a
tunnel, gets its verdict about 2 s after it ends instead of at the next packet, maybe minutes later.
Training reads the lab captures with these windows too (training/dataset.py, view "live")."""
LIVE_OPENING_TIMEOUT = 3
"""... and the window that opens a connection (the one with its SYN) ends after 3 s
(`CaptureOptions.opening_timeout`; 0 is off): a connection that keeps talking gets its first verdict
about 3.5 s after its first packet instead of 5.5 s. Out-of-fold on the lab (model 2026.11.23.8),
96.6 % of mining sessions were flagged within 5 s; trained and scored with 5 s first windows on the
same data, 86 % (model 2026.11.23.13, on more data: 99.2 %; 2026.11.23.14, whose live mining booster
goes without nDPI's label: 97 %). A model is served the windows it was
trained with: training/dataset.py reads the lab with `live_options`, the model records them, and
live capture (`live.LiveSource`) uses the model's opening by default."""


LIVE_BUFFER_BYTES = 64 << 20
"""The capture ring (libpcap's buffer size, like tcpdump -B): 64 MiB hold about a second of a busy
1 Gbit/s link; libpcap's default of 2 MiB dropped packets at 25k packets/s here, while the meter
was idle more than 80 % of the time (benchmarks/live.py)."""


def exchange_options(options: CaptureOptions) -> CaptureOptions:
    """A model's capture options with flows cut only by 2 s of silence (the live idle timeout) or
    at its own active timeout: each of a connection's windows is one exchange, which is all
    `connections.tunnel_evidence` reads, in fewer windows than the live ones."""
    return replace(options, idle_timeout=LIVE_IDLE_TIMEOUT, opening_timeout=0)


def live_options(options: CaptureOptions, active_timeout: int = LIVE_ACTIVE_TIMEOUT,
                 idle_timeout: int = LIVE_IDLE_TIMEOUT,
                 opening_timeout: int = LIVE_OPENING_TIMEOUT) -> CaptureOptions:
    """A model's capture options with live windows (an opening longer than the windows is cut
    like them)."""
    return replace(options, active_timeout=active_timeout, idle_timeout=idle_timeout,
                   opening_timeout=min(opening_timeout, active_timeout))


@dataclass
class LiveStats:
    """What nfstream's meters report about a live capture, read about once a second.

    packets: packets the meters processed; ignored: packets they could not use (not IP);
    dropped: packets the kernel dropped before the meters saw them (libpcap's ps_drop), summed over
    meters. Zero until the first report.
    """

    packets: int = 0
    ignored: int = 0
    dropped: int = 0
    flows: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


_live_stats: LiveStats | None = None
"""The stats of the live capture of this process (nfstream reports through a module function)."""


def _record_performances(performances: Any, is_linux: bool, flows_count: Any) -> None:
    """Stands in for nfstream's `update_performances` (which prints JSON to stdout) while a live
    capture runs: the meters' shared counters go into `_live_stats` instead."""
    stats = _live_stats
    if stats is None:
        return
    dropped = [int(m[0].value) for m in performances]
    with stats.lock:
        stats.dropped = sum(dropped) if is_linux else max(dropped, default=0)
        stats.packets = sum(int(m[1].value) for m in performances)
        stats.ignored = sum(int(m[2].value) for m in performances)
        stats.flows = int(flows_count.value)


class LiveStop:
    """Ends a live capture the way the end of a file ends a read: nfstream then exports every flow
    it still holds open, and the iteration ends by itself.

    It is one byte of memory shared with nfstream's meter processes (forked when the iteration
    starts), read by the meters' wrapped `capture_next` (see _LiveEngine).
    """

    def __init__(self) -> None:
        self._flag = mmap.mmap(-1, 1)  # anonymous and MAP_SHARED: the forked meters see writes

    def set(self) -> None:
        self._flag[0] = 1

    def is_set(self) -> bool:
        return self._flag[0] == 1


_CAPTURE_EOF = -2
"""What nfstream's `capture_next` returns at the end of a file (meter.py ends its loop on it)."""
_CAPTURE_EMPTY = -1
"""... when no packet was read."""
_CAPTURE_TICK = 2
"""... for a packet of another meter, which the meter uses as a clock tick (idle expiry)."""
LIVE_TICK_S = 0.25
"""On a quiet link the meters' clock still moves every 0.25 s: idle flows expire and a stop is seen."""
LIVE_BUFFER_TIMEOUT_MS = 100
"""With TPACKET_V3 the kernel hands packets over a block at a time: a block that does not fill is
handed over this long after its first packet. nfstream asks for 1 s; a window's verdict then waited
up to that long (and the ticks below 1.5 s more). Busy links fill blocks long before either."""
LIVE_TICK_LAG_MS = 400
"""A tick says "it is now 0.4 s ago": a packet may still come with an earlier timestamp than now
(its block is handed over up to LIVE_BUFFER_TIMEOUT_MS later, and the meter may be busy). The meter
forces packets into time order, and a tick at the current time would shift such a packet's time
forward (and could expire its flow)."""


class _Engine:
    """nfstream's engine library (the cffi `lib` a meter calls), with functions replaced.

    With `opening_ms`, its `meter_update_flow` (called for every packet) cuts a flow that holds
    its connection's SYN after that many milliseconds instead of the active timeout (see
    `CaptureOptions.opening_timeout`): one read of the flow's SYN counter per packet, in a loop that
    is Python per packet already.
    """

    def __init__(self, lib: Any, opening_ms: int = 0) -> None:
        self._lib = lib
        if opening_ms:
            update = lib.meter_update_flow

            def meter_update_flow(flow: Any, packet: Any, idle_ms: int, active_ms: int,
                                  *rest: Any) -> Any:
                if flow.bidirectional_syn_packets:
                    active_ms = opening_ms
                return update(flow, packet, idle_ms, active_ms, *rest)

            self.meter_update_flow = meter_update_flow

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._lib, name)
        setattr(self, name, value)  # later look-ups are plain attributes
        return value


class _LiveEngine(_Engine):
    """nfstream's engine library, with the `capture_next` a live meter calls for every packet wrapped.

    nfstream 6.6 reads in blocking mode, and with TPACKET_V3 libpcap's read blocks until a packet
    comes (libpcap issue #572): on a quiet link the meter neither expires idle flows (its clock is
    packet time) nor sees a stop. So on the first call the capture is put in non-blocking mode
    (libpcap's own pcap_setnonblock, exported by nfstream's engine library), and when no packet is
    ready the wrapper waits on the capture's descriptor for at most LIVE_TICK_S and then reports a
    clock tick (at the current time less LIVE_TICK_LAG_MS). Once `stop` is set it reports
    end-of-file, and nfstream exports what it holds. The cost is a few Python operations per packet,
    in a loop that is Python per packet already. Its `capture_set_timeout` sets the kernel's block
    timeout to LIVE_BUFFER_TIMEOUT_MS instead of nfstream's 1 s.
    """

    def __init__(self, ffi: Any, lib: Any, stop: LiveStop, opening_ms: int = 0) -> None:
        super().__init__(lib, opening_ms)
        set_timeout = lib.capture_set_timeout

        def capture_set_timeout(capture: Any, *rest: Any) -> Any:
            failed = set_timeout(capture, *rest)
            if not failed:
                _libpcap_call(ffi, capture, "pcap_set_timeout", LIVE_BUFFER_TIMEOUT_MS)
            return failed

        self.capture_set_timeout = capture_set_timeout
        flag, real = stop._flag, lib.capture_next
        poller = select.poll()
        ready: list[bool] = []

        def capture_next(capture: Any, nf_packet: Any, *rest: Any) -> Any:
            if flag[0]:
                return _CAPTURE_EOF
            if not ready:
                ready.append(_make_pollable(ffi, capture, poller))
            ret = real(capture, nf_packet, *rest)
            if ret != _CAPTURE_EMPTY or not ready[0]:
                return ret
            events = poller.poll(LIVE_TICK_S * 1000)
            if events and not events[0][1] & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                return _CAPTURE_EMPTY  # packets are ready: the meter calls again at once
            if events:  # the interface is in trouble: do not spin on it
                time.sleep(LIVE_TICK_S)
            nf_packet.time = int(time.time() * 1000) - LIVE_TICK_LAG_MS
            return _CAPTURE_TICK

        self.capture_next = capture_next


def _libpcap_call(ffi: Any, capture: Any, name: str, *args: Any) -> int | None:
    """libpcap's `name`(handle, *args) on nfstream's capture handle (libpcap is linked into
    nfstream's engine library); None where it cannot be called."""
    import ctypes

    import _lib_engine  # nfstream's engine library, which carries libpcap

    try:
        function = getattr(ctypes.CDLL(_lib_engine.__file__), name)
    except (OSError, AttributeError):
        return None
    # arguments: ints, or a buffer from ctypes.create_string_buffer (libpcap's error text)
    function.argtypes = [ctypes.c_void_p] + [ctypes.c_int if isinstance(a, int) else ctypes.c_char_p
                                             for a in args]
    function.restype = ctypes.c_int
    return int(function(ctypes.c_void_p(int(ffi.cast("uintptr_t", capture))), *args))


def _make_pollable(ffi: Any, capture: Any, poller: select.poll) -> bool:
    """Put a live libpcap handle in non-blocking mode and register its descriptor with `poller`;
    False (and the handle left as it was) where that is not possible."""
    import ctypes

    fd = _libpcap_call(ffi, capture, "pcap_get_selectable_fd")
    errbuf = ctypes.create_string_buffer(256)
    if fd is None or fd < 0 or _libpcap_call(ffi, capture, "pcap_setnonblock", 1, errbuf) != 0:
        return False
    poller.register(fd, select.POLLIN)
    return True


def _opening_ms(options: CaptureOptions) -> int:
    return options.opening_timeout * 1000 if options.cuts_opening else 0


def _engine(create_engine: Any, options: CaptureOptions, stop: LiveStop | None = None) -> Any:
    """nfstream's `create_engine`, wrapped: the engine with the opening cut (where `options` ask
    for one) and, for a live meter (`stop` given), the live capture's replacements."""
    opening_ms = _opening_ms(options)

    def create() -> tuple[Any, Any]:
        if stop is not None:
            # runs in the meter process: Ctrl-C reaches the whole process group, but the meter
            # must keep going until the parent's stop so that it can export what it holds
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        ffi, lib = create_engine()
        if lib is None:
            return ffi, None
        return ffi, (_Engine(lib, opening_ms) if stop is None
                     else _LiveEngine(ffi, lib, stop, opening_ms))

    return create


def _recency_ordered_cache(meter: Any) -> dict[str, Any]:
    """Replacements for nfstream's flow cache and idle scan, so that idle flows expire on time.

    nfstream's meter keeps its flows in an OrderedDict and, every 10 ms, expires flows from its
    front while they are idle, stopping at the first that is not: a least-recently-used scan. But a
    packet's update reads its flow without moving it to the back, so the order is the order of
    creation, and an idle flow waits behind any older flow that is still active (in a live capture,
    until that flow's window is cut: up to the active timeout later). Here a flow moves to the back
    whenever its packet reads it (one C-level OrderedDict operation), and the scan reads the front
    flow without moving it.
    """
    from collections import OrderedDict

    base = meter.NFCache
    get = OrderedDict.__getitem__

    class RecencyCache(base):  # type: ignore[misc, valid-type]
        def __getitem__(self, key: str) -> Any:
            value: Any = get(self, key)
            self.move_to_end(key)
            return value

    def meter_scan(meter_tick: int, cache: Any, idle_timeout: int, channel: Any, *expire_args: Any) -> int:
        scanned = 0
        while scanned < 1000:  # nfstream's budget: at most 1000 flows every 10 ms
            key = next(iter(cache), None)
            if key is None:
                break
            flow = get(cache, key)
            if not flow.is_idle(meter_tick, idle_timeout):
                break  # the least recently used flow is not idle: none is
            channel.put(flow.expire(*expire_args))
            del cache[key]
            scanned += 1
        return scanned

    return {"NFCache": RecencyCache, "meter_scan": meter_scan}


def read_live(
    interface: str,
    options: CaptureOptions,
    bpf_filter: str | None = None,
    snaplen: int = 1536,
    promiscuous: bool = True,
    n_meters: int = 1,
    stats: LiveStats | None = None,
    stop: LiveStop | None = None,
    buffer_bytes: int = LIVE_BUFFER_BYTES,
) -> Iterator[FlowRecord]:
    """Yield the flows nfstream builds from a network interface, as their windows end.

    Needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode). `stats`, when given, is updated
    about once a second with the meters' packet and kernel drop counters (one live capture per
    process). `buffer_bytes`: the kernel's capture ring, what absorbs bursts while the meter is
    not scheduled. `stop`, when set, ends the capture: the flows still open are exported (whatever
    their age) and the iteration ends. Raises CaptureError (bad interface, filter or permissions).
    """
    global _live_stats
    import nfstream.meter
    import nfstream.streamer
    from nfstream import NFStreamer

    try:
        streamer = NFStreamer(
            source=interface,
            bpf_filter=bpf_filter,
            promiscuous_mode=promiscuous,
            snapshot_length=snaplen,
            n_meters=n_meters,
            performance_report=1 if stats is not None else 0,
            socket_buffer_size=buffer_bytes,
            **_flow_options(options),
        )
    except ValueError as exc:
        raise CaptureError(f"{interface}: {exc}") from exc
    if stats is not None:
        _live_stats = stats
        nfstream.streamer.update_performances = _record_performances
    patched = {"create_engine": _engine(nfstream.meter.create_engine, options, stop or LiveStop()),
               **_recency_ordered_cache(nfstream.meter)}
    try:
        with _meter_patched(nfstream.meter, patched):
            yield from streamer
    except ValueError as exc:
        raise CaptureError(f"{interface}: {exc}") from exc
    finally:
        if stats is not None and _live_stats is stats:
            _live_stats = None


def library_versions() -> dict[str, str]:
    """Versions of the capture stack, recorded with a model."""
    import nfstream

    return {"nfstream": getattr(nfstream, "__version__", "unknown")}
