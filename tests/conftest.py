from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"
CORPUS = REPO.parent / "shared" / "corpus" / "ndpi-benign"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the host's FLOWGUARD_* settings."""
    for name in list(os.environ):
        if name.startswith("FLOWGUARD_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def classifier():
    from flowguard.model import FlowClassifier, default_model_dir

    return FlowClassifier.load(default_model_dir())


@pytest.fixture(scope="session")
def sample_pcaps() -> list[Path]:
    found = sorted(PCAPS.glob("*.pcap"))
    assert found, "pcaps/ holds no sample captures"
    return found


@pytest.fixture
def anyio_backend() -> str:
    """The service tests run on asyncio."""
    return "asyncio"


@pytest.fixture
def model(classifier):
    """The bundled model's metadata, as the service loads it."""
    return classifier.metadata
