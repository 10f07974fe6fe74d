"""training.augment: a resized row is what vectorize gives for the same traffic with its messages
resized."""

from __future__ import annotations

import numpy as np

from flowguard.features import FEATURES, SPLT_PACKETS, vectorize
from tests.test_features import flow
from training.augment import augmented, resized, wrapped

# the first packets of a flow: (direction, payload bytes, gap ms); every payload packet has PSH
PACKETS = [(0, 0, 0), (1, 0, 20), (0, 0, 1), (0, 180, 2), (1, 400, 21), (0, 0, 1), (1, 650, 30),
           (0, 150, 900), (1, 0, 1), (0, 0, 15), (1, 520, 4000), (0, 0, 1)]


def traffic(a: float, b: float) -> object:
    """A flow record of PACKETS with each payload resized to a * size + b."""
    packets = [(d, max(a * s + b, 1) if s > 0 else 0, g) for d, s, g in PACKETS]
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


def test_a_message_shrunk_past_its_size_keeps_a_byte() -> None:
    """A negative `b` stands for the same messages without a TLS record around them (22-29 bytes
    each); a message smaller than that keeps one byte, a packet without payload stays one."""
    original = vectorized(traffic(1, 0))
    for a, b in ((1.0, -30.0), (0.2, -30.0), (0.1, -30.0)):  # whole bytes (vectorized)
        got = resized(original, np.random.default_rng(0), scale=(a, a), offset=(b, b))
        want = vectorized(traffic(a, b))
        # sizes per packet and their extremes are what the shrunk traffic gives
        exact = [i for i, f in enumerate(FEATURES)
                 if f.endswith(("_size", "_min_ps", "_max_ps")) or f.startswith("first_n")]
        np.testing.assert_allclose(got[0, exact], want[0, exact], rtol=1e-5, equal_nan=True)
        assert np.nanmin(np.abs(got[0, [FEATURES.index(f"pkt{i:02d}_size")
                                        for i in range(1, SPLT_PACKETS + 1)]])) == 0
        # byte counts and means: at least a byte a payload packet, at most what the traffic has
        # (the bytes the floor adds back are not counted)
        payloads = sum(s > 0 for _, s, _ in PACKETS)
        assert payloads <= got[0, FEATURES.index("bytes")] <= want[0, FEATURES.index("bytes")] + 1e-3
        for f in ("s2d_mean_ps", "d2s_mean_ps"):
            assert 0 < got[0, FEATURES.index(f)] <= want[0, FEATURES.index(f)] * (1 + 1e-5)
        assert not np.isnan(got[0, ~np.isnan(original[0])]).any()
        if b + 180 * a > 1 and b + 150 * a > 1:  # nothing clipped: every feature follows
            close = [i for i, f in enumerate(FEATURES) if not f.endswith("_std_ps")]
            np.testing.assert_allclose(got[0, close], want[0, close], rtol=1e-5, equal_nan=True)


def test_ratio_keeps_the_directions_factors_close() -> None:
    """With `ratio`, each copy's destination factor is its source factor times 1/√ratio to √ratio:
    which side sends the larger messages turns around less than with independent draws."""
    X = np.repeat(vectorized(traffic(1, 0)), 2000, axis=0)
    s2d, d2s = FEATURES.index("s2d_mean_ps"), FEATURES.index("d2s_mean_ps")
    for ratio, bound in ((None, 9.0), (3.0, 3 ** 0.5), (1.5, 1.5 ** 0.5)):
        Y = resized(X, np.random.default_rng(5), offset=(0, 0), ratio=ratio)
        a_s2d, a_d2s = Y[:, s2d] / X[:, s2d], Y[:, d2s] / X[:, d2s]
        apart = a_d2s / a_s2d
        assert (apart <= bound * 1.001).all() and (apart >= 1 / bound / 1.001).all()
        assert apart.max() > bound * 0.9 and apart.min() < 1.1 / bound  # the whole range is used
        assert a_s2d.min() < 0.34 and a_s2d.max() > 2.9  # each factor still spans SCALE


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


# a cleartext connection: (direction, payload bytes, gap ms, PSH); every packet without payload
# acknowledges the other end's last payload (what wrapped assumes of packets without a sign)
CLEAR = [(0, 0, 0, False), (1, 0, 30, False), (0, 0, 2, False), (0, 160, 3, True),
         (1, 420, 31, True), (0, 0, 1, False), (1, 650, 4000, True), (0, 0, 2, False),
         (0, 150, 900, True), (1, 90, 30, True), (0, 0, 1, False), (1, 520, 3000, True),
         (0, 0, 2, False), (1, 500, 2500, True), (0, 0, 1, False), (0, 150, 700, True),
         (1, 90, 31, True), (0, 0, 1, False), (1, 510, 4000, True), (0, 0, 1, False),
         (0, 150, 800, True), (1, 90, 30, True), (0, 0, 2, False), (1, 505, 3000, True)]
