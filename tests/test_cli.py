"""The `flowguard` command as a user runs it: real process, real exit codes, stdout and stderr apart."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowguard.model import CLASSES
from flowguard.triage import OUTPUT_FIELDS

FIELD_TYPES = {
    "pcap": str, "src_ip": str, "src_port": int, "dst_ip": str, "dst_port": int, "protocol": int,
    "first_seen_ms": int, "last_seen_ms": int, "packets": int, "bytes": int,
    "application_name": str, "verdict": str, "score": float, "scores": dict, "model": str,
    "reasons": list,
}


def flowguard(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowguard", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def one_sample() -> Path:
    return sorted(Path(__file__).resolve().parents[1].joinpath("pcaps").glob("mining-*.pcap"))[0]


@pytest.fixture()
def bad_inputs(tmp_path: Path, one_sample: Path) -> dict[str, Path]:
    not_capture = tmp_path / "notes.pcap"
    not_capture.write_text("this is not a capture\n")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.pcap"
    data = one_sample.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    no_captures = tmp_path / "docs"
    no_captures.mkdir()
    (no_captures / "README.txt").write_text("nothing to see\n")
    return {"missing": tmp_path / "missing.pcap", "not_capture": not_capture, "empty": empty,
            "truncated": truncated, "no_captures": no_captures}


def test_jsonl_contract(sample_pcaps: list[Path], classifier) -> None:
    proc = flowguard("triage", "--format", "jsonl", *sample_pcaps)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines
    seen = set()
    for line in lines:
        obj = json.loads(line)
        assert list(obj) == list(OUTPUT_FIELDS)
        for name, typ in FIELD_TYPES.items():
            assert isinstance(obj[name], typ), (name, obj[name])
        assert obj["verdict"] in CLASSES
        assert list(obj["scores"]) == list(CLASSES)
        assert obj["score"] == obj["scores"][obj["verdict"]]
        assert abs(sum(obj["scores"].values()) - 1) < 1e-3
        assert obj["model"] == classifier.version
        assert obj["first_seen_ms"] <= obj["last_seen_ms"]
        if obj["verdict"] == "benign":
            assert obj["reasons"] == []
        else:  # a flagged flow says why: its top features, largest contribution first
            assert 1 <= len(obj["reasons"]) <= 3
            contributions = [r["contribution"] for r in obj["reasons"]]
            assert contributions == sorted(contributions, reverse=True) and contributions[0] > 0
            assert all(set(r) == {"feature", "value", "contribution"} for r in obj["reasons"])
        seen.add(obj["pcap"])
    assert seen == {str(p) for p in sample_pcaps}


def test_csv_has_the_same_columns(one_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.csv"
    proc = flowguard("triage", "-f", "csv", "-o", out, one_sample)
    assert proc.returncode == 0 and proc.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows
    expected = [f for f in OUTPUT_FIELDS if f not in ("scores", "reasons")]
    expected += [f"score_{c}" for c in CLASSES] + ["reasons"]
    assert list(rows[0]) == expected


def test_table_lists_flagged_flows_and_summary(one_sample: Path) -> None:
    proc = flowguard("triage", one_sample)
    assert proc.returncode == 0
    assert "Flagged flows" in proc.stdout and "stratum_mining" in proc.stdout
    assert "Flows per verdict" in proc.stdout and one_sample.name in proc.stdout


def test_directory_input_finds_captures(tmp_path: Path, one_sample: Path) -> None:
    shutil.copy(one_sample, tmp_path / "a.pcap")
    (tmp_path / "a.labels.json").write_text("{}")
    proc = flowguard("triage", "-f", "jsonl", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {json.loads(x)["pcap"] for x in proc.stdout.splitlines()} == {str(tmp_path / "a.pcap")}


@pytest.mark.parametrize(
    "case, message",
    [("missing", "no such file"), ("not_capture", "not a capture file"),
     ("empty", "empty file"), ("truncated", "truncated or corrupt capture"),
     ("no_captures", "no capture files")],
)
def test_bad_input_is_one_line_and_others_still_run(
    case: str, message: str, bad_inputs: dict[str, Path], one_sample: Path
) -> None:
    bad = bad_inputs[case]
    proc = flowguard("triage", "-f", "jsonl", bad, one_sample)
    assert proc.returncode == 1
    err_lines = proc.stderr.strip().splitlines()
    assert len(err_lines) == 1, proc.stderr
    assert str(bad) in err_lines[0] and message in err_lines[0]
    assert "Traceback" not in proc.stderr
    pcaps = {json.loads(x)["pcap"] for x in proc.stdout.splitlines()}
    assert str(one_sample) in pcaps  # the good file was still triaged
    if case == "truncated":
        assert str(bad) in pcaps  # and what could be read of the cut file was too


def test_all_bad_inputs_at_once(bad_inputs: dict[str, Path]) -> None:
    proc = flowguard("triage", *bad_inputs.values())
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == len(bad_inputs)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [["triage"], ["triage", "--format", "xml", "x.pcap"], ["triage", "--bogus", "x.pcap"], ["frobnicate"]],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    proc = flowguard(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_bad_model_exits_2(tmp_path: Path, one_sample: Path) -> None:
    proc = flowguard("triage", "--model", tmp_path, one_sample)
    assert proc.returncode == 2
    assert "--model" in proc.stderr and "not a model directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unwritable_output_exits_2(tmp_path: Path, one_sample: Path) -> None:
    proc = flowguard("triage", "-o", tmp_path / "no" / "such" / "dir.jsonl", one_sample)
    assert proc.returncode == 2 and "--output" in proc.stderr


def test_model_info_prints_metadata() -> None:
    proc = flowguard("model", "info")
    assert proc.returncode == 0
    meta = json.loads(proc.stdout)
    assert meta["classes"] == list(CLASSES) and meta["model_sha256"]


def test_host_view_correlates_mining_and_tunnel(tmp_path: Path) -> None:
    """One machine that mines and holds a reverse tunnel is reported as such."""
    sample = Path(__file__).resolve().parents[1] / "pcaps" / "host-mining-and-tunnel.pcap"
    hosts_file = tmp_path / "hosts.json"
    proc = flowguard("triage", "--hosts", hosts_file, sample)
    assert proc.returncode == 0, proc.stderr
    assert "mining + tunnel" in proc.stdout
    hosts = json.loads(hosts_file.read_text())
    labels = json.loads(sample.with_suffix(".labels.json").read_text())
    host = labels["conversations"][0]["client_ip"]
    assert hosts[0]["host"] == host and hosts[0]["correlated"] is True
    assert set(hosts[0]["flagged_flows"]) == {"stratum_mining", "reverse_tunnel"}


def test_eager_tunnels_judge_with_the_models_eager_thresholds(tmp_path: Path) -> None:
    """--eager-tunnels loads the thresholds the model chose for it: here, ones no tunnel reaches,
    so the reverse tunnel flagged eagerly by the model's own thresholds, and held, is not."""
    from flowguard.model import default_model_dir

    sample = Path(__file__).resolve().parents[1] / "pcaps" / "reverse-ssh-443-shell.pcap"
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model)
    meta = json.loads((model / "metadata.json").read_text())

    def tunnels(*args: str | Path) -> int:
        proc = flowguard("triage", "-f", "jsonl", "--model", model, *args, sample)
        assert proc.returncode == 0, proc.stderr
        return sum(json.loads(line)["verdict"] == "reverse_tunnel" for line in proc.stdout.splitlines())

    assert tunnels("--eager-tunnels") >= 1
    never = {"benign": 0.0, "stratum_mining": 0.5, "reverse_tunnel": 1.0}
    meta["eager_thresholds"] = {"offline": never, "live": never, "opening": never}
    (model / "metadata.json").write_text(json.dumps(meta))
    assert tunnels("--eager-tunnels") == 0
    assert tunnels() >= 1  # held: the model's own thresholds
