from __future__ import annotations

import os
import shutil
import subprocess
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


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and its key (PEM paths) for the lab's TLS servers."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return str(crt), str(key)


@pytest.fixture
def anyio_backend() -> str:
    """The service tests run on asyncio."""
    return "asyncio"


@pytest.fixture
def model(classifier):
    """The bundled model's metadata, as the service loads it."""
    return classifier.metadata
