"""A short real lab run: namespaces, OpenSSH, the stratum emulators, nginx, tcpdump (root only)."""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from flowguard.capture import CaptureOptions
from flowguard.pcapfile import inspect_capture
from training.dataset import label_run
from training.lab.netns import need_root
from training.lab.run import plan

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = need_root()
    if why:
        pytest.skip(f"lab smoke test skipped: {why}")
    from training.lab.run import run_lab

    out = tmp_path_factory.mktemp("lab") / "smoke"
    run_lab(out, "smoke", duration=40, delay=10, jitter=1, loss=0, seed=5, net=199)
    return out


def test_capture_is_whole_and_labelled(smoke_run: Path) -> None:
    info = inspect_capture(smoke_run / "capture.pcap")
    assert info.complete and info.packets > 100
    labels = json.loads((smoke_run / "labels.json").read_text())
    families = Counter(s["label"] for s in labels["sessions"])
    assert families == {"stratum_mining": 2, "reverse_tunnel": 1, "benign": 5}
    # each mining session's pool gave its account of it: the miner connected and was sent work
    pools = [s.get("pool") for s in labels["sessions"] if s["label"] == "stratum_mining"]
    assert all(p and p["connections"] >= 1 and p["jobs"] >= 1 for p in pools), pools
    assert all("pool" not in s for s in labels["sessions"] if s["label"] != "stratum_mining")


def test_every_conversation_made_flows(smoke_run: Path) -> None:
    flows, tags, _ = label_run(smoke_run, CaptureOptions())
    labels = json.loads((smoke_run / "labels.json").read_text())
    sessions_seen = {t[1] for t in tags}
    assert sessions_seen == {c["session"] for c in labels["conversations"]}
    by_scenario = {t[2]: f for f, t in zip(flows, tags, strict=True)}
    # real protocols on the wire: nDPI recognises them
    assert by_scenario["mining-btc-clear"].application_name == "Mining"
    assert by_scenario["https-curl"].application_name.startswith("TLS")
    # unused pre-connections: a handshake (and one small request), then a close, each short
    preconnect = [f for f, t in zip(flows, tags, strict=True) if t[2] == "tls-preconnect"]
    assert len(preconnect) == 2 and all(f.application_name.startswith("TLS") for f in preconnect)
    assert all(6 <= f.bidirectional_packets < 30 for f in preconnect)
    tunnel = next(f for f, t in zip(flows, tags, strict=True) if t[0] == "reverse_tunnel")
    assert tunnel.application_name == "SSH"
    # the tunnel was used from outside: keystrokes and echoes came through it
    assert tunnel.bidirectional_packets > 60


def test_triage_flags_the_lab_miners(smoke_run: Path, classifier) -> None:
    from flowguard.triage import classify_batch

    flows, tags, _ = label_run(smoke_run, CaptureOptions())
    verdicts = classify_batch("smoke", flows, classifier)
    mining = [v for v, t in zip(verdicts, tags, strict=True) if t[0] == "stratum_mining"]
    benign = [v for v, t in zip(verdicts, tags, strict=True) if t[0] == "benign"]
    shown = [(v.dst_port, v.packets, v.verdict, v.scores["stratum_mining"]) for v in mining]
    # a 40 s run gives short flows: each miner must outscore every benign flow, and the run's
    # miners must be flagged (one may fall just under the shipped threshold)
    assert mining and sum(v.verdict == "stratum_mining" for v in mining) >= max(1, len(mining) - 1), shown
    worst_miner = min(v.scores["stratum_mining"] for v in mining)
    assert all(v.scores["stratum_mining"] < worst_miner for v in benign), shown
    assert not any(v.verdict == "stratum_mining" for v in benign)


