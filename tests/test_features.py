from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from flowguard.features import (
    APP_FAMILIES,
    CATEGORICAL,
    FEATURES,
    PER_DIRECTION_PAYLOADS,
    SPLT_PACKETS,
    app_family,
    vectorize,
)


def flow(**over: object) -> SimpleNamespace:
    """A flow record as nfstream builds it (payload accounting), with a stratum-like shape."""
    base: dict[str, object] = dict(
        src_ip="10.0.0.1", src_port=40000, dst_ip="10.0.0.2", dst_port=3333, protocol=6,
        bidirectional_first_seen_ms=0, bidirectional_last_seen_ms=60_000,
        bidirectional_duration_ms=60_000, bidirectional_packets=40, bidirectional_bytes=8000,
        src2dst_packets=20, src2dst_bytes=3000, dst2src_packets=20, dst2src_bytes=5000,
        src2dst_min_ps=0, src2dst_mean_ps=150.0, src2dst_stddev_ps=40.0, src2dst_max_ps=220,
        dst2src_min_ps=0, dst2src_mean_ps=250.0, dst2src_stddev_ps=90.0, dst2src_max_ps=700,
        bidirectional_mean_piat_ms=1500.0, bidirectional_stddev_piat_ms=900.0,
        bidirectional_max_piat_ms=9000, src2dst_mean_piat_ms=3000.0, src2dst_stddev_piat_ms=1000.0,
        src2dst_max_piat_ms=9000, dst2src_mean_piat_ms=3000.0, dst2src_stddev_piat_ms=1000.0,
        dst2src_max_piat_ms=9000, src2dst_syn_packets=1, src2dst_psh_packets=15,
        src2dst_rst_packets=0, src2dst_fin_packets=1, dst2src_syn_packets=1,
        dst2src_psh_packets=16, dst2src_rst_packets=0, dst2src_fin_packets=1,
        application_is_guessed=0, application_name="Mining",
        splt_direction=[0, 1, 0, 0, 1, 0, 1] + [-1] * (SPLT_PACKETS - 7),
        splt_ps=[0, 0, 0, 180, 400, 0, 650] + [-1] * (SPLT_PACKETS - 7),
        splt_piat_ms=[0, 20, 0, 1, 21, 0, 30] + [-1] * (SPLT_PACKETS - 7),
    )
    base.update(over)
    return SimpleNamespace(**base)


def row(x: np.ndarray, name: str) -> float:
    return float(x[0, FEATURES.index(name)])


def test_matrix_shape_names_and_dtype() -> None:
    x = vectorize([flow(), flow()])
    assert x.shape == (2, len(FEATURES))
    assert x.dtype == np.float32
    assert len(set(FEATURES)) == len(FEATURES)
    assert set(CATEGORICAL) <= set(FEATURES)
    assert vectorize([]).shape == (0, len(FEATURES))


def test_needed_leaves_the_costly_groups_nobody_reads_nan() -> None:
    records = [flow(), flow(application_name="TLS", splt_ps=[0, 0, 0, 517, 1400, 0, 90] + [-1] * 13)]
    whole = vectorize(records)
    payloads = [FEATURES.index(f) for f in PER_DIRECTION_PAYLOADS]
    app = FEATURES.index("app_family")
    assert not np.isnan(whole[:, payloads[0]]).any() and not np.isnan(whole[:, app]).any()
    others = [i for i in range(len(FEATURES)) if i not in payloads and i != app]
    for needed, computed in (({"packets"}, []), ({"app_family"}, [app]),
                             ({"d2s_pay02_size"}, payloads), (set(FEATURES), [*payloads, app])):
        x = vectorize(records, needed)
        np.testing.assert_array_equal(x[:, others], whole[:, others])
        np.testing.assert_array_equal(x[:, computed], whole[:, computed])
        skipped = [i for i in [*payloads, app] if i not in computed]
        assert np.isnan(x[:, skipped]).all()


def test_derived_values() -> None:
    x = vectorize([flow()])
    assert row(x, "duration_s") == 60.0
    assert row(x, "packets_per_min") == 40.0
    assert row(x, "s2d_packet_share") == 0.5
    assert row(x, "s2d_psh_ratio") == 0.75
    assert row(x, "app_family") == APP_FAMILIES.index("Mining")


