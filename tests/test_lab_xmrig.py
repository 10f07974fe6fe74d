"""XMRig, a real miner, in the lab (training/lab/xmrig.py, `run --xmrig-share`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ports import free_port
from training.lab import xmrig
from training.lab.netns import LabError, need_root
from training.lab.run import mine_xmrig, plan, xmrig_mining
from training.lab.scenarios import mining
from training.lab.stratum import XMRIG_ALGOS

REPO = Path(__file__).resolve().parents[1]

needs_xmrig = pytest.mark.skipif(not xmrig.available(), reason=xmrig.MISSING)


def sessions(kind: str = "train", seed: int = 3) -> list:
    import random

    return plan(kind, random.Random(seed), 600.0, "t")


def test_the_share_marks_only_monero_miners_on_their_own_host() -> None:
    marked = sessions()
    mine_xmrig(marked, 1.0, seed=3)
    chosen = [s for s in marked if s.params.get("miner") == "xmrig"]
    assert chosen and all(s.body is mining and s.params["dialect"] == "xmr" for s in chosen)
    assert all(s.scenario.startswith("mining-xmrig-") for s in chosen)
    assert len(chosen) == sum(xmrig_mining(s) for s in marked)
    # share 0 leaves the plan as it was; a share outside 0-1 names the option and its range
    plain, untouched = sessions(), sessions()
    mine_xmrig(untouched, 0.0, seed=3)
    assert [s.params for s in untouched] == [s.params for s in plain]
    with pytest.raises(LabError, match="--xmrig-share 1.5: allowed values are 0 to 1"):
        mine_xmrig(sessions(), 1.5, seed=3)


def test_the_command_line_varies_with_the_seed_and_asks_for_tls() -> None:
    a = xmrig.argv("10.0.0.1:443", 100.0, seed=1, tls=True, log=Path("/tmp/x.log"))
    b = xmrig.argv("10.0.0.1:443", 100.0, seed=2, tls=False)
    assert a[:8] == ["chrt", "--idle", "0", "timeout", "-s", "TERM", "100", str(xmrig.XMRIG)]
    assert "--tls" in a and "--tls" not in b
    assert a[a.index("-u") + 1] != b[b.index("-u") + 1]  # wallets differ
    assert a[-2:] == ["--log-file", "/tmp/x.log"]
    assert a[a.index("--cpu-priority") + 1] == "0"  # idle priority: it takes only a spare CPU


def test_the_cpu_cap_holds_its_processes_to_their_share() -> None:
    procs = xmrig.cpu_cap("flowguard-test-cap", cores=0.1)
    if procs is None:
        pytest.skip("no cgroup with a cpu controller can be made here (needs root, cgroup v1 cpu or v2)")
    busy = ("import resource, time\nend = time.monotonic() + 2\nwhile time.monotonic() < end: pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_utime)")
    try:
        out = subprocess.run(["sh", "-c", f'echo $$ > {procs} && exec "$@"', "busy", sys.executable,
                              "-c", busy], capture_output=True, text=True, check=True).stdout
    finally:
        xmrig.release(procs)
    assert float(out) < 0.6  # 2 s of spinning, a tenth of a CPU: about 0.2 s of it
    assert not procs.parent.exists()


@needs_xmrig
@pytest.mark.parametrize("tls", [False, True], ids=["clear", "tls"])
def test_xmrig_mines_against_our_pool(tls: bool, tmp_path: Path, cert) -> None:
    """XMRig logs in to the pool emulator, takes its jobs and has shares accepted: our pool speaks
    the stratum that a real miner speaks (in the clear and over XMRig's own TLS)."""
    port = free_port()
    pool = [sys.executable, "-m", "training.lab.stratum", "pool", "--listen", f"127.0.0.1:{port}",
            "--dialect", "xmr", "--difficulty", "20", "--job-min", "2", "--job-max", "4", "--verbose"]
    if tls:
        pool += ["--tls", "--cert", cert[0], "--key", cert[1]]
    log = tmp_path / "xmrig.log"
    with subprocess.Popen(pool, cwd=REPO, stderr=subprocess.PIPE, text=True) as server:
        try:
            time.sleep(1.0)
            subprocess.run(xmrig.argv(f"127.0.0.1:{port}", 20, seed=4, tls=tls, log=log),
                           check=False, timeout=60)
        finally:
            server.terminate()
        transcript = server.communicate(timeout=10)[1]
    mined = log.read_text()
    logins = re.findall(r'"method":"login".*"agent":"(XMRig/6\.16\.0[^"]*)"', transcript)
    assert logins, transcript[-2000:]
    # our emulator, when it says it is XMRig, offers the algorithms the real one does
    login = json.loads(next(line.split(" < ", 1)[1] for line in transcript.splitlines()
                            if '"method":"login"' in line))
    assert login["params"]["algo"] == XMRIG_ALGOS
    assert re.search(r'"method":"submit".*"algo":"rx/0"', transcript), mined[-2000:]
    assert "accepted (1/0)" in mined, mined[-2000:]
    if tls:
        assert "TLSv1.3" in mined


@needs_xmrig
@pytest.mark.netns
def test_a_lab_run_labels_xmrig_connections(tmp_path: Path) -> None:
    """In a lab run, XMRig (which cannot bind an address) connects from its session's own inside
    address, so its flows are labelled; and it mined (shares accepted)."""
    why = need_root()
    if why:
        pytest.skip(f"lab test skipped: {why}")
    cap = xmrig.cpu_cap("flowguard-test-cap-probe")
    if cap is None:
        pytest.skip(f"lab test skipped: {xmrig.NO_CAP}")
    xmrig.release(cap)
    from flowguard.capture import CaptureOptions
    from training.dataset import label_run
    from training.lab.run import run_lab

    out = tmp_path / "xsmoke"
    run_lab(out, "smoke", duration=30, delay=5, jitter=1, loss=0, seed=5, net=198, xmrig_share=1.0,
            keep_workdir=True)
    labels = json.loads((out / "labels.json").read_text())
    xm = [s["id"] for s in labels["sessions"] if s["params"].get("miner") == "xmrig"]
    assert len(xm) == 1
    _, tags, _ = label_run(out, CaptureOptions())
    assert any(t[1] == xm[0] and t[0] == "stratum_mining" for t in tags)
    workdir = Path(labels["workdir"])
    try:
        assert "accepted (1/0)" in (workdir / "logs" / f"{xm[0]}-xmrig.log").read_text()
        # the pool's own account in labels.json agrees: XMRig's shares were accepted
        pool = next(s["pool"] for s in labels["sessions"] if s["id"] == xm[0])
        assert pool["connections"] >= 1 and pool["accepted"] >= 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
