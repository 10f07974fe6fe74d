"""Golden files pin the verdicts of the sample captures (regenerate: python -m tests.golden)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.golden import GOLDEN, PCAPS, verdict_rows

SAMPLES = sorted(PCAPS.glob("*.pcap"))


@pytest.mark.parametrize("pcap", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_verdicts_match_golden(pcap: Path, classifier) -> None:
    golden_file = GOLDEN / f"{pcap.stem}.csv"
    assert golden_file.is_file(), f"no golden file for {pcap.name}: run python -m tests.golden"
    expected = list(csv.DictReader(golden_file.open()))
    actual = verdict_rows(pcap, classifier)
    key = ("src_ip", "src_port", "dst_ip", "dst_port", "first_seen_ms", "packets", "verdict")
    assert [tuple(r[k] for k in key) for r in actual] == [tuple(r[k] for k in key) for r in expected]
    for got, want in zip(actual, expected, strict=True):
        assert abs(float(got["score"]) - float(want["score"])) <= 0.002


@pytest.mark.parametrize("pcap", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_is_flagged_as_labelled(pcap: Path, classifier) -> None:
    """Mining and tunnel samples are flagged as such; benign look-alikes have no flagged flow."""
    label = json.loads(pcap.with_suffix(".labels.json").read_text())["label"]
    labels = set(label) if isinstance(label, list) else {label}
    verdicts = {r["verdict"] for r in verdict_rows(pcap, classifier)}
    if labels == {"benign"}:
        assert verdicts == {"benign"}
    else:
        assert labels - {"benign"} <= verdicts
        assert verdicts <= labels | {"benign"}
