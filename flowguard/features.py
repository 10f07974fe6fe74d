"""The model's features, defined once for training and serving.

`FEATURES` is the ordered list of columns; `vectorize(records)` turns a batch of flow records into a
float32 matrix with those columns. Nothing here reads addresses or port numbers: they are easily
changed and would teach the model the lab's layout instead of the traffic's behaviour. One feature
compares the two ports (`from_service_port`: does the window begin at the lower, service end?), which
is a convention of every TCP/UDP stack, not a port number.

What the features describe (see shared/DOMAIN.md):
- volume and rate: a stratum session is a trickle of small messages for a long time;
- direction balance: who sends more, who speaks first (a reverse tunnel inverts an SSH session);
- packet sizes and gaps per direction: job pushes, share submits, keystrokes, keepalives;
- TCP flags: nearly every stratum packet carries payload (PSH);
- which end begins the window: a live window cut from a long connection begins with whoever spoke
  next, and in a reverse tunnel in use that is the outside server;
- the first packets of the flow (nfstream's `splt_analysis`): size, direction and gap of each,
  and each direction's first payloads in that direction's own order (which stay put when the two
  ends' packets cross on the wire), which lets a verdict come early, before the flow ends;
- nDPI's application family, as one feature among many (it misses TLS and XMRig's `login`).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from functools import lru_cache
from itertools import chain
from operator import attrgetter

import numpy as np

from flowguard.records import FlowRecord

SPLT_PACKETS = 20
"""How many first packets the splt features cover (the capture must keep at least as many)."""

_RAW_INTS = (
    # whole numbers in every record (nfstream's counts, bytes, sizes, milliseconds, ports): read as
    # int64, twice as fast as float64, which converts each Python int through a float object
    "bidirectional_duration_ms",
    "bidirectional_packets",
    "bidirectional_bytes",
    "src2dst_packets",
    "src2dst_bytes",
    "dst2src_packets",
    "dst2src_bytes",
    "src2dst_min_ps",
    "src2dst_max_ps",
    "dst2src_min_ps",
    "dst2src_max_ps",
    "bidirectional_max_piat_ms",
    "src2dst_max_piat_ms",
    "dst2src_max_piat_ms",
    "src2dst_syn_packets",
    "src2dst_psh_packets",
    "src2dst_rst_packets",
    "src2dst_fin_packets",
    "dst2src_syn_packets",
    "dst2src_psh_packets",
    "dst2src_rst_packets",
    "dst2src_fin_packets",
    "protocol",
    "application_is_guessed",
    "src_port",
    "dst_port",
)
_RAW_FLOATS = (
    "src2dst_mean_ps",
    "src2dst_stddev_ps",
    "dst2src_mean_ps",
    "dst2src_stddev_ps",
    "bidirectional_mean_piat_ms",
    "bidirectional_stddev_piat_ms",
    "src2dst_mean_piat_ms",
    "src2dst_stddev_piat_ms",
    "dst2src_mean_piat_ms",
    "dst2src_stddev_piat_ms",
)
_get_ints, _get_floats = attrgetter(*_RAW_INTS), attrgetter(*_RAW_FLOATS)
_SPLT_LISTS = (attrgetter("splt_direction"), attrgetter("splt_ps"), attrgetter("splt_piat_ms"))
_get_app = attrgetter("application_name")

APP_FAMILIES = ("Unknown", "Mining", "SSH", "TLS", "HTTP", "DNS", "QUIC", "Other")
"""nDPI application names folded into families; the index is the categorical code."""
_APP_CODE = {name: i for i, name in enumerate(APP_FAMILIES)}
_APP_ALIASES = {"HTTPS": "TLS", "DTLS": "TLS", "HTTP_Proxy": "HTTP", "HTTP_Connect": "HTTP"}

_DERIVED = (
    "duration_s",
    "packets",
    "bytes",
    "packets_per_min",
    "bytes_per_s",
    "s2d_packet_share",
    "s2d_byte_share",
    "s2d_packets",
    "d2s_packets",
    "s2d_min_ps",
    "s2d_mean_ps",
    "s2d_std_ps",
    "s2d_max_ps",
    "d2s_min_ps",
    "d2s_mean_ps",
    "d2s_std_ps",
    "d2s_max_ps",
    "mean_piat_ms",
    "std_piat_ms",
    "max_piat_ms",
    "piat_cv",
    "s2d_mean_piat_ms",
    "s2d_std_piat_ms",
    "s2d_max_piat_ms",
    "d2s_mean_piat_ms",
    "d2s_std_piat_ms",
    "d2s_max_piat_ms",
    "s2d_psh_ratio",
    "d2s_psh_ratio",
    "syn_packets",
    "rst_packets",
    "fin_packets",
    "protocol",
    "app_guessed",
    "app_family",
    "from_service_port",
)
_SPLT_SUMMARY = (
    "first_n",
    "first_s2d_share",
    "first_dir_changes",
    "first_payload_pkts",
    "first_s2d_payload_mean",
    "first_d2s_payload_mean",
    "first_server_speaks_first",
)
_SPLT_COLUMNS = tuple(f"pkt{i:02d}_size" for i in range(1, SPLT_PACKETS + 1)) + tuple(
    f"pkt{i:02d}_gap_ms" for i in range(2, SPLT_PACKETS + 1)
)
PAYLOADS_PER_DIRECTION = 6
"""Each direction's first payload-carrying packets, in that direction's own order: unlike the
interleaved `pktNN_size` columns, they do not change when the two ends' packets cross on the wire
(a TLS 1.3 server's session tickets and the client's first request race each other)."""
PER_DIRECTION_PAYLOADS = tuple(
    f"{d}_pay{i:02d}_size" for d in ("s2d", "d2s") for i in range(1, PAYLOADS_PER_DIRECTION + 1)
)

FEATURES: tuple[str, ...] = _DERIVED + _SPLT_SUMMARY + _SPLT_COLUMNS + PER_DIRECTION_PAYLOADS
"""Column names of `vectorize`'s matrix, in order."""
CATEGORICAL: tuple[str, ...] = ("app_family",)
_SYN_COL, _PACKETS_COL = FEATURES.index("syn_packets"), FEATURES.index("packets")



