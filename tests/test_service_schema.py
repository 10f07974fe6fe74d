"""Property-based run over the service's OpenAPI spec (schemathesis, in-process over ASGI): whatever a
client sends, valid or not, the service answers without a 5xx, and every error has the one shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from flowguard.config import Settings
from flowguard.service import create_app
from flowguard.store import Store
from tests.servicekit import KEY, FakeAdapter

EXAMPLES = 25
"""Examples per operation and mode: a bounded run (about 20 s), not an exhaustive one."""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, classifier):
    data: Path = tmp_path_factory.mktemp("schema")
    config = Settings(data_dir=data, api_keys=(KEY,))
    store = Store(config.database)
    yield create_app(config, store, FakeAdapter(), model=classifier.metadata)
    store.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors(app, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"X-Api-Key": KEY})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:300]}")
            elif response.status_code >= 400:
                body = response.json()
                assert set(body) == {"ok", "status", "error", "errors"}, body
                assert body["status"] == response.status_code

        try:
            check()
        except Unsatisfiable:  # nothing invalid to send (an operation without parameters or body)
            assert mode == GenerationMode.NEGATIVE
    assert not failures, "\n".join(failures[:20])
