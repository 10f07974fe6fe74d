"""Message-size augmentation: training rows copied with each direction's payload sizes rescaled.

The lab has a handful of stratum dialects (Bitcoin, Monero, Ethereum, XMRig's), each with its own
message sizes, and a booster readily learns those sizes instead of what all stratum shares: small
messages both ways, the pool pushing jobs, the miner submitting shares, for as long as it mines. A
pool with other job fields, other worker names, or TLS records around the same messages (a TLS 1.3
record adds 22 bytes, TLS 1.2 with AES-GCM 29) then looks like nothing the booster has seen.

`resized` stands for such traffic: per row, each direction's payload-carrying packets are resized to
`a * size + b`, with `a` drawn log-uniformly from SCALE and `b` uniformly from OFFSET, the two
directions independently; every size-valued feature follows (sizes per position and per direction,
their statistics, bytes, byte share, byte rate). Counts, timing, flags and directions stay as they
were: they are what the message sizes do not change. Every class is resized alike, so the size of
a message alone says less about its class, and the booster leans on how messages come and go.

The statistics over a direction's packets (mean, minimum, byte counts) include its packets without
payload (bare ACKs); the share of those is taken from the direction's PSH ratio, which is how
nearly every stack sends payload; the standard deviations are scaled by `a` alone. Where every
payload packet carries PSH, every feature but the standard deviations is what the resized traffic
would give, and those too where `b` is 0 (tests/test_augment.py).

Which rows are resized, and what it changed: training.train.AUGMENTED_VIEWS.

Timing is left alone. Scaling each copy's durations, gaps and rates too (by 1/2-2 per row, on
2026.11.24.5's offline booster, out-of-fold over three splits) found left-out tunnels better (the
TLS reverse shell 0.89 -> 1.0, Dropbear 0.86 -> 0.92, XMRig 0.70 -> 0.78) but mining worse: its
threshold rose from 0.94 to 0.96, mining within 20 packets fell from 0.936 to 0.896, left-out
Bitcoin from 0.95 to 0.91, and lab benign sessions flagged whole rose from 2 to 8 of 1760.
"""

from __future__ import annotations

import numpy as np

from flowguard.features import FEATURES, PAYLOADS_PER_DIRECTION, SPLT_PACKETS

COPIES = 2
"""Resized copies of each training row (0: no augmentation); each copy and the row itself weigh
1 / (COPIES + 1) of the row's weight."""
SCALE = (1 / 3, 3.0)
"""Range of the size factor `a` (log-uniform)."""
OFFSET = (0.0, 60.0)
"""Range of the bytes `b` added to each payload-carrying packet (uniform)."""

_I = {name: i for i, name in enumerate(FEATURES)}
_POSITIONS = [_I[f"pkt{i:02d}_size"] for i in range(1, SPLT_PACKETS + 1)]
_DIRECTIONS = ("s2d", "d2s")
_PAYLOADS = {d: [_I[f"{d}_pay{i:02d}_size"] for i in range(1, PAYLOADS_PER_DIRECTION + 1)]
             for d in _DIRECTIONS}


def resized(X: np.ndarray, rng: np.random.Generator, scale: tuple[float, float] = SCALE,
            offset: tuple[float, float] = OFFSET) -> np.ndarray:
    """A copy of the `vectorize` matrix X with each row's message sizes redrawn (module docstring)."""
    out = X.astype(np.float64)
    n = len(out)
    low, high = np.log(scale[0]), np.log(scale[1])
    a = {d: np.exp(rng.uniform(low, high, n)) for d in _DIRECTIONS}
    b = {d: rng.uniform(offset[0], offset[1], n) for d in _DIRECTIONS}
    total = out[:, _I["bytes"]].copy()
    s2d_share = np.nan_to_num(out[:, _I["s2d_byte_share"]])
    new_bytes = {}
    with np.errstate(invalid="ignore"):
        for d in _DIRECTIONS:
            A, B = a[d], b[d]
            payload_share = np.clip(np.nan_to_num(out[:, _I[f"{d}_psh_ratio"]]), 0.0, 1.0)
            own = total * (s2d_share if d == "s2d" else 1.0 - s2d_share)
            new_bytes[d] = A * own + B * payload_share * out[:, _I[f"{d}_packets"]]
            for stat in ("min", "max"):  # 0 is a packet without payload, which stays so
                c = _I[f"{d}_{stat}_ps"]
                out[:, c] = np.where(out[:, c] > 0, A * out[:, c] + B, out[:, c])
            out[:, _I[f"{d}_mean_ps"]] = A * out[:, _I[f"{d}_mean_ps"]] + B * payload_share
            out[:, _I[f"{d}_std_ps"]] *= A
            for c in (_I[f"first_{d}_payload_mean"], *_PAYLOADS[d]):  # payload sizes only
                out[:, c] = A * out[:, c] + B
        both = new_bytes["s2d"] + new_bytes["d2s"]
        has = both > 0
        out[:, _I["s2d_byte_share"]] = np.where(has, new_bytes["s2d"] / np.where(has, both, 1.0),
                                                out[:, _I["s2d_byte_share"]])
        out[:, _I["bytes_per_s"]] = np.where(total > 0, out[:, _I["bytes_per_s"]] * both
                                             / np.where(total > 0, total, 1.0),
                                             out[:, _I["bytes_per_s"]])
        out[:, _I["bytes"]] = both
        # per position: positive sizes are sent by the source, negative by the destination, 0 is
        # a packet without payload, NaN is no packet
        pos = out[:, _POSITIONS]
        out[:, _POSITIONS] = np.where(
            pos > 0, a["s2d"][:, None] * pos + b["s2d"][:, None],
            np.where(pos < 0, a["d2s"][:, None] * pos - b["d2s"][:, None], pos))
    return out.astype(X.dtype)


def augmented(X: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int, copies: int | None = None,
              rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training rows and `copies` (None: COPIES) resized copies of those in `rows` (a mask;
    None: all), seeded, with the weights split so that each row and its copies weigh what the row
    did."""
    copies = COPIES if copies is None else copies
    if copies <= 0 or (rows is not None and not rows.any()):
        return X, y, w
    rng = np.random.default_rng(seed)
    sel = np.ones(len(y), dtype=bool) if rows is None else rows
    share = np.where(sel, 1.0 / (copies + 1), 1.0)
    copied = X[sel]
    Xs = [X, *(resized(copied, rng) for _ in range(copies))]
    return (np.vstack(Xs), np.concatenate([y, *([y[sel]] * copies)]),
            np.concatenate([w * share, *([w[sel] / (copies + 1)] * copies)]))
