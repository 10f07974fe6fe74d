"""Live capture: an interface in, verdicts out within seconds (`flowguard watch`, `serve --interface`).

    pipeline = LivePipeline(LiveSource("eth1"), classifier, sinks=[writer.write, publisher.add])
    pipeline.start()          # capture and classification threads
    ...
    pipeline.stop()           # stop capturing, classify what was queued, flush the sinks

nfstream yields flows one at a time from its meter process, as their windows end (`active_timeout`,
5 s by default here, so a long mining session or tunnel gets a verdict every few seconds, or
`opening_timeout` for a connection's first window where set; and `idle_timeout`, 2 s, so a login
exchange followed by silence is not held until the next packet). A reader
thread puts them on a queue; the classifier takes them in batches of up to `batch_size` flows, or
whatever arrived within `max_wait` of the first one, so a quiet link does not delay a verdict.
Each window after a connection's first is also judged as the connection so far
(`connections.ConnectionTracker` merges the windows): a window of a few packets says little, the
connection's first seconds together say more. A window is flagged when it, or its connection so far,
is; the verdict then describes what was flagged. A reverse-tunnel verdict is held back (benign)
while its connection has not behaved as a tunnel does after its opening
(`connections.tunnel_evidence`: an exchange begun by the outside end, or keepalives alone), unless
the pipeline is `eager_tunnels`: SSH automation opens its connections as `ssh -N -R` does, but
its client begins every exchange. A held verdict is remembered on its connection and given on its
later windows once the connection shows the evidence, whatever the model says of them: the
suspicion often comes from the opening, the evidence minutes later. No per-packet Python runs: the
per-packet work stays in nfstream's engine, and the merging is Python per window.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowguard.capture import (
    LIVE_ACTIVE_TIMEOUT,
    LIVE_BUFFER_BYTES,
    LIVE_IDLE_TIMEOUT,
    CaptureOptions,
    LiveStats,
    LiveStop,
    live_options,
    read_live,
)
from flowguard.connections import ConnectionTracker, tunnel_evidence
from flowguard.errors import CaptureError
from flowguard.model import BENIGN, CLASSES, FlowClassifier
from flowguard.records import FlowRecord
from flowguard.triage import (
    BATCH_SIZE,
    TUNNEL,
    FlowVerdict,
    classify_batch,
    held_tunnel,
    released_tunnel,
)

log = logging.getLogger("flowguard.live")

BENIGN_NAME = CLASSES[BENIGN]
MAX_WAIT_S = 0.2
"""Longest a flow waits in the queue for others to fill its batch."""
STOP_TIMEOUT_S = 60.0
"""How long a stop waits for the flows still open to be exported and classified: about 10k flows
a second here, so 100k open flows fit (systemd's default stop timeout is 90 s)."""

Sink = Callable[[list[FlowVerdict]], None]
"""Where each batch of verdicts goes: a writer, a publisher, the service's ingest."""

_END = object()


@dataclass(frozen=True)
class LiveSource:
    """An interface and how to capture on it (see `capture.read_live`)."""

    interface: str
    bpf_filter: str | None = None
    snaplen: int = 1536
    promiscuous: bool = True
    active_timeout: int = LIVE_ACTIVE_TIMEOUT
    n_meters: int = 1
    idle_timeout: int = LIVE_IDLE_TIMEOUT
    buffer_bytes: int = LIVE_BUFFER_BYTES
    opening_timeout: int | None = None
    """None: the model's (the windows its live booster learned from)."""

    @property
    def label(self) -> str:
        """What the verdicts carry in their `pcap` field."""
        return f"live:{self.interface}"

    def options(self, model_options: CaptureOptions) -> CaptureOptions:
        """The model's capture options with the live windows."""
        opening = self.opening_timeout
        return live_options(model_options, self.active_timeout, self.idle_timeout,
                            model_options.opening_timeout if opening is None else opening)


class _LiveCollector(Collector):
    def __init__(self, pipeline: LivePipeline) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        p = self.pipeline
        with p.stats.lock:
            packets, dropped, ignored = p.stats.packets, p.stats.dropped, p.stats.ignored
        yield CounterMetricFamily("flowguard_capture_packets", "Packets nfstream's meters processed.",
                                  value=packets)
        yield CounterMetricFamily("flowguard_capture_packets_ignored",
                                  "Packets the meters could not use (not IP).", value=ignored)
        yield CounterMetricFamily("flowguard_capture_kernel_drops",
                                  "Packets the kernel dropped before capture (libpcap ps_drop).",
                                  value=dropped)
        yield CounterMetricFamily("flowguard_capture_flows", "Flow windows received from capture.",
                                  value=p.flows)
        yield GaugeMetricFamily("flowguard_capture_queue_depth", "Flows waiting to be classified.",
                                value=p.queue_depth())
        yield GaugeMetricFamily("flowguard_capture_running", "1 while live capture runs.",
                                value=1 if p.running else 0)


class LiveMetrics:
    """The live pipeline's metrics, registered in a given registry (the service's) or their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.verdicts = Counter("flowguard_live_verdicts", "Verdicts of live flows, per class.",
                                ["verdict"], registry=self.registry)
        for name in CLASSES:
            self.verdicts.labels(name)
        self.inference = Histogram(
            "flowguard_inference_seconds", "Time to classify one batch of live flows.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry)
        self.batch_wait = Histogram(
            "flowguard_live_flow_wait_seconds",
            "From a flow window's export by nfstream to its verdict being handed to the sinks.",
            buckets=(0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0), registry=self.registry)
        self.sink_errors = Counter("flowguard_live_sink_errors", "Failed hand-overs of verdicts.",
                                   registry=self.registry)
        self.tunnels_held = Counter(
            "flowguard_live_tunnel_verdicts_held",
            "Reverse-tunnel verdicts held back (given as benign) because their connection had not "
            "yet behaved as a tunnel: no exchange begun by its outside end, and more than keepalives "
            "begun by its inside end.", registry=self.registry)
        self.tunnels_released = Counter(
            "flowguard_live_tunnel_verdicts_released",
            "Reverse-tunnel verdicts held back earlier on a connection and given on a later window "
            "of it (that the model judged benign) once the connection behaved as a tunnel.",
            registry=self.registry)


@dataclass
class LivePipeline:
    """Capture on one interface, classify in batches, hand verdicts to the sinks. Thread-safe start
    and stop; `error` holds the capture's failure, if it failed."""

    source: LiveSource
    classifier: FlowClassifier
    sinks: Sequence[Sink] = ()
    metrics: LiveMetrics = field(default_factory=LiveMetrics)
    batch_size: int = BATCH_SIZE
    max_wait: float = MAX_WAIT_S
    read: Callable[..., Iterator[FlowRecord]] = read_live
    stats: LiveStats = field(default_factory=LiveStats)
    flows: int = 0
    verdicts: int = 0
    error: CaptureError | None = None
    connections: ConnectionTracker = field(default_factory=ConnectionTracker)
    eager_tunnels: bool = False
    """Flag reverse tunnels on the model's verdict alone, without waiting for the connection's
    evidence (`connections.tunnel_evidence`)."""

    def __post_init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=100_000)
        self._stop = threading.Event()
        self._capture_stop = LiveStop()
        self._capturing = threading.Event()
        self._reader: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self.metrics.registry.register(_LiveCollector(self))

    @property
    def running(self) -> bool:
        """Capture is running (started and not failed or stopped)."""
        return self._capturing.is_set()

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        options = self.source.options(self.classifier.metadata.capture)
        self._reader = threading.Thread(target=self._read, args=(options,), name="live-capture",
                                        daemon=True)
        self._worker = threading.Thread(target=self._classify_loop, name="live-classify",
                                        daemon=True)
        self._capturing.set()
        self._reader.start()
        self._worker.start()

    def _read(self, options: CaptureOptions) -> None:
        try:
            for record in self.read(self.source.interface, options, self.source.bpf_filter,
                                    self.source.snaplen, self.source.promiscuous,
                                    self.source.n_meters, self.stats, self._capture_stop,
                                    self.source.buffer_bytes):
                self.flows += 1
                self._queue.put((time.monotonic(), record))
        except CaptureError as exc:
            self.error = exc
            log.error("live capture failed: %s", exc)
        except Exception as exc:  # the engine's own failures: report, never hang the pipeline
            self.error = CaptureError(f"{self.source.interface}: {exc}")
            log.exception("live capture failed")
        finally:
            self._capturing.clear()
            self._queue.put(_END)

    def _next_batch(self) -> tuple[list[tuple[float, FlowRecord]], bool]:
        """(batch, ended): up to batch_size flows, waiting at most max_wait after the first."""
        batch: list[tuple[float, FlowRecord]] = []
        deadline = None
        while len(batch) < self.batch_size:
            timeout = 0.5 if deadline is None else deadline - time.monotonic()
            if deadline is not None and timeout <= 0:
                break
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if deadline is None and not self._stop.is_set():
                    continue
                break
            if item is _END:
                return batch, True
            batch.append(item)  # type: ignore[arg-type]
            if deadline is None:
                deadline = time.monotonic() + self.max_wait
        return batch, False

    def _classify_loop(self) -> None:
        ended = False
        while not ended:
            batch, ended = self._next_batch()
            if batch:
                self._classify([r for _, r in batch], [t for t, _ in batch])

    def _classify(self, records: list[FlowRecord], queued_at: list[float]) -> None:
        started = time.perf_counter()
        verdicts = classify_batch(self.source.label, records, self.classifier, windows=True)
        # each window after a connection's first is judged again as the connection so far: a
        # miner's job pushes and shares, a few packets a window, add up to a verdict
        so_far = self.connections.add(records)
        later = [i for i, c in enumerate(so_far) if c.windows > 1]
        if later:
            whole = classify_batch(self.source.label, [so_far[i] for i in later], self.classifier)
            for i, verdict in zip(later, whole, strict=True):
                if verdicts[i].verdict == BENIGN_NAME and verdict.verdict != BENIGN_NAME:
                    verdicts[i] = verdict
        if not self.eager_tunnels:
            for i, v in enumerate(verdicts):
                if v.verdict == TUNNEL and not tunnel_evidence(so_far[i]):
                    self.connections.hold(records[i], v)
                    verdicts[i] = held_tunnel(v)
                    self.metrics.tunnels_held.inc()
                elif v.verdict == BENIGN_NAME and tunnel_evidence(so_far[i]):
                    held = self.connections.held(records[i])
                    if held is not None:  # the model's suspicion came first, the evidence now
                        verdicts[i] = released_tunnel(v, held)
                        self.metrics.tunnels_released.inc()
        self.metrics.inference.observe(time.perf_counter() - started)
        for v in verdicts:
            self.metrics.verdicts.labels(v.verdict).inc()
        for sink in self.sinks:
            try:
                sink(verdicts)
            except Exception:  # one failing sink (service down) must not stop the others
                self.metrics.sink_errors.inc()
                log.exception("handing %d verdicts to %r failed", len(verdicts), sink)
        now = time.monotonic()
        for t in queued_at:
            self.metrics.batch_wait.observe(now - t)
        self.verdicts += len(verdicts)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop capturing and return when every flow still open has been classified and handed to
        the sinks (nfstream exports them on stop, whatever their age), or after `timeout` s."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._capture_stop.set()
        if self._reader is not None:
            self._reader.join(max(0.0, deadline - time.monotonic()))
            if self._reader.is_alive():  # the engine did not end: classify what came, give up the rest
                log.warning("live capture did not end within %.0f s of stop; flows still open are lost",
                            timeout)
                self._capturing.clear()
                self._queue.put(_END)
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until capture ends by itself (failure); True if it did."""
        if self._reader is None:
            return True
        self._reader.join(timeout)
        return not self._reader.is_alive()
