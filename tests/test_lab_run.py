"""training.lab.run: its record of the machine's load (`watch_load`) and of each pool's account
(`pool_accounts`), and the share flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.lab import run


def test_a_run_records_the_load_and_flags_an_overloaded_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = iter([(3.0, 0, 0), (5.0, 0, 0), (4.0, 0, 0)] + [(4.0, 0, 0)] * 10)
    monkeypatch.setattr(run.os, "getloadavg", lambda: next(loads))
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    calm = run.watch_load(0.03, every=0.01)
    assert calm["cpus"] == 2 and calm["load1_max"] >= 4.0 and not calm["overloaded"]
    monkeypatch.setattr(run.os, "getloadavg", lambda: (45.0, 0, 0))
    busy = run.watch_load(0.02, every=0.01)
    assert busy == {"cpus": 2, "load1_mean": 45.0, "load1_max": 45.0, "overloaded": True}


def test_vardiff_share_gives_mining_pools_a_share_interval() -> None:
    import random

    from training.lab.netns import LabError
    from training.lab.scenarios import mining, mining_nat, vardiff

    def sessions() -> list:
        return run.plan("breadth", random.Random(4), 600.0, "t")

    marked, plain = sessions(), sessions()
    run.retarget_pools(marked, 1.0, seed=4)
    pools = [s for s in marked if s.body in (mining, mining_nat)]
    assert pools and all(10 <= s.params["target_share_s"] <= 60 for s in pools)
    assert all("target_share_s" not in s.params for s in marked if s not in pools)
    assert vardiff(pools[0]) == ["--target-share-s", str(pools[0].params["target_share_s"])]
    untouched = sessions()
    run.retarget_pools(untouched, 0.0, seed=4)
    assert [s.params for s in untouched] == [s.params for s in plain] and vardiff(untouched[0]) == []
    with pytest.raises(LabError, match="--vardiff-share -1: allowed values are 0 to 1"):
        run.retarget_pools(sessions(), -1, seed=4)


def test_slow_miner_share_slows_emulated_miners_only() -> None:
    import random

    from training.lab.netns import LabError
    from training.lab.scenarios import mining, mining_nat

    def sessions() -> list:
        return run.plan("train", random.Random(6), 600.0, "t")

    plain, slowed = sessions(), sessions()
    run.slow_miners(slowed, 1.0, seed=6)
    for before, after in zip(plain, slowed, strict=True):
        if after.body in (mining, mining_nat):
            assert 10 <= after.params["slowdown"] <= 317
            assert after.params["hashrate"] == before.params["hashrate"] / after.params["slowdown"]
        else:
            assert after.params == before.params
    untouched = sessions()
    run.slow_miners(untouched, 0.0, seed=6)
    assert [s.params for s in untouched] == [s.params for s in plain]
    with pytest.raises(LabError, match="--slow-miner-share 2: allowed values are 0 to 1"):
        run.slow_miners(sessions(), 2, seed=6)


def test_asyncssh_share_opens_ssh_reverse_tunnels_with_asyncssh_only() -> None:
    import random

    from training.lab.netns import LabError
    from training.lab.scenarios import reverse_tunnel

    def sessions() -> list:
        return run.plan("automation", random.Random(8), 600.0, "t")

    plain, marked = sessions(), sessions()
    run.tunnel_asyncssh(marked, 1.0, seed=8)
    tunnels = [s for s in marked if s.body is reverse_tunnel]
    assert tunnels and all(s.params["tool"] == "asyncssh" and s.scenario == "reverse-asyncssh"
                           for s in tunnels)
    assert [(s.scenario, s.params) for s in marked if s not in tunnels] == [
        (s.scenario, s.params) for s in plain if s.body is not reverse_tunnel]
    untouched = sessions()
    run.tunnel_asyncssh(untouched, 0.0, seed=8)
    assert [(s.scenario, s.params) for s in untouched] == [(s.scenario, s.params) for s in plain]
    with pytest.raises(LabError, match="--asyncssh-share 1.5: allowed values are 0 to 1"):
        run.tunnel_asyncssh(sessions(), 1.5, seed=8)


def test_automation_plan_runs_commands_by_both_ssh_clients_and_leaves_other_plans_alone() -> None:
    import random

    from training.lab.scenarios import ssh_automation

    auto = [s for s in run.plan("automation", random.Random(3), 600.0, "t") if s.body is ssh_automation]
    assert len(auto) == 16 and all(s.label == "benign" for s in auto)
    assert {s.params["client"] for s in auto} == {"asyncssh", "ssh"}
    assert all(s.scenario == f"ssh-automation-{s.params['client']}" for s in auto)
    # OpenSSH's `ssh HOST CMD` is a connection a command; AsyncSSH batches some on one
    assert all(s.params["per_connection"] == 1 for s in auto if s.params["client"] == "ssh")
    for kind in ("train", "breadth", "push", "messaging"):
        assert not any(s.body is ssh_automation for s in run.plan(kind, random.Random(3), 600.0, "t"))


def test_ssh_mux_share_multiplexes_openssh_automation_only() -> None:
    import random

    from training.lab.scenarios import ssh_automation

    def sessions() -> list:
        return run.plan("automation", random.Random(5), 600.0, "t")

    plain, marked = sessions(), sessions()
    run.multiplex_ssh(marked, 1.0, seed=5)
    for before, after in zip(plain, marked, strict=True):
        if after.body is ssh_automation and after.params["client"] == "ssh":
            assert after.params.pop("mux") in (30, 60, 120, 300)
        assert after.params == before.params
    untouched = sessions()
    run.multiplex_ssh(untouched, 0.0, seed=5)
    assert [s.params for s in untouched] == [s.params for s in plain]


def test_slow_task_share_marks_automation_of_either_client_only() -> None:
    import random

    from training.lab.scenarios import ssh_automation

    def sessions() -> list:
        return run.plan("automation", random.Random(6), 600.0, "t")

    plain, marked = sessions(), sessions()
    run.slow_tasks(marked, 1.0, seed=6)
    clients = set()
    for before, after in zip(plain, marked, strict=True):
        if after.body is ssh_automation:
            assert after.params.pop("tasks") == "slow"
            clients.add(after.params["client"])
        assert after.params == before.params
    assert clients == {"asyncssh", "ssh"}
    untouched = sessions()
    run.slow_tasks(untouched, 0.0, seed=6)
    assert [s.params for s in untouched] == [s.params for s in plain]


def test_chat_query_share_marks_chats_only_and_share_0_changes_nothing() -> None:
    import random

    from training.lab.scenarios import chat

    def sessions() -> list:
        return run.plan("messaging", random.Random(4), 600.0, "t")

    plain, marked = sessions(), sessions()
    run.query_chats(marked, 1.0, seed=4)
    chats = 0
    for before, after in zip(plain, marked, strict=True):
        if after.body is chat:
            assert 20 <= after.params.pop("queries_s") <= 150
            chats += 1
        assert after.params == before.params
    assert chats == 20
    untouched = sessions()
    run.query_chats(untouched, 0.0, seed=4)
    assert [s.params for s in untouched] == [s.params for s in plain]


def test_pool_accounts_read_each_sessions_last_pool_stats_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "r1-s004-pool.log").write_text(
        "pool listening on 10.1.3.1:3333 (btc)\n"
        'pool STATS {"accepted": 3, "connections": 1, "jobs": 9, "rejected": 0}\n')
    (logs / "r1-s005-pool.log").write_text("pool listening on 10.1.3.2:443 (xmr)\n")  # killed: no line
    (logs / "r1-s006-miner.log").write_text('pool STATS {"accepted": 1}\n')  # not a pool's log
    assert run.pool_accounts(logs) == {
        "r1-s004": {"accepted": 3, "connections": 1, "jobs": 9, "rejected": 0}}
    assert run.pool_accounts(tmp_path / "none") == {}