# a TLS 1.2 handshake as wrapped takes it: the ClientHello (its gap NaN), the rest, and the gap of
# the first message after it (direction -1)
TLS12 = [(0, 517, np.nan, True), (1, 0, 30, False), (1, 1448, 1, False), (1, 1200, 0, True),
         (0, 0, 2, False), (0, 126, 1, True), (1, 242, 31, True), (-1, 0, 2, False)]


def record(packets: list[tuple[int, float, float, bool]]) -> object:
    """The flow record nfstream gives for these packets (payload accounting)."""
    times = np.cumsum([g for _, _, g, _ in packets])
    stats: dict[str, object] = {}
    for d, name in ((0, "src2dst"), (1, "dst2src")):
        sizes = np.array([s for dd, s, _, _ in packets if dd == d], dtype=float)
        gaps = np.diff(times[[i for i, p in enumerate(packets) if p[0] == d]])
        stats |= {f"{name}_packets": len(sizes), f"{name}_bytes": sizes.sum(),
                  f"{name}_min_ps": sizes.min(), f"{name}_mean_ps": sizes.mean(),
                  f"{name}_stddev_ps": sizes.std(ddof=1), f"{name}_max_ps": sizes.max(),
                  f"{name}_mean_piat_ms": gaps.mean(), f"{name}_stddev_piat_ms": gaps.std(ddof=1),
                  f"{name}_max_piat_ms": gaps.max(),
                  f"{name}_psh_packets": sum(p[3] for p in packets if p[0] == d)}
    gaps = np.diff(times)
    first = packets[:SPLT_PACKETS]
    return flow(
        bidirectional_packets=len(packets), bidirectional_duration_ms=times[-1],
        bidirectional_bytes=sum(s for _, s, _, _ in packets),
        bidirectional_mean_piat_ms=gaps.mean(), bidirectional_stddev_piat_ms=gaps.std(ddof=1),
        bidirectional_max_piat_ms=gaps.max(), application_name="Unknown",
        splt_direction=[p[0] for p in first], splt_ps=[p[1] for p in first],
        splt_piat_ms=[p[2] for p in first], **stats)


def test_wrapped_rows_are_the_traffic_carried_in_tls() -> None:
    original = vectorize([record(CLEAR)])  # type: ignore[list-item]
    got = wrapped(original, np.random.default_rng(0), handshakes=[TLS12])
    first_message = CLEAR[3]
    carried = [*CLEAR[:3], (0, 517, first_message[2], True), *TLS12[1:-1],
               (*first_message[:2], TLS12[-1][2], first_message[3]), *CLEAR[4:]]
    want = vectorize([record(carried)])  # type: ignore[list-item]
    np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)


def test_wrapping_leaves_rows_without_their_connections_start() -> None:
    middle = vectorize([record(CLEAR[5:])])  # type: ignore[list-item]
    np.testing.assert_array_equal(wrapped(middle, np.random.default_rng(0)), middle)


def test_drawn_handshakes_hold_together() -> None:
    rng = np.random.default_rng(5)
    X = np.repeat(vectorize([record(CLEAR)]), 50, axis=0)  # type: ignore[list-item]
    Y = wrapped(X, rng)
    i = {f: FEATURES.index(f) for f in FEATURES}
    assert (Y[:, i["packets"]] > X[:, i["packets"]]).all()
    assert (Y[:, i["pkt04_size"]] >= 200).all()  # the ClientHello
    assert (Y[:, i["d2s_max_ps"]] >= 900 / 4).all() and (Y[:, i["s2d_packets"]] > 12).all()
    np.testing.assert_allclose(Y[:, i["packets"]], Y[:, i["s2d_packets"]] + Y[:, i["d2s_packets"]])
    assert (Y[:, i["duration_s"]] >= X[:, i["duration_s"]]).all()
    assert len({tuple(row) for row in Y[:, [i["pkt05_size"], i["pkt06_size"]]]}) > 5


def test_drawn_values_are_whole_where_captured_ones_are() -> None:
    """nfstream reports whole bytes and milliseconds: a copy whose sizes or gaps held fractions
    would be told from captured traffic by them (left out of training, TLS mining then looked like
    nothing drawn, and benign, by the handshake's gaps alone)."""
    rng = np.random.default_rng(3)
    X = np.repeat(vectorize([record(CLEAR)]), 200, axis=0)  # type: ignore[list-item]
    Y = wrapped(resized(X, rng, offset=(-30.0, 60.0), ratio=3.0), rng)
    whole = [f for f in FEATURES if f.startswith("pkt") or "_pay0" in f
             or f.endswith(("_min_ps", "_max_ps", "max_piat_ms")) or f == "bytes"]
    values = Y[:, [FEATURES.index(f) for f in whole]]
    values = values[~np.isnan(values)]
    assert len(values) > 200 * 40
    np.testing.assert_array_equal(values, np.round(values))
    gaps = Y[:, [FEATURES.index(f"pkt{i:02d}_gap_ms") for i in range(4, 12)]]
    assert {0.0, 1.0} <= set(gaps.ravel().tolist())  # the drawn sub-millisecond gaps read 0 or 1
