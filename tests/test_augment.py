"""training.augment: a resized row is what vectorize gives for the same traffic with its messages
resized."""

from __future__ import annotations

import numpy as np

from flowguard.features import FEATURES, SPLT_PACKETS, vectorize
from tests.test_features import flow
from training.augment import augmented, resized

# the first packets of a flow: (direction, payload bytes, gap ms); every payload packet has PSH
PACKETS = [(0, 0, 0), (1, 0, 20), (0, 0, 1), (0, 180, 2), (1, 400, 21), (0, 0, 1), (1, 650, 30),
           (0, 150, 900), (1, 0, 1), (0, 0, 15), (1, 520, 4000), (0, 0, 1)]


def traffic(a: float, b: float) -> object:
    """A flow record of PACKETS with each payload resized to a * size + b."""
    packets = [(d, a * s + b if s > 0 else 0, g) for d, s, g in PACKETS]
    sizes = {d: np.array([s for dd, s, _ in packets if dd == d], dtype=float) for d in (0, 1)}
    stats: dict[str, object] = {}
    for d, name in ((0, "src2dst"), (1, "dst2src")):
        x = sizes[d]
        stats |= {f"{name}_packets": len(x), f"{name}_bytes": x.sum(), f"{name}_min_ps": x.min(),
                  f"{name}_mean_ps": x.mean(), f"{name}_stddev_ps": x.std(ddof=1),
                  f"{name}_max_ps": x.max(), f"{name}_psh_packets": int((x > 0).sum())}
    pad = SPLT_PACKETS - len(packets)
    return flow(
        bidirectional_packets=len(packets), bidirectional_bytes=sizes[0].sum() + sizes[1].sum(),
        splt_direction=[d for d, _, _ in packets] + [-1] * pad,
        splt_ps=[s for _, s, _ in packets] + [-1] * pad,
        splt_piat_ms=[g for _, _, g in packets] + [-1] * pad, **stats)


def vectorized(record: object) -> np.ndarray:
    # vectorize reads nfstream's whole numbers as integers: sizes are whole bytes here
    return vectorize([record])  # type: ignore[list-item]


def test_resized_rows_are_the_resized_traffic() -> None:
    original = vectorized(traffic(1, 0))
    for a, b in ((2.0, 0.0), (0.5, 0.0), (1.5, 30.0), (3.0, 10.0)):
        got = resized(original, np.random.default_rng(0), scale=(a, a), offset=(b, b))
        want = vectorized(traffic(a, b))
        exact = [i for i, f in enumerate(FEATURES) if not (b and f.endswith("_std_ps"))]
        np.testing.assert_allclose(got[0, exact], want[0, exact], rtol=1e-5, equal_nan=True)
        if b:  # the standard deviations: scaled, not recomputed
            for f in ("s2d_std_ps", "d2s_std_ps"):
                i = FEATURES.index(f)
                assert np.isclose(got[0, i], a * original[0, i], rtol=1e-6)


def test_resizing_leaves_counts_timing_and_flags_alone() -> None:
    X = vectorized(traffic(1, 0))
    Y = resized(X, np.random.default_rng(1))
    sizes = ("_ps", "_size", "bytes", "byte_share", "bytes_per_s", "payload_mean")
    kept = [i for i, f in enumerate(FEATURES) if not any(s in f for s in sizes)]
    np.testing.assert_array_equal(Y[:, kept], X[:, kept])
    changed = [i for i, f in enumerate(FEATURES) if f.endswith("_size") and not np.isnan(X[0, i])
               and X[0, i] != 0]
    assert changed and (Y[0, changed] != X[0, changed]).all()
    # a packet without payload stays one, a missing packet stays missing
    for i, f in enumerate(FEATURES):
        if f.startswith("pkt") and f.endswith("_size") and (X[0, i] == 0 or np.isnan(X[0, i])):
            assert Y[0, i] == X[0, i] or (np.isnan(Y[0, i]) and np.isnan(X[0, i]))


def test_augmented_keeps_each_rows_weight_and_is_seeded() -> None:
    X = np.vstack([vectorized(traffic(1, 0)), vectorized(traffic(2, 5))])
    y, w = np.array([1, 0]), np.array([0.25, 1.75])
    Xa, ya, wa = augmented(X, y, w, seed=3, copies=2)
    assert Xa.shape == (6, len(FEATURES)) and ya.tolist() == [1, 0] * 3
    assert np.isclose(wa[ya == 1].sum(), 0.25) and np.isclose(wa.sum(), w.sum())
    np.testing.assert_array_equal(Xa[:2], X)
    np.testing.assert_array_equal(Xa, augmented(X, y, w, seed=3, copies=2)[0])
    assert not np.array_equal(Xa, augmented(X, y, w, seed=4, copies=2)[0])
    assert augmented(X, y, w, seed=3, copies=0)[0] is X


def test_augmented_copies_only_the_rows_asked_for() -> None:
    X = np.vstack([vectorized(traffic(1, 0)), vectorized(traffic(2, 5))])
    y, w = np.array([1, 0]), np.array([0.25, 1.75])
    Xa, ya, wa = augmented(X, y, w, seed=3, copies=3, rows=np.array([False, True]))
    assert ya.tolist() == [1, 0, 0, 0, 0]
    assert wa.tolist() == [0.25, 1.75 / 4, 1.75 / 4, 1.75 / 4, 1.75 / 4]
    np.testing.assert_array_equal(Xa[:2], X)
    assert augmented(X, y, w, seed=3, rows=np.zeros(2, dtype=bool))[0] is X
