"""training.lab.run's record of the machine's load (`watch_load`)."""

from __future__ import annotations

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