def app_family(application_name: str) -> str:
    """Fold nDPI's `Master.App` name into one of APP_FAMILIES."""
    master = (application_name or "Unknown").split(".", 1)[0]
    master = _APP_ALIASES.get(master, master)
    return master if master in _APP_CODE else "Other"


MIN_JUDGED_PACKETS = 4
"""A window cut from the middle of a connection with fewer packets than this (one request and its
answer, a keepalive) looks alike in every protocol: it is not judged, and its verdict is benign.
A window that opens its connection (a SYN) is always judged."""


def judged(matrix: np.ndarray, min_packets: int = MIN_JUDGED_PACKETS) -> np.ndarray:
    """Per row of a `vectorize` matrix: is there enough of the flow to judge it (see
    MIN_JUDGED_PACKETS)?"""
    return opens_connection(matrix) | (matrix[:, _PACKETS_COL] >= min_packets)


def opens_connection(matrix: np.ndarray) -> np.ndarray:
    """Per row of a `vectorize` matrix: does the flow hold its connection's SYN (for a live window:
    is it the connection's first)?"""
    return matrix[:, _SYN_COL] > 0


@lru_cache(maxsize=4096)
def _app_code(application_name: str) -> int:
    return _APP_CODE[app_family(application_name)]


def vectorize(records: Sequence[FlowRecord], needed: Set[str] | None = None) -> np.ndarray:
    """A (len(records), len(FEATURES)) float32 matrix; NaN marks a value the flow does not have.

    needed: the columns a model reads (FlowClassifier.features_used), None for all. The costlier
    groups of columns that none of them is in (nDPI's family, the per-direction payloads) are left
    NaN instead of computed."""
    n = len(records)
    out = np.empty((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return out
    # every value is pulled with C-level iterators (attrgetter, map, chain, fromiter): no Python
    # code runs per flow, which keeps this at a few microseconds a flow
    ints = np.fromiter(chain.from_iterable(map(_get_ints, records)), dtype=np.int64,
                       count=n * len(_RAW_INTS)).reshape(n, len(_RAW_INTS)).astype(np.float64)
    floats = np.fromiter(chain.from_iterable(map(_get_floats, records)), dtype=np.float64,
                         count=n * len(_RAW_FLOATS)).reshape(n, len(_RAW_FLOATS))
    col = dict(zip(_RAW_INTS, ints.T, strict=True)) | dict(zip(_RAW_FLOATS, floats.T, strict=True))
    if needed is None or not needed.isdisjoint(CATEGORICAL):
        apps = np.fromiter(map(_app_code, map(_get_app, records)), dtype=np.float64, count=n)
    else:
        apps = np.full(n, np.nan)
    _derived(col, apps, out[:, : len(_DERIVED)])
    direction, size, gap = (_padded(list(map(get, records))) for get in _SPLT_LISTS)
    payloads = needed is None or not needed.isdisjoint(PER_DIRECTION_PAYLOADS)
    first_packets(direction, size, gap, out[:, len(_DERIVED) :], payloads)
    return out


def _derived(col: dict[str, np.ndarray], apps: np.ndarray, out: np.ndarray) -> None:
    duration_s = col["bidirectional_duration_ms"] / 1000.0
    packets = col["bidirectional_packets"]
    total_bytes = col["bidirectional_bytes"]
    span = np.maximum(duration_s, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = [
            duration_s,
            packets,
            total_bytes,
            packets * 60.0 / span,
            total_bytes / span,
            col["src2dst_packets"] / packets,
            col["src2dst_bytes"] / np.maximum(total_bytes, 1.0),
            col["src2dst_packets"],
            col["dst2src_packets"],
            *(_present(col[f"src2dst_{s}_ps"], col["src2dst_packets"]) for s in _STATS),
            *(_present(col[f"dst2src_{s}_ps"], col["dst2src_packets"]) for s in _STATS),
            col["bidirectional_mean_piat_ms"],
            col["bidirectional_stddev_piat_ms"],
            col["bidirectional_max_piat_ms"],
            np.where(
                col["bidirectional_mean_piat_ms"] > 0,
                col["bidirectional_stddev_piat_ms"] / col["bidirectional_mean_piat_ms"],
                np.nan,
            ),
            *(_present(col[f"src2dst_{s}_piat_ms"], col["src2dst_packets"] - 1) for s in _PIAT),
            *(_present(col[f"dst2src_{s}_piat_ms"], col["dst2src_packets"] - 1) for s in _PIAT),
            _ratio(col["src2dst_psh_packets"], col["src2dst_packets"]),
            _ratio(col["dst2src_psh_packets"], col["dst2src_packets"]),
            col["src2dst_syn_packets"] + col["dst2src_syn_packets"],
            col["src2dst_rst_packets"] + col["dst2src_rst_packets"],
            col["src2dst_fin_packets"] + col["dst2src_fin_packets"],
            col["protocol"],
            col["application_is_guessed"],
            apps,
            col["src_port"] < col["dst_port"],
        ]
    for i, v in enumerate(values):
        out[:, i] = v


_STATS = ("min", "mean", "stddev", "max")
_PIAT = ("mean", "stddev", "max")


def _present(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """A per-direction statistic, NaN where that direction has too few packets to have one."""
    return np.where(count > 0, values, np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1.0), np.nan)


def _padded(rows: list[list[int]]) -> np.ndarray:
    """(len(rows), SPLT_PACKETS) array of the first packets' values, -1 where a flow has fewer packets.
    nfstream pads every list to its splt_analysis length, so this is usually one numpy call."""
    n = len(rows)
    if set(map(len, rows)) == {SPLT_PACKETS}:
        # nfstream's values are whole directions, bytes and milliseconds: read as int64 (twice as
        # fast as float64)
        ints = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=n * SPLT_PACKETS)
        return ints.reshape(n, SPLT_PACKETS).astype(np.float64)
    out = np.full((n, SPLT_PACKETS), -1.0)
    for i, row in enumerate(rows):
        k = min(len(row), SPLT_PACKETS)
        out[i, :k] = row[:k]
    return out


def first_packets(direction: np.ndarray, size: np.ndarray, gap: np.ndarray, out: np.ndarray,
                   payloads: bool = True) -> None:
    """Summaries and per-position columns of the first SPLT_PACKETS packets (direction, size and
    gap of each, -1 where absent), written into `out` (the columns from `first_n` on);
    `payloads`: also each direction's first payloads (else NaN). Training reuses it to rebuild
    a flow's first packets (training.augment.wrapped)."""
    n = len(direction)
    present = direction >= 0
    s2d = direction == 0
    d2s = direction == 1
    payload = present & (size > 0)  # sizes are payload bytes (capture.ACCOUNTING_PAYLOAD)
    first_n = present.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        changes = (present[:, 1:] & present[:, :-1] & (direction[:, 1:] != direction[:, :-1])).sum(1)
        s2d_pay = np.where(payload & s2d, size, 0.0)
        d2s_pay = np.where(payload & d2s, size, 0.0)
        n_s2d_pay = (payload & s2d).sum(1)
        n_d2s_pay = (payload & d2s).sum(1)
        # who sends the first packet that carries payload (SSH and stratum: the client; a
        # server-first banner, e.g. SSH's own, is common to both directions of use)
        first_pay = np.where(payload.any(1), payload.argmax(1), -1)
        server_first = np.where(
            first_pay >= 0, direction[np.arange(n), np.maximum(first_pay, 0)] == 1, np.nan
        )
        summary = [
            first_n,
            np.where(first_n > 0, s2d.sum(1) / np.maximum(first_n, 1), np.nan),
            changes,
            payload.sum(1),
            np.where(n_s2d_pay > 0, s2d_pay.sum(1) / np.maximum(n_s2d_pay, 1), np.nan),
            np.where(n_d2s_pay > 0, d2s_pay.sum(1) / np.maximum(n_d2s_pay, 1), np.nan),
            server_first,
        ]
    for i, v in enumerate(summary):
        out[:, i] = v
    k = len(summary)
    signed = np.where(present, np.where(d2s, -size, size), np.nan)
    out[:, k : k + SPLT_PACKETS] = signed
    k += SPLT_PACKETS
    out[:, k : k + SPLT_PACKETS - 1] = np.where(present[:, 1:], gap[:, 1:], np.nan)
    k += SPLT_PACKETS - 1
    if not payloads:
        out[:, k:] = np.nan
        return
    for mask in (payload & s2d, payload & d2s):
        _nth_of_each_row(mask, size, out[:, k : k + PAYLOADS_PER_DIRECTION])
        k += PAYLOADS_PER_DIRECTION


def _nth_of_each_row(mask: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """out[r, j] = the value of row r's (j+1)-th masked position, NaN where it has fewer."""
    out[:] = np.nan
    rank = np.cumsum(mask, axis=1) - 1
    rows, cols = np.nonzero(mask & (rank < out.shape[1]))
    out[rows, rank[rows, cols]] = values[rows, cols]