def test_a_link_without_delay_is_a_kernel_bridge(tmp_path: Path) -> None:
    """--delay 0 (no jitter, no loss): the wan namespace bridges in the kernel, with no userspace
    hop, and the outside is reachable through it."""
    why = need_root()
    if why:
        pytest.skip(f"lab topology test skipped: {why}")
    from training.lab.netns import Topology

    topo = Topology(198, tmp_path, delay_ms=0, jitter_ms=0)
    assert topo.direct and not Topology(198, tmp_path, delay_ms=0, jitter_ms=0.1).direct
    try:
        topo.up(inside_hosts=2, outside_hosts=2)
        assert [name for name, _ in topo.procs] == []  # no wanbridge process
        assert "master br0" in topo.run("wan", "ip", "link", "show", "veth0").stdout
        # a TCP connect to a closed port outside: refused (the RST came back through the bridge)
        probe = ("import socket; s = socket.socket(); s.settimeout(3)\n"
                 f"try:\n  s.connect(('{topo.outside_ip(1)}', 9))\n"
                 "except ConnectionRefusedError:\n  print('refused')")
        assert topo.run("in", sys.executable, "-c", probe).stdout.strip() == "refused"
    finally:
        topo.down()


def test_the_lan_plan_has_faster_jobs_and_the_other_plans_keep_theirs() -> None:
    """The `lan` plan (for a direct link) draws job intervals from 2 s up; the plans behind the
    shipped runs still draw theirs from 10 s up, from the same seeds as before."""
    def job_mins(kind: str) -> list[float]:
        return [float(s.params["job_min"]) for s in plan(kind, random.Random(117), 600, "rx")
                if s.label == "stratum_mining" and "job_min" in s.params]

    lan = plan("lan", random.Random(117), 600, "rx")
    assert {s.label for s in lan} == {"stratum_mining", "reverse_tunnel", "benign"}
    assert min(job_mins("lan")) < 10 and all(2 <= j <= 40 for j in job_mins("lan"))
    assert all(10 <= j <= 40 for j in job_mins("train") + job_mins("breadth"))
    assert sum(s.scenario.startswith(("ws-", "longpoll-", "json-rpc-")) for s in lan) == 24


def test_the_shells_plan_adds_cleartext_reverse_shells_last() -> None:
    """`shells` runs bash reverse shells over plain TCP as well as over TLS; they are drawn after
    every other family, so the plans behind the shipped runs are unchanged."""
    shells = plan("shells", random.Random(120), 600, "rx")
    clear = [s for s in shells if s.scenario == "reverse-shell-clear"]
    assert len(clear) == 10 and all(s.params["tls"] is False and s.label == "reverse_tunnel" for s in clear)
    assert shells[-len(clear):] == clear
    assert any(s.scenario == "reverse-shell-tls" for s in shells)
    for kind in ("train", "breadth", "lan"):
        assert not any(s.scenario == "reverse-shell-clear" for s in plan(kind, random.Random(1), 600, "rx"))


def test_the_push_plan_adds_push_channels_with_their_own_timings() -> None:
    """`push` runs push-notification channels (over TCP, TLS and stunnel) beside mining; each has
    its heartbeat and notification intervals, and the older plans draw as before."""
    push = plan("push", random.Random(125), 600, "rx")
    channels = [s for s in push if s.scenario.startswith("push-")]
    assert len(channels) == 24 and all(s.label == "benign" and s.params["kind"] == "push" for s in channels)
    assert {s.scenario for s in channels} == {"push-clear", "push-tls", "push-stunnel"}
    assert all(20 <= s.params["heartbeat_s"] <= 200 and 30 <= s.params["notify_s"] <= 300 for s in channels)
    assert sum(s.label == "stratum_mining" for s in push) == 15
    for kind in ("train", "breadth", "lan", "shells"):
        assert not any(s.scenario.startswith("push-") for s in plan(kind, random.Random(1), 600, "rx"))


