"""Offline triage: capture files in, one verdict per flow out, classified in batches.

    for event in triage(paths, classifier):
        if isinstance(event, FileDone): ...        # a file was read (or could not be, see .error)
        else: ...                                   # a list of FlowVerdict, one batch

Per-file problems (missing, not a capture, truncated) never stop the other files: they come back
as `FileDone.error`. Problems that concern every file (the model) raise.

A flow the model calls a reverse tunnel is weighed once its file is read: the file is read again,
cut into exchanges by 2 s of silence as live windows are (only when it has such flows), and the
verdict stands only if the flow's connection had behaved as a tunnel by the flow's end
(`connections.tunnel_evidence`: an exchange begun by the outside end, or keepalives alone);
otherwise it is benign. Those verdicts come after the file's others. `eager_tunnels` keeps the
model's verdict as it is.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from flowguard.capture import exchange_options, hosts_filter, read_flows
from flowguard.connections import connection_key, tunnel_evidence_at
from flowguard.errors import CaptureError
from flowguard.features import vectorize
from flowguard.model import BENIGN, CLASSES, FlowClassifier, Reason
from flowguard.pcapfile import LINKTYPE_NAMES, CaptureInfo, inspect_capture, sniff_format
from flowguard.records import FlowRecord

BATCH_SIZE = 1024
TUNNEL = "reverse_tunnel"

OUTPUT_FIELDS = (
    "pcap",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "protocol",
    "first_seen_ms",
    "last_seen_ms",
    "packets",
    "bytes",
    "application_name",
    "verdict",
    "score",
    "scores",
    "model",
    "reasons",
)
"""The fields of a verdict, in output order (JSONL keys, CSV columns)."""


@dataclass(frozen=True)
class FlowVerdict:
    """One flow and what the model says of it. `bytes` counts transport payload, both directions."""

    pcap: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: int
    first_seen_ms: int
    last_seen_ms: int
    packets: int
    bytes: int
    application_name: str
    verdict: str
    score: float
    scores: dict[str, float]
    model: str
    reasons: list[Reason] = field(default_factory=list)  # why it was flagged; empty when benign

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in OUTPUT_FIELDS}
        out["reasons"] = [r.to_dict() for r in self.reasons]
        return out


@dataclass
class FileDone:
    """The end of one input: how many flows per verdict, and the problem if it was not fully read."""

    pcap: str
    counts: Counter[str] = field(default_factory=Counter)
    packets: int | None = None
    error: str | None = None

    @property
    def flows(self) -> int:
        return sum(self.counts.values())


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, str | None]]:
    """(path, problem) for each capture to read: files as given, directories searched for captures.

    A directory contributes the files in it (recursively, sorted) whose magic is pcap or pcapng;
    one that holds none yields (directory, problem).
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [
                str(p)
                for p in sorted(path.rglob("*"))
                if p.is_file() and not p.name.startswith(".") and sniff_format(p)
            ]
            if not found:
                yield str(raw), "no capture files (pcap or pcapng) in this directory"
            for p in found:
                yield p, None
        else:
            yield str(raw), None


def triage(
    paths: Iterable[str | os.PathLike[str]],
    classifier: FlowClassifier,
    batch_size: int = BATCH_SIZE,
    eager_tunnels: bool = False,
) -> Iterator[list[FlowVerdict] | FileDone]:
    """Classify every flow of every input; see the module docstring for what it yields."""
    # the framing walk is Python per record: in a thread it would take the GIL from the classifier;
    # a forked process runs it beside nfstream's meter instead, at the lowest priority so that it
    # never holds up the meter (it takes about 0.4 s of CPU on a 1M-packet file)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"),
                             initializer=os.nice, initargs=(19,)) as walker:
        for path, problem in expand_inputs(paths):
            if problem is not None:
                yield FileDone(path, error=problem)
                continue
            yield from _triage_file(path, classifier, batch_size, walker, eager_tunnels)
    classifier.settle()


def _triage_file(
    path: str, classifier: FlowClassifier, batch_size: int, walker: Executor, eager_tunnels: bool
) -> Iterator[list[FlowVerdict] | FileDone]:
    done = FileDone(path)
    p = Path(path)
    if not p.exists():
        done.error = "no such file"
    elif p.is_file() and sniff_format(p) is None:
        done.error = _not_a_capture(p)
    if done.error:
        yield done
        return
    # nfstream forks its meter for each file: not while a thread is importing LightGBM
    classifier.settle()
    # The framing walk (is the file whole?) runs beside nfstream, which reads in its own process.
    framing: Future[CaptureInfo] = walker.submit(inspect_capture, p)
    flows = read_flows(p, classifier.metadata.capture)
    tunnels: list[FlowVerdict] = []  # weighed once the file is read
    try:
        first = list(islice(flows, 1))  # nfstream's meter is reading in its own process now...
        classifier.prepare()  # ...while a lazily loaded model loads its compiled trees here
        flows = chain(first, flows)
        while batch := list(islice(flows, batch_size)):
            verdicts = classify_batch(path, batch, classifier)
            if not eager_tunnels:
                tunnels.extend(v for v in verdicts if v.verdict == TUNNEL)
                verdicts = [v for v in verdicts if v.verdict != TUNNEL]
            done.counts.update(v.verdict for v in verdicts)
            # more flows to come (a small file is read whole by now): LightGBM, which explains
            # flagged flows, is loaded in a thread while the meter reads on
            if len(batch) == batch_size:
                classifier.prepare_explanations()
            if verdicts:
                yield verdicts
    except CaptureError as exc:
        done.error = str(exc).removeprefix(f"{path}: ")
    if tunnels:
        tunnels = weigh_tunnels(p, tunnels, classifier)
        done.counts.update(v.verdict for v in tunnels)
        yield tunnels
    try:
        info = framing.result()
        done.packets = info.packets
        if not info.decodable and info.packets and not done.flows and done.error is None:
            name = LINKTYPE_NAMES.get(info.linktype or 0, "unknown")
            done.error = (
                f"link type {info.linktype} ({name}) is not one flowguard can decode: "
                f"{info.packets} packets, no flows read"
            )
        if info.truncated_at is not None and done.error is None:
            done.error = (
                f"truncated or corrupt capture: {info.packets} packets read, "
                f"the record at byte {info.truncated_at} of {info.size} is cut off"
            )
    except CaptureError as exc:
        done.error = done.error or str(exc).removeprefix(f"{path}: ")
    except BrokenExecutor as exc:  # the walking process died (killed, out of memory)
        done.error = done.error or f"the capture's framing could not be checked ({exc})"
    yield done


