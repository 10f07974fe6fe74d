"""Labelled captures in, a feature table out: the same capture and features code as triage.

A lab run directory holds `capture.pcap` and `labels.json` (see training/lab/run.py). Each flow of
the capture is matched to the conversation it belongs to (client address, server address and port,
either direction); flows that match none (ARP, stray packets) are left out and counted. A flow with
no payload at all is labelled benign whatever its session: nothing was mined or tunnelled in it. Captures of
the real-world benign corpus are read whole as benign, each file its own group.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowguard.capture import CaptureOptions, live_options, read_flows
from flowguard.connections import ConnectionTracker, connection_key, evidence_timeline, shown_by
from flowguard.errors import CaptureError
from flowguard.features import FEATURES, vectorize
from flowguard.model import CLASSES
from flowguard.model import sha256_file as sha256
from flowguard.pcapfile import sniff_format
from training.lab.scenarios import first_use_s

CUTS_S = (30, 60, 120, 200)
"""Besides each whole lab capture, its first N seconds are read too: sessions start at different times,
so a cut shows the model flows of every age, as a short capture or a live early verdict would."""
CUTS_PACKETS = (10, 20, 50)
"""... and each connection's first N packets: what is known of a flow N packets in."""
LIVE_VIEW = "live"
"""... and the whole capture cut into the windows a live capture makes (`capture.live_options`: a
window ends after 5 s, or after 2 s of silence), which begin mid-connection with whichever end
spoke next. Corpus captures are read this way too."""
CONNECTION_VIEW = "live-connection"
"""... and, at each of those windows after a connection's first, the connection so far as
`connections.ConnectionTracker` rebuilds it from its windows: what a live capture knows of a
connection when the window is exported."""
LIVE_VIEWS = (LIVE_VIEW, CONNECTION_VIEW)
"""The views a live capture judges, with the live booster (model-live.txt)."""
MIN_MINED_SHARES = 1
"""A mining session whose pool accepted fewer shares than this in the whole session (its `pool`
account in labels.json) mined nothing the capture shows: a login, job pushes and keepalives, as a
push or chat channel sends. Its id is listed in the table's summary (`unmined_sessions`); training
leaves its rows out (`train.trainable`), evaluation keeps them. Sessions of runs made before the
lab kept pool accounts have none and count as mined."""


@dataclass
class Table:
    """Feature rows with their class, group (the session: never split across train and test),
    scenario, and where they came from."""

    X: np.ndarray
    y: np.ndarray
    groups: list[str]
    scenarios: list[str]
    sources: list[str]
    first_packets: np.ndarray  # packets in the flow window (for early-verdict curves)
    views: list[str] = field(default_factory=list)  # "full", "cutN" (seconds), "pktN" (packets), "live"
    ports: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    """The server port of each row's conversation (0 for the corpus): for leave-port-out evaluation
    only, never a feature."""
    summary: dict[str, object] = field(default_factory=dict)
    ends_s: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    """Seconds from the first packet of the row's connection (in the same view) to the row's last
    packet; for the live views, to when nfstream exports the window (`since_connection_start`):
    when a verdict on it was possible. For time-to-detection curves."""
    evidence: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    """Whether a reverse-tunnel verdict on the row would be given, tunnel verdicts being held until
    `connections.tunnel_evidence` (`TunnelEvidence`): offline, the row's connection shows it by the
    row's last packet; live, at the row's window or a later one of its connection (a held verdict
    is given then). Empty in tables made before it was recorded: every verdict counts."""

    @property
    def has_evidence(self) -> bool:
        """Whether `evidence` was recorded (every row has it)."""
        return len(self.evidence) == len(self.y)

    def subset(self, mask: np.ndarray) -> Table:
        """The rows of `mask`; the summary stays the whole table's (what the data came from: its
        runs, hashes, per-session facts such as `unmined_sessions`)."""
        idx = np.flatnonzero(mask)
        return Table(self.X[idx], self.y[idx], [self.groups[i] for i in idx],
                     [self.scenarios[i] for i in idx], [self.sources[i] for i in idx],
                     self.first_packets[idx], [self.views[i] for i in idx], self.ports[idx],
                     self.summary, self.ends_s[idx],
                     self.evidence[idx] if self.has_evidence else self.evidence)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, X=self.X, y=self.y, groups=np.array(self.groups),
                            scenarios=np.array(self.scenarios), sources=np.array(self.sources),
                            first_packets=self.first_packets, views=np.array(self.views),
                            ports=self.ports, ends_s=self.ends_s, evidence=self.evidence,
                            summary=np.array(json.dumps(self.summary)), features=np.array(FEATURES))

    @classmethod
    def load(cls, path: Path) -> Table:
        z = np.load(path, allow_pickle=False)
        if tuple(z["features"].tolist()) != FEATURES:
            raise ValueError(f"{path}: built with other features; rebuild it")
        return cls(z["X"], z["y"], z["groups"].tolist(), z["scenarios"].tolist(),
                   z["sources"].tolist(), z["first_packets"], z["views"].tolist(),
                   z["ports"], json.loads(str(z["summary"])), z["ends_s"],
                   z["evidence"] if "evidence" in z else np.empty(0, dtype=bool))