def test_first_packets_signed_by_direction_and_missing_as_nan() -> None:
    x = vectorize([flow()])
    assert row(x, "pkt04_size") == 180.0  # client to server: positive
    assert row(x, "pkt05_size") == -400.0  # server to client: negative
    assert math.isnan(row(x, "pkt08_size"))  # the flow had 7 packets
    assert row(x, "pkt05_gap_ms") == 21.0
    assert row(x, "first_n") == 7
    assert row(x, "first_payload_pkts") == 3
    assert row(x, "first_dir_changes") == 5
    assert row(x, "first_server_speaks_first") == 0.0



def test_each_directions_payloads_in_its_own_order() -> None:
    x = vectorize([flow()])
    assert row(x, "s2d_pay01_size") == 180.0  # the client's first payload (packet 4)
    assert math.isnan(row(x, "s2d_pay02_size"))  # it sent one
    assert row(x, "d2s_pay01_size") == 400.0
    assert row(x, "d2s_pay02_size") == 650.0
    assert math.isnan(row(x, "d2s_pay03_size"))


def test_packets_crossing_on_the_wire_leave_per_direction_payloads_alone() -> None:
    """A TLS 1.3 server's session ticket and the client's first request race each other: which
    passes the capture point first changes the interleaved columns, not the per-direction ones."""
    head = ([0, 1, 0], [0, 0, 0], [0, 1, 1])
    one = flow(splt_direction=[*head[0], 0, 1, 1, 0] + [-1] * (SPLT_PACKETS - 7),
               splt_ps=[*head[1], 332, 510, 510, 90] + [-1] * (SPLT_PACKETS - 7),
               splt_piat_ms=[*head[2], 1, 0, 0, 2] + [-1] * (SPLT_PACKETS - 7))
    other = flow(splt_direction=[*head[0], 1, 1, 0, 0] + [-1] * (SPLT_PACKETS - 7),
                 splt_ps=[*head[1], 510, 510, 332, 90] + [-1] * (SPLT_PACKETS - 7),
                 splt_piat_ms=[*head[2], 1, 0, 0, 2] + [-1] * (SPLT_PACKETS - 7))
    x = vectorize([one, other])
    per_direction = [FEATURES.index(n) for n in FEATURES if "_pay" in n and n.endswith("_size")]
    assert len(per_direction) == 12
    np.testing.assert_array_equal(x[0, per_direction], x[1, per_direction])
    assert x[0, FEATURES.index("pkt04_size")] != x[1, FEATURES.index("pkt04_size")]
    assert row(x[:1], "s2d_pay02_size") == 90.0

def test_one_direction_flow_has_nan_stats_for_the_other() -> None:
    x = vectorize([flow(dst2src_packets=0, dst2src_bytes=0, dst2src_mean_ps=0.0)])
    assert math.isnan(row(x, "d2s_mean_ps"))
    assert math.isnan(row(x, "d2s_psh_ratio"))
    assert row(x, "s2d_mean_ps") == 150.0


def test_addresses_and_ports_do_not_change_features() -> None:
    """Only which end has the lower port counts (from_service_port), never the numbers."""
    a = vectorize([flow()])
    b = vectorize([flow(src_ip="192.0.2.9", dst_ip="198.51.100.7", src_port=50123, dst_port=443)])
    np.testing.assert_array_equal(a, b)
    col = FEATURES.index("from_service_port")
    assert a[0, col] == 0.0
    c = vectorize([flow(src_port=22, dst_port=40000)])  # a window that begins at the server
    assert c[0, col] == 1.0
    np.testing.assert_array_equal(np.delete(a, col, axis=1), np.delete(c, col, axis=1))


def test_app_family_folds_ndpi_names() -> None:
    assert app_family("TLS.Google") == "TLS"
    assert app_family("HTTPS") == "TLS"
    assert app_family("Mining") == "Mining"
    assert app_family("SSH") == "SSH"
    assert app_family("") == "Unknown"
    assert app_family("Skype_Teams") == "Other"