def test_heldout_scores_sessions_by_tls_variant(smoke_run: Path, tmp_path: Path) -> None:
    """training.heldout: every session counted once per view under its class and variant."""
    import shutil

    from flowguard.model import default_model_dir
    from training.heldout import score

    run = tmp_path / "smoke"
    run.mkdir()
    shutil.copy(smoke_run / "capture.pcap", run / "capture.pcap")
    labels = json.loads((smoke_run / "labels.json").read_text())
    marked = next(s for s in labels["sessions"] if s["label"] == "stratum_mining")
    marked["params"]["tls_relay"] = "go"  # regrouped only: the capture is the same
    (run / "labels.json").write_text(json.dumps(labels))
    report = score(default_model_dir(), [run])
    assert set(report) == {"stratum_mining", "reverse_tunnel", "benign"}
    assert report["stratum_mining"]["go"]["full"]["sessions"] == 1
    full = {c: sum(v["full"]["sessions"] for v in report[c].values()) for c in report}
    assert full == Counter(s["label"] for s in labels["sessions"])
    mining_found = sum(v["full"]["flagged"] for v in report["stratum_mining"].values())
    assert mining_found >= 1 and report["benign"]["default"]["full"]["flagged"] == 0
    for views in (v for c in report.values() for v in c.values()):
        assert set(views) <= {"full", "first_20_packets", "live_windows", "live_in_time"}
        assert all(0 <= x["flagged"] <= x["sessions"] for x in views.values())
    for cls in ("stratum_mining", "reverse_tunnel"):  # in time: flagged live, and soon enough
        for views in report[cls].values():
            assert views["live_in_time"]["sessions"] == views["live_windows"]["sessions"]
            assert views["live_in_time"]["flagged"] <= views["live_windows"]["flagged"]
    assert sum(v["live_in_time"]["flagged"] for v in report["stratum_mining"].values()) >= 1
    assert "live_in_time" not in report["benign"]["default"]
    by_scenario = score(default_model_dir(), [run], by="scenario")
    assert {(c, sc) for c, v in by_scenario.items() for sc in v} == {
        (s["label"], s["scenario"]) for s in labels["sessions"]}


def test_pipeline_scores_sessions_offline_and_live_held_and_eager(smoke_run: Path) -> None:
    """training.pipeline: every session counted once under its label and kind, in the four ways
    flowguard gives verdicts; with the same thresholds, holding tunnel verdicts never flags more
    than eager does, and mining verdicts are never held."""
    from flowguard.model import FlowClassifier, default_model_dir
    from training.pipeline import kind, score

    labels = json.loads((smoke_run / "labels.json").read_text())
    report = score(default_model_dir(), [smoke_run])
    assert {(c, k) for c, v in report.items() for k in v} == {
        (s["label"], kind(s)) for s in labels["sessions"]}
    eager = FlowClassifier.load(default_model_dir(), lazy=True).metadata.eager_thresholds
    for counts in (v for c in report.values() for v in c.values()):
        for view in ("offline", "live"):
            assert 0 <= counts[f"{view}_held"] <= counts["sessions"]
            assert 0 <= counts[f"{view}_eager"] <= counts["sessions"]
            if eager is None:
                assert counts[f"{view}_held"] <= counts[f"{view}_eager"]
    for counts in report["stratum_mining"].values():
        for view in ("offline", "live"):
            if eager is None or _same_mining_thresholds(default_model_dir(), view == "live"):
                assert counts[f"{view}_held"] == counts[f"{view}_eager"]
    assert sum(c["offline_held"] for c in report["stratum_mining"].values()) >= 1
    assert all(c["offline_eager"] == 0 for c in report["benign"].values())
    for c in report["reverse_tunnel"].values():
        assert c["live_in_time_held"] <= min(c["used"], c["live_held"])


def _same_mining_thresholds(model: Path, live: bool) -> bool:
    from flowguard.model import FlowClassifier

    held, eager = (FlowClassifier.load(model, live=live, lazy=True, eager_tunnels=e).metadata
                   for e in (False, True))
    return all((a.get("stratum_mining") if a else None) == (b.get("stratum_mining") if b else None)
               for a, b in ((held.thresholds, eager.thresholds),
                            (held.opening_thresholds, eager.opening_thresholds)))


def test_a_run_stopped_with_sigterm_takes_its_namespaces_down(tmp_path: Path) -> None:
    """kill (a job runner, a timeout) stops a run as Ctrl-C does: nothing of it is left running."""
    import signal
    import subprocess
    import time

    why = need_root()
    if why:
        pytest.skip(f"lab run skipped: {why}")
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.lab.run", "--plan", "smoke", "--duration", "60",
         "--net", "197", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def namespaces() -> list[str]:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return [line.split()[0] for line in listed.splitlines() if line.startswith("fg197-")]

    deadline = time.monotonic() + 60
    while not (out / "capture.pcap").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None and namespaces(), "the run did not start"
    time.sleep(2)  # sessions under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped" in err and not (out / "labels.json").exists()
    assert namespaces() == []