def cut_capture(src: Path, dst: Path, seconds: float) -> None:
    """Write the first `seconds` of a pcap (by packet time from the first packet) to dst."""
    import mmap
    import struct

    with src.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        order = "<" if buf[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        rec = struct.Struct(order + "I4xI4x")
        offset, start = 24, None
        while offset + 16 <= len(buf):
            ts, incl = rec.unpack_from(buf, offset)
            start = ts if start is None else start
            if ts - start >= seconds:
                break
            offset += 16 + incl
        dst.write_bytes(buf[:offset])


def packet_cut(src: Path, dst: Path, packets: int) -> None:
    """Write only the first `packets` packets of each connection (5-tuple, either direction) of an
    Ethernet pcap to dst. Evaluation tooling: it decodes headers in Python, once per lab capture."""
    import mmap
    import struct

    with src.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf, \
            dst.open("wb") as out:
        order = "<" if buf[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        rec = struct.Struct(order + "8xI4x")
        out.write(buf[:24])
        seen: Counter[tuple] = Counter()
        offset = 24
        while offset + 16 <= len(buf):
            (incl,) = rec.unpack_from(buf, offset)
            end = offset + 16 + incl
            key = _conn_key(buf[offset + 16 : end])
            if key is None or seen[key] < packets:
                if key is not None:
                    seen[key] += 1
                out.write(buf[offset:end])
            offset = end


def _conn_key(frame: bytes) -> tuple | None:
    """A direction-free connection key of an Ethernet frame, None for what is not TCP/UDP over IP."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        proto, a, b, l4 = frame[23], frame[26:30], frame[30:34], 14 + ihl
    elif ethertype == 0x86DD and len(frame) >= 54:
        proto, a, b, l4 = frame[20], frame[22:38], frame[38:54], 54
    else:
        return None
    if proto not in (6, 17) or len(frame) < l4 + 4:
        return None
    pa, pb = frame[l4 : l4 + 2], frame[l4 + 2 : l4 + 4]
    return (proto, *sorted(((a, pa), (b, pb))))


def since_connection_start(flows: list, idle_timeout_s: float | None = None) -> np.ndarray:
    """Per flow (window), seconds from its connection's first packet among `flows` to its last.

    With `idle_timeout_s` (live windows), to when nfstream exports the window instead: at the
    connection's next packet when that packet starts a new window (an active-timeout cut), else
    `idle_timeout_s` after the window's last packet. That is when a live verdict on it is possible.
    """
    keys = [connection_key(f) for f in flows]
    start: dict[tuple, int] = {}
    for f, k in zip(flows, keys, strict=True):
        start[k] = min(start.get(k, f.bidirectional_first_seen_ms), f.bidirectional_first_seen_ms)
    ends = [f.bidirectional_last_seen_ms for f in flows]
    if idle_timeout_s is not None:
        idle = int(idle_timeout_s * 1000)
        ends = [last + idle for last in ends]
        following: dict[tuple, int] = {}  # connection -> first packet of its next window
        for i in sorted(range(len(flows)), key=lambda i: -flows[i].bidirectional_first_seen_ms):
            nxt = following.get(keys[i])
            if nxt is not None:
                ends[i] = min(ends[i], nxt)
            following[keys[i]] = flows[i].bidirectional_first_seen_ms
    return np.array([(end - start[k]) / 1000.0 for end, k in zip(ends, keys, strict=True)],
                    dtype=np.float64)


def label_run(
    run_dir: Path, options: CaptureOptions, capture: Path | None = None
) -> tuple[list, list[tuple[str, str, str, int, str]], Counter]:
    """Flows of one lab run and their (label, session, scenario, server port, conversation's label);
    plus counts of unmatched flows. The label is the conversation's, or benign for a flow with no
    payload."""
    labels = json.loads((run_dir / "labels.json").read_text())
    index: dict[tuple[str, str, int], tuple[str, str, str, int]] = {}
    for c in labels["conversations"]:
        index[(c["client_ip"], c["server_ip"], int(c["server_port"]))] = (
            c["label"], c["session"], c["scenario"], int(c["server_port"]))
    flows: list = []
    tags: list[tuple[str, str, str, int, str]] = []
    skipped: Counter[str] = Counter()
    for f in read_flows(capture or run_dir / labels["capture"], options):
        tag = index.get((f.src_ip, f.dst_ip, f.dst_port)) or index.get((f.dst_ip, f.src_ip, f.src_port))
        if tag is None:
            skipped[f.application_name] += 1
            continue
        label = tag[0]
        if f.bidirectional_bytes == 0:
            # a connection that carried no payload (a refused or retried attempt) holds no mining
            # and no tunnel, whatever its session was doing; nor does a live window of bare ACKs
            label = "benign"
        flows.append(f)
        tags.append((label, *tag[1:], tag[0]))
    return flows, tags, skipped


class TunnelEvidence:
    """When each connection of a capture shows `connections.tunnel_evidence`, as its live windows
    (all of them, in the order read) tell: what triage and live capture wait for before they give
    a reverse-tunnel verdict. Training counts a benign row's tunnel score against the thresholds'
    false-positive budgets only where the verdict would be given (`Table.evidence`). `so_far`: the
    windows merged into their connections (`_views` reads the same)."""

    def __init__(self, windows: list) -> None:
        self.so_far = ConnectionTracker().add(windows)
        self.timeline = evidence_timeline(windows, self.so_far)
        self.later = {k: np.logical_or.accumulate(shown[::-1])[::-1].tolist()
                      for k, (_, shown) in self.timeline.items()}

    def by_end(self, flows: list) -> np.ndarray:
        """Offline: shown by each flow's last packet (as `connections.tunnel_evidence_at`)."""
        return np.fromiter((shown_by(self.timeline, connection_key(f), f.bidirectional_last_seen_ms)
                            for f in flows), dtype=bool, count=len(flows))

    def at_or_after(self, windows: list) -> np.ndarray:
        """Live (`windows`: those this was made from, in the same order): shown at each window or
        at a later one of its connection."""
        seen: dict[tuple, int] = {}
        out = np.zeros(len(windows), dtype=bool)
        for i, w in enumerate(windows):
            key = connection_key(w)
            j = seen.get(key, 0)
            seen[key] = j + 1
            later = self.later.get(key, [])
            out[i] = j < len(later) and later[j]
        return out


def _views(view: str, flows: list, tags: list, options: CaptureOptions,
           so_far: list | None = None) -> list[tuple[str, list, list, np.ndarray, np.ndarray]]:
    """(view, records, their tags, seconds to verdict, their index in `flows`) for the flows of
    one read: the live read gives LIVE_VIEW and, for each window after its connection's first,
    CONNECTION_VIEW (`so_far`: its windows merged into their connections); any other read gives
    its own view."""
    if view != LIVE_VIEW:
        return [(view, flows, tags, since_connection_start(flows), np.arange(len(flows)))]
    ends = since_connection_start(flows, options.idle_timeout)
    if so_far is None:
        so_far = ConnectionTracker().add(flows)
    later = [i for i, c in enumerate(so_far) if c.windows > 1]  # else the same as the window
    # the connection so far is labelled by its own payload, not by its last window's: a window of
    # bare ACKs in a mining connection is benign, the mining connection it ends is not
    so_far_tags = [(tags[i][4] if so_far[i].bidirectional_bytes > 0 else "benign", *tags[i][1:])
                   for i in later]
    return [(LIVE_VIEW, flows, tags, ends, np.arange(len(flows))),
            (CONNECTION_VIEW, [so_far[i] for i in later], so_far_tags, ends[later],
             np.array(later, dtype=np.int64))]


def build(runs: list[Path], corpus: Path | None, options: CaptureOptions) -> Table:
    Xs: list[np.ndarray] = []
    ys: list[int] = []
    groups: list[str] = []
    scen: list[str] = []
    srcs: list[str] = []
    pk: list[int] = []
    ports: list[int] = []
    ends: list[np.ndarray] = []
    data_hashes: dict[str, str] = {}
    skipped_total: Counter = Counter()
    views: list[str] = []
    first_use: dict[str, float] = {}
    unmined: list[str] = []

    shown: list[np.ndarray] = []

    def add(view: str, records: list, tags: list, row_ends: np.ndarray, source: str,
            evidence: np.ndarray) -> None:
        """Rows for `records`, each tagged (label, session, scenario, server port)."""
        if not records:
            return
        Xs.append(vectorize(records))
        ys.extend(CLASSES.index(t[0]) for t in tags)
        groups.extend(t[1] for t in tags)
        scen.extend(t[2] for t in tags)
        srcs.extend([source] * len(tags))
        pk.extend(f.bidirectional_packets for f in records)
        views.extend([view] * len(tags))
        ports.extend(t[3] for t in tags)
        ends.append(row_ends)
        shown.append(evidence)

    for run in runs:
        data_hashes[f"{run.name}/capture.pcap"] = sha256(run / "capture.pcap")
        data_hashes[f"{run.name}/labels.json"] = sha256(run / "labels.json")
        for session in json.loads((run / "labels.json").read_text()).get("sessions", []):
            offset = first_use_s(session)
            if offset is not None:
                first_use[str(session["id"])] = offset
            if session.get("label") == "stratum_mining" and "pool" in session \
                    and session["pool"]["accepted"] < MIN_MINED_SHARES:
                unmined.append(str(session["id"]))
        with tempfile.TemporaryDirectory() as tmp:
            cuts = [("full", None), *((f"cut{c}", c) for c in CUTS_S),
                    *((f"pkt{n}", n) for n in CUTS_PACKETS), (LIVE_VIEW, None)]
            live_flows, live_tags, _ = label_run(run, live_options(options))
            evidence = TunnelEvidence(live_flows)
            for view, amount in cuts:
                capture = None
                if amount is not None:
                    capture = Path(tmp) / f"{view}.pcap"
                    cutter = cut_capture if view.startswith("cut") else packet_cut
                    cutter(run / "capture.pcap", capture, amount)
                view_options = live_options(options) if view == LIVE_VIEW else options
                if view == LIVE_VIEW:  # read first, for the evidence
                    flows, tags = live_flows, live_tags
                else:
                    flows, tags, skipped = label_run(run, view_options, capture)
                    if view == "full":
                        skipped_total.update(skipped)
                if not flows:
                    continue
                shows = evidence.at_or_after(flows) if view == LIVE_VIEW else evidence.by_end(flows)
                for name, records, rows_tags, row_ends, rows in _views(view, flows, tags,
                                                                       view_options, evidence.so_far):
                    add(name, records, rows_tags, row_ends, run.name, shows[rows])
    corpus_files = 0
    if corpus is not None and corpus.is_dir():
        for path in sorted(corpus.iterdir()):
            if not sniff_format(path):
                continue
            try:
                reads = [("full", list(read_flows(path, options))),
                         (LIVE_VIEW, list(read_flows(path, live_options(options))))]
            except CaptureError:
                continue
            corpus_files += 1
            data_hashes[f"corpus/{path.name}"] = sha256(path)
            evidence = TunnelEvidence(reads[1][1])
            for view, flows in reads:
                tags = [("benign", f"corpus/{path.name}", "corpus", 0, "benign")] * len(flows)
                view_options = live_options(options) if view == LIVE_VIEW else options
                shows = evidence.at_or_after(flows) if view == LIVE_VIEW else evidence.by_end(flows)
                for name, records, rows_tags, row_ends, rows in _views(view, flows, tags,
                                                                       view_options, evidence.so_far):
                    add(name, records, rows_tags, row_ends, f"corpus/{path.name}", shows[rows])
    X = np.vstack(Xs) if Xs else np.empty((0, len(FEATURES)), dtype=np.float32)
    y = np.array(ys, dtype=np.int32)
    summary = {
        "lab_runs": [r.name for r in runs],
        "corpus_files": corpus_files,
        "rows": int(len(y)),
        "rows_per_class": {c: int((y == i).sum()) for i, c in enumerate(CLASSES)},
        "sessions_per_class": {c: len({g for g, yy in zip(groups, ys, strict=True) if yy == i})
                               for i, c in enumerate(CLASSES)},
        "rows_per_scenario": dict(Counter(scen)),
        "unlabelled_flows_skipped": sum(skipped_total.values()),
        "data_sha256": hashlib.sha256(json.dumps(data_hashes, sort_keys=True).encode()).hexdigest(),
        "files_sha256": data_hashes,
    }
    summary["rows_per_view"] = dict(Counter(views))
    summary["first_use_s"] = first_use
    summary["unmined_sessions"] = unmined
    return Table(X, y, groups, scen, srcs, np.array(pk, dtype=np.int64), views,
                 np.array(ports, dtype=np.int32), summary,
                 np.concatenate(ends) if ends else np.empty(0, dtype=np.float64),
                 np.concatenate(shown) if shown else np.empty(0, dtype=bool))


def feedback_table(path: Path, options: CaptureOptions, pcap_root: Path | None = None) -> Table:
    """Rows from analysts' feedback (JSON Lines from the service's GET /v1/feedback).

    Each feedback names a verdict (its capture, 5-tuple and first-seen time) and the class it should
    have had (`true_class`). The capture is read again (relative paths from `pcap_root`) and the
    flow found by its 5-tuple and first-seen time gets that class. Feedback on live verdicts or on
    captures no longer at hand is counted in the summary and left out.
    """
    wanted: dict[str, dict[tuple, tuple[str, int]]] = {}
    skipped: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        fb = json.loads(line)
        true_class = fb.get("true_class")
        if true_class not in CLASSES:
            skipped["no class"] += 1
            continue
        pcap = Path(fb["pcap"])
        if pcap_root is not None and not pcap.is_absolute():
            pcap = pcap_root / pcap
        if not sniff_format(pcap):
            skipped["capture not at hand"] += 1
            continue
        key = (fb["src_ip"], int(fb["src_port"]), fb["dst_ip"], int(fb["dst_port"]),
               int(fb["protocol"]), int(fb["first_seen_ms"]))
        wanted.setdefault(str(pcap), {})[key] = (true_class, int(fb["feedback_id"]))
    flows, tags = [], []
    for capture, keys in wanted.items():
        for f in read_flows(capture, options):
            key = (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol, f.bidirectional_first_seen_ms)
            if key in keys:
                flows.append(f)
                tags.append((*keys.pop(key), f.dst_port))
        if keys:
            skipped["flow not found"] += len(keys)
    X = vectorize(flows) if flows else np.empty((0, len(FEATURES)), dtype=np.float32)
    return Table(
        X, np.array([CLASSES.index(t[0]) for t in tags], dtype=np.int32),
        [f"feedback/{t[1]}" for t in tags], ["feedback"] * len(tags), [str(path)] * len(tags),
        np.array([f.bidirectional_packets for f in flows], dtype=np.int64), ["full"] * len(tags),
        np.array([t[2] for t in tags], dtype=np.int32),
        {"feedback_rows": len(tags), "feedback_skipped": dict(skipped), "feedback_sha256": sha256(path)},
        np.array([f.bidirectional_duration_ms / 1000.0 for f in flows], dtype=np.float64),
        np.ones(len(tags), dtype=bool),  # an analyst saw the verdict: it was given
    )


def concat(a: Table, b: Table) -> Table:
    """Rows of a, then of b; summaries merged."""
    return Table(np.vstack([a.X, b.X]), np.concatenate([a.y, b.y]), a.groups + b.groups,
                 a.scenarios + b.scenarios, a.sources + b.sources,
                 np.concatenate([a.first_packets, b.first_packets]), a.views + b.views,
                 np.concatenate([a.ports, b.ports]), {**a.summary, **b.summary},
                 np.concatenate([a.ends_s, b.ends_s]),
                 np.concatenate([_evidence(a), _evidence(b)]))


def _evidence(t: Table) -> np.ndarray:
    """A table's `evidence`, every row counting where it was not recorded."""
    return t.evidence if t.has_evidence else np.ones(len(t.y), dtype=bool)