def weigh_tunnels(path: Path, tunnels: list[FlowVerdict], classifier: FlowClassifier) -> list[FlowVerdict]:
    """The reverse-tunnel verdicts of a file, each held back (benign) unless its connection had
    shown tunnel evidence by the flow's end, by the file read again as exchanges (windows cut by 2 s
    of silence, as the live ones are, but not every 5 s: fewer of them). The second read passes
    only the packets of those connections' outside hosts (a BPF filter) where it can; a connection
    the filter missed (two VLAN tags, a tunnel nfstream decodes), a filter the link type refuses
    or too many hosts mean a read of the whole file. If the file cannot be read again, the
    verdicts stay as the model gave them."""
    wanted = [(connection_key(v), v.last_seen_ms) for v in tunnels]
    keys = {key for key, _ in wanted}
    options = exchange_options(classifier.metadata.capture)
    # one end of each (the responder's, where the flow began with its SYN) is enough to pass its
    # packets, and tunnels share their outside servers: a short filter, cheap to run per packet
    narrowed = hosts_filter((v.protocol, v.dst_ip) for v in tunnels)
    windows: list[FlowRecord] = []
    if narrowed is not None:
        try:
            windows = [w for w in read_flows(path, options, narrowed) if connection_key(w) in keys]
        except CaptureError:  # the filter does not compile for this link type (raw IP: no VLANs)
            pass
    missed = keys - {connection_key(w) for w in windows}
    if missed:
        try:
            windows += [w for w in read_flows(path, options) if connection_key(w) in missed]
        except CaptureError:
            return tunnels
    evidence = tunnel_evidence_at(windows, wanted)
    return [v if ok else held_tunnel(v) for v, ok in zip(tunnels, evidence, strict=True)]


def held_tunnel(v: FlowVerdict) -> FlowVerdict:
    """A reverse-tunnel verdict held back: benign, scored with the benign probability; `scores`
    still show what the model said."""
    return replace(v, verdict=CLASSES[BENIGN], score=v.scores[CLASSES[BENIGN]], reasons=[])


def released_tunnel(v: FlowVerdict, held: FlowVerdict) -> FlowVerdict:
    """The reverse-tunnel verdict `held` back on a connection, given on its later window `v` once
    the connection behaves as a tunnel (the window itself may look benign): `held`'s score, scores
    and reasons, `v`'s flow."""
    return replace(v, verdict=TUNNEL, score=held.score, scores=held.scores, reasons=held.reasons)


def _not_a_capture(path: Path) -> str:
    try:
        if path.stat().st_size == 0:
            return "empty file, not a capture"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return "not a capture file (expected pcap or pcapng)"


def classify_batch(
    pcap: str, records: list[FlowRecord], classifier: FlowClassifier, windows: bool = False
) -> list[FlowVerdict]:
    """Verdicts for a batch of flows from one source, in the order given; `windows`: they are live
    windows (see FlowClassifier.decide)."""
    matrix = vectorize(records, classifier.features_used)
    proba = classifier.predict_proba(matrix)
    verdict_idx, score = classifier.decide(proba, matrix, windows)
    flagged = np.flatnonzero(verdict_idx != BENIGN)
    reasons: list[list[Reason]] = [[] for _ in records]
    for i, why in zip(flagged, classifier.explain(matrix[flagged], verdict_idx[flagged]), strict=True):
        reasons[i] = why
    classes = classifier.classes
    model = classifier.version
    out = []
    for rec, probs, v, s, why in zip(
        records, proba.tolist(), verdict_idx.tolist(), score.tolist(), reasons, strict=True
    ):
        out.append(
            FlowVerdict(
                pcap=pcap,
                src_ip=rec.src_ip,
                src_port=int(rec.src_port),
                dst_ip=rec.dst_ip,
                dst_port=int(rec.dst_port),
                protocol=int(rec.protocol),
                first_seen_ms=int(rec.bidirectional_first_seen_ms),
                last_seen_ms=int(rec.bidirectional_last_seen_ms),
                packets=int(rec.bidirectional_packets),
                bytes=int(rec.bidirectional_bytes),
                application_name=str(rec.application_name),
                verdict=classes[v],
                score=round(s, 6),
                scores={c: round(p, 6) for c, p in zip(classes, probs, strict=True)},
                model=model,
                reasons=why,
            )
        )
    return out
