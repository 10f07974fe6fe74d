"""The verdict service in-process (httpx over ASGI, lifespan run): every endpoint, the policy's rules,
auth, and the one error shape."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowguard.store import Store
from tests.servicekit import KEY, OTHER_KEY, WRITE, FakeAdapter, Harness, flow, running

pytestmark = pytest.mark.anyio




@pytest.fixture
async def svc(tmp_path: Path, model):
    async with running(tmp_path, model) as harness:
        yield harness


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The one error shape, exactly."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"ok", "status", "error", "errors"}, body
    assert body["ok"] is False and body["status"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["errors"], list) and all(isinstance(e, str) for e in body["errors"])
    assert "Traceback" not in response.text
    return body


async def blocklist(h: Harness) -> list[str]:
    text = (await h.client.get("/v1/blocklist.txt", params={"comments": "false"})).text
    return text.split()


# -- ingest ----------------------------------------------------------------------------------------


async def test_ingest_list_and_object_forms(svc: Harness) -> None:
    body = await svc.ingest(flow(), flow(verdict="benign", score=0.9))
    assert len(body["ids"]) == 2 and body["counts"] == {"blocked": 1, "benign": 1}
    [made] = body["decisions"]
    assert made["action"] == "blocked" and made["value"] == "203.0.113.7"
    assert made["inside_host"] == "10.0.0.5" and made["scenario"] == "stratum_mining"

    r = await svc.client.post("/v1/verdicts", headers=WRITE,
                              json={"source": "sensor-1", "verdicts": [flow(dst="198.18.0.1")]})
    assert r.status_code == 201
    stored = (await svc.client.get(f"/v1/verdicts/{r.json()['ids'][0]}")).json()
    assert stored["source"] == "sensor-1" and stored["dst_ip"] == "198.18.0.1"
    first = (await svc.client.get(f"/v1/verdicts/{body['ids'][0]}")).json()
    assert first["source"].startswith("key:") and KEY not in first["source"]


async def test_a_flow_verdict_sent_twice_is_stored_once(svc: Harness) -> None:
    one = flow()
    first = await svc.ingest(one)
    again = await svc.ingest(one)
    assert first["ids"] == again["ids"]
    assert svc.store.count_verdicts() == 1


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"src_ip": "10.0.0.300"}, "src_ip"),
        ({"dst_ip": "not-an-ip"}, "dst_ip"),
        ({"src_port": 70000}, "src_port"),
        ({"dst_port": -1}, "dst_port"),
        ({"protocol": 256}, "protocol"),
        ({"score": 1.5}, "score"),
        ({"scores": {"benign": 2.0}}, "scores"),
        ({"verdict": "cryptojacking"}, "verdict"),
        ({"first_seen_ms": 5, "last_seen_ms": 4}, "first_seen_ms"),
        ({"first_seen_ms": -1}, "first_seen_ms"),
    ],
)
async def test_ingest_validates_each_field(svc: Harness, change: dict[str, Any], where: str) -> None:
    r = await svc.client.post("/v1/verdicts", headers=WRITE, json=[flow(**change)])
    body = assert_error(r, 422)
    assert any(where in line for line in body["errors"]), body
    assert svc.store.count_verdicts() == 0


async def test_ingest_refuses_whole_batch_on_one_bad_verdict(svc: Harness) -> None:
    r = await svc.client.post("/v1/verdicts", headers=WRITE, json=[flow(), flow(src_port=99999)])
    body = assert_error(r, 422)
    assert body["errors"][0].startswith("body.1.src_port")
    assert svc.store.count_verdicts() == 0


# -- reading verdicts --------------------------------------------------------------------------------


async def test_list_filters(svc: Harness) -> None:
    await svc.ingest(
        flow(dst="203.0.113.1", score=0.95),
        flow(dst="203.0.113.2", verdict="reverse_tunnel", score=0.7, src="10.0.0.9"),
        flow(dst="2001:db8::5", verdict="benign", score=0.99, src="2001:db8::1",
             first_seen_ms=1_000, last_seen_ms=2_000),
    )

    async def values(**params: Any) -> list[str]:
        r = await svc.client.get("/v1/verdicts", params=params)
        assert r.status_code == 200, r.text
        return [v["dst_ip"] for v in r.json()["verdicts"]]

    assert await values(verdict="reverse_tunnel") == ["203.0.113.2"]
    assert await values(ip="10.0.0.9") == ["203.0.113.2"]          # as source
    assert await values(ip="203.0.113.1") == ["203.0.113.1"]       # as destination
    assert await values(ip="2001:DB8:0::1") == ["2001:db8::5"]     # any spelling of an IPv6 address
    assert sorted(await values(min_score=0.9)) == ["2001:db8::5", "203.0.113.1"]
    assert "2001:db8::5" not in await values(since="2020-01-01T00:00:00Z")
    assert len(await values()) == 3
    assert_error(await svc.client.get("/v1/verdicts", params={"ip": "nope"}), 422)
    assert_error(await svc.client.get("/v1/verdicts", params={"verdict": "evil"}), 422)
    assert_error(await svc.client.get("/v1/verdicts", params={"min_score": 2}), 422)


async def test_pagination_with_offset_and_cursor(svc: Harness) -> None:
    ids = (await svc.ingest(*[flow(verdict="benign", score=0.9) for _ in range(25)]))["ids"]
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 10}
    while True:
        page = (await svc.client.get("/v1/verdicts", params=params)).json()
        seen += [v["id"] for v in page["verdicts"]]
        if page["next"] is None:
            break
        assert "cursor=" in page["next_url"]
        params = {"limit": 10, "cursor": page["next"]}
    assert seen == sorted(ids, reverse=True)

    asc = (await svc.client.get("/v1/verdicts", params={"limit": 10, "order": "asc"})).json()
    assert [v["id"] for v in asc["verdicts"]] == ids[:10]
    nxt = (await svc.client.get("/v1/verdicts", params={"limit": 10, "cursor": asc["next"]})).json()
    assert [v["id"] for v in nxt["verdicts"]] == ids[10:20]      # the cursor keeps the order

    offset = (await svc.client.get("/v1/verdicts", params={"limit": 10, "offset": 20})).json()
    assert [v["id"] for v in offset["verdicts"]] == sorted(ids, reverse=True)[20:]
    assert offset["next"] is None
    assert_error(await svc.client.get("/v1/verdicts", params={"cursor": asc["next"], "offset": 5}), 422)
    assert_error(await svc.client.get("/v1/verdicts", params={"cursor": "%%%"}), 422)
    assert_error(await svc.client.get("/v1/verdicts", params={"limit": 0}), 422)


async def test_get_one_verdict(svc: Harness) -> None:
    [vid] = (await svc.ingest(flow()))["ids"]
    r = await svc.client.get(f"/v1/verdicts/{vid}")
    assert r.status_code == 200
    assert r.json()["id"] == vid and r.json()["feedback"] == []
    assert_error(await svc.client.get("/v1/verdicts/999999"), 404)
    assert_error(await svc.client.get("/v1/verdicts/abc"), 422)


async def test_feedback(svc: Harness) -> None:
    flagged, benign = (await svc.ingest(flow(), flow(verdict="benign", score=0.8)))["ids"]

    async def give(vid: int, label: str) -> httpx.Response:
        return await svc.client.post(f"/v1/verdicts/{vid}/feedback", headers=WRITE,
                                     json={"label": label, "note": "checked", "analyst": "ana"})

    r = await give(flagged, "false_positive")
    assert r.status_code == 201 and r.json()["feedback"]["true_class"] == "benign"
    assert (await give(flagged, "true_positive")).json()["feedback"]["true_class"] == "stratum_mining"
    assert (await give(benign, "reverse_tunnel")).json()["feedback"]["true_class"] == "reverse_tunnel"
    assert_error(await give(benign, "false_positive"), 422)
    assert_error(await give(424242, "true_positive"), 404)
    assert_error(await give(flagged, "maybe"), 422)
    unsigned = await svc.client.post(f"/v1/verdicts/{flagged}/feedback", json={"label": "true_positive"})
    assert_error(unsigned, 401)

    one = (await svc.client.get(f"/v1/verdicts/{flagged}")).json()
    assert [f["label"] for f in one["feedback"]] == ["false_positive", "true_positive"]
    export = (await svc.client.get("/v1/feedback"))
    assert export.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in export.text.splitlines()]
    assert [(r["verdict_id"], r["true_class"]) for r in records] == [
        (flagged, "benign"), (flagged, "stratum_mining"), (benign, "reverse_tunnel")]
    assert records[0]["dst_ip"] == "203.0.113.7" and records[0]["analyst"] == "ana"


# -- the policy --------------------------------------------------------------------------------------


async def test_thresholds_default_to_the_model_and_can_be_set(tmp_path: Path, model) -> None:
    mining = model.lowest_thresholds()["stratum_mining"]  # a live window that opens its connection
    assert mining < model.thresholds["stratum_mining"]
    models_own = {"threshold_stratum_mining": None, "threshold_reverse_tunnel": None}
    async with running(tmp_path / "a", model, **models_own) as h:
        body = await h.ingest(flow(dst="203.0.113.1", score=mining - 0.01),
                              flow(dst="203.0.113.2", score=mining))
        assert [d["action"] for d in body["decisions"]] == ["blocked"]
        assert body["counts"]["below_threshold"] == 1
        assert await blocklist(h) == ["203.0.113.2"]
    async with running(tmp_path / "b", model, threshold_stratum_mining=0.999,
                       threshold_reverse_tunnel=0.3) as h:
        body = await h.ingest(flow(dst="203.0.113.2", score=0.99),
                              flow(dst="203.0.113.3", verdict="reverse_tunnel", score=0.35))
        assert [d["value"] for d in body["decisions"]] == ["203.0.113.3"]
        policy = (await h.client.get("/v1/model")).json()["policy"]
        assert policy["thresholds"] == {"stratum_mining": 0.999, "reverse_tunnel": 0.3}


async def test_allowlist_wins(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, allowlist=("198.51.100.0/24",)) as h:
        body = await h.ingest(
            flow(dst="127.0.0.53"),                     # built in: loopback
            flow(dst="198.51.100.77"),                  # settings: inside a CIDR
            flow(dst="fe80::1"),                        # built in: IPv6 link-local
            flow(dst="::ffff:127.0.0.1"),               # IPv4-mapped loopback
        )
        assert body["counts"] == {"allowlisted": 4}
        assert {d["allowlisted_by"] for d in body["decisions"]} == {
            "127.0.0.0/8", "198.51.100.0/24", "fe80::/10"}

        # a decision in force is ended (on the firewall too) when its address is allowlisted
        await h.ingest(flow(dst="2001:db8:7::9", verdict="reverse_tunnel", score=0.99))
        assert await blocklist(h) == ["2001:db8:7::9"]
        r = await h.client.post("/v1/allowlist", headers=WRITE,
                                json={"cidr": "2001:db8::/32", "note": "ours"})
        assert r.status_code == 201
        assert [d["value"] for d in r.json()["revoked"]] == ["2001:db8:7::9"]
        assert ("revoke", ["2001:db8:7::9"]) in h.adapter.calls
        assert await blocklist(h) == []
        again = await h.ingest(flow(dst="2001:db8:7::10", verdict="reverse_tunnel", score=0.99))
        assert again["decisions"][0]["allowlisted_by"] == "2001:db8::/32"
        present = await h.client.post("/v1/allowlist", headers=WRITE, json={"cidr": "2001:db8::/32"})
        assert present.status_code == 200

        listed = (await h.client.get("/v1/allowlist")).json()["allowlist"]
        assert {e["cidr"]: e["source"] for e in listed} == {
            "127.0.0.0/8": "settings", "::1/128": "settings", "169.254.0.0/16": "settings",
            "fe80::/10": "settings", "198.51.100.0/24": "settings", "2001:db8::/32": "api"}
        for cidr, status in (("198.51.100.0/24", 409), ("192.0.2.0/24", 404)):
            assert_error(await h.client.delete("/v1/allowlist", params={"cidr": cidr}, headers=WRITE), status)
        assert_error(await h.client.post("/v1/allowlist", headers=WRITE, json={"cidr": "10.0.0.0/33"}), 422)
        r = await h.client.delete("/v1/allowlist", params={"cidr": "2001:db8:0::/32"}, headers=WRITE)
        assert r.status_code == 200 and r.json()["removed"] == "2001:db8::/32"
        blocked = await h.ingest(flow(dst="2001:db8:7::11", verdict="reverse_tunnel", score=0.99))
        assert blocked["counts"] == {"blocked": 1}


async def test_an_open_decision_is_extended_not_duplicated(svc: Harness) -> None:
    first = await svc.ingest(flow(dst="203.0.113.9"))
    svc.clock.advance(3600)
    second = await svc.ingest(flow(dst="203.0.113.9"), flow(dst="203.0.113.9"))
    assert first["decisions"][0]["action"] == "blocked"
    assert [d["action"] for d in second["decisions"]] == ["extended", "extended"]
    assert len({d["decision_id"] for d in first["decisions"] + second["decisions"]}) == 1
    [record] = svc.store.decisions(svc.clock())
    assert record.decision.expires_at == svc.clock() + timedelta(hours=24)
    assert svc.adapter.calls[-1] == ("apply", ["203.0.113.9"])     # the firewall's timeout refreshed
    assert await blocklist(svc) == ["203.0.113.9"]


async def test_new_block_rate_limit_under_a_burst(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, max_new_blocks_per_minute=60) as h:
        burst = [flow(dst=f"198.18.{i // 250}.{i % 250 + 1}") for i in range(500)]
        body = await h.ingest(*burst)
        assert body["counts"] == {"blocked": 60, "suppressed": 440}
        assert len(h.store.active(h.clock())) == 60
        assert h.store.count_verdicts() == 500                        # stored, not enforced
        assert await h.metric("flowguard_blocks_suppressed_total") == 440
        assert await h.metric('flowguard_decisions_active{mode="enforced"}') == 60
        [(method, values)] = [c for c in h.adapter.calls if c[0] == "apply"]
        assert len(values) == 60

        h.clock.advance(30)
        assert (await h.ingest(flow(dst="198.19.0.1")))["counts"] == {"suppressed": 1}
        h.clock.advance(31)                                            # the window slid past the burst
        assert (await h.ingest(flow(dst="198.19.0.1")))["counts"] == {"blocked": 1}
        assert await h.metric("flowguard_blocks_suppressed_total") == 441


async def test_dry_run_records_but_never_calls_the_adapter(tmp_path: Path, model) -> None:
    adapter = FakeAdapter()
    async with running(tmp_path, model, adapter=adapter, dry_run=True, ttl_stratum_mining="1h") as h:
        body = await h.ingest(flow(dst="203.0.113.50"), flow(dst="203.0.113.51"))
        assert body["counts"] == {"dry_run": 2}
        assert await blocklist(h) == []                                # not published either
        startup = {"startup": "true"}
        stream = (await h.client.get("/v1/decisions/stream", params=startup, headers=WRITE)).json()
        assert stream["new"] == []
        dry = (await h.client.get("/v1/decisions", params={"dry_run": "true"})).json()
        assert sorted(d["value"] for d in dry) == ["203.0.113.50", "203.0.113.51"]
        assert await h.metric('flowguard_decisions_active{mode="dry_run"}') == 2
        assert (await h.ingest(flow(dst="203.0.113.50")))["counts"] == {"extended": 1}
        h.clock.advance(7200)
        h.app.state.service.policy.tick()
        r = await h.client.post("/v1/allowlist", headers=WRITE, json={"cidr": "203.0.113.0/24"})
        assert r.status_code == 201
    assert adapter.calls == []


async def test_ttl_expiry_revokes_on_the_adapter(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, ttl_reverse_tunnel="2h") as h:
        await h.client.get("/v1/decisions/stream", params={"startup": "true"}, headers=WRITE)
        await h.ingest(flow(dst="192.0.2.10", verdict="reverse_tunnel", score=0.9))
        h.clock.advance(2 * 3600 - 1)
        assert h.app.state.service.policy.tick() == []
        assert await blocklist(h) == ["192.0.2.10"]
        h.clock.advance(2)
        assert await blocklist(h) == []                                # off the list when its time is up
        [ended] = h.app.state.service.policy.tick()
        assert ended.end_reason == "expired" and ended.decision.value == "192.0.2.10"
        assert h.adapter.calls[-1] == ("revoke", ["192.0.2.10"])
        stream = (await h.client.get("/v1/decisions/stream", headers=WRITE)).json()
        assert [d["value"] for d in stream["deleted"]] == ["192.0.2.10"] and stream["new"] == []
        again = await h.ingest(flow(dst="192.0.2.10", verdict="reverse_tunnel", score=0.9))
        assert again["counts"] == {"blocked": 1}                       # a new decision, not the old one


async def test_startup_syncs_the_adapter_with_the_store(tmp_path: Path, model) -> None:
    async with running(tmp_path, model) as h:
        await h.ingest(flow(dst="203.0.113.80"))
        db = h.settings.database
    adapter = FakeAdapter()
    async with running(tmp_path, model, adapter=adapter, store=Store(db)):
        assert adapter.calls[:2] == [("check", []), ("sync", ["203.0.113.80"])]


async def test_a_failing_firewall_loses_no_verdict(tmp_path: Path, model) -> None:
    adapter = FakeAdapter()
    async with running(tmp_path, model, adapter=adapter) as h:
        adapter.fail = True
        body = await h.ingest(flow(dst="203.0.113.90"))
        assert body["counts"] == {"blocked": 1}
        assert h.store.count_verdicts() == 1 and await blocklist(h) == ["203.0.113.90"]
        assert await h.metric("flowguard_firewall_errors_total") == 1
        adapter.fail = False
        h.app.state.service.policy.tick()
        assert adapter.calls[-1] == ("sync", ["203.0.113.90"])        # retried as a full sync


# -- pull lists and CrowdSec ---------------------------------------------------------------------------


async def test_blocklist_text_json_and_conditional_gets(svc: Harness) -> None:
    await svc.ingest(flow(dst="203.0.113.20"), flow(dst="2001:db8::20", verdict="reverse_tunnel"))
    r = await svc.client.get("/v1/blocklist.txt")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text.splitlines() == [
        "203.0.113.20 # stratum_mining until 2026-11-23T12:00:00Z",
        "2001:db8::20 # reverse_tunnel until 2026-11-23T12:00:00Z",
    ]
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    assert modified == "Sun, 22 Nov 2026 12:00:00 GMT"
    assert (await svc.client.get("/v1/blocklist.txt", headers={"If-None-Match": etag})).status_code == 304
    # If-Modified-Since is not trusted within the second the list changed, then it is
    async def status(path: str, **headers: str) -> int:
        sent = {name.replace("_", "-"): value for name, value in headers.items()}
        return (await svc.client.get(path, headers=sent)).status_code

    assert await status("/v1/blocklist.txt", If_Modified_Since=modified) == 200
    svc.clock.advance(5)
    not_modified = await svc.client.get("/v1/blocklist.txt", headers={"If-Modified-Since": modified})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag

    js = await svc.client.get("/v1/blocklist.json")
    assert js.headers["content-type"] == "application/json" and js.headers["etag"] != etag
    assert js.json()["count"] == 2
    scopes = {d["value"]: d["scope"] for d in js.json()["decisions"]}
    assert scopes == {"203.0.113.20": "Ip", "2001:db8::20": "Ip"}
    assert await status("/v1/blocklist.json", If_None_Match=js.headers["etag"]) == 304

    await svc.ingest(flow(dst="203.0.113.21"))
    changed = await svc.client.get("/v1/blocklist.txt",
                                   headers={"If-None-Match": etag, "If-Modified-Since": modified})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert "203.0.113.21 # stratum_mining" in changed.text
    later = format_datetime(svc.clock() + timedelta(seconds=1), usegmt=True)
    svc.clock.advance(5)
    assert await status("/v1/blocklist.txt", If_Modified_Since=later) == 304


async def test_crowdsec_decisions_shape(svc: Harness) -> None:
    await svc.ingest(flow(dst="203.0.113.30"))
    svc.clock.advance(2)
    r = await svc.client.get("/v1/decisions", params={"ip": "203.0.113.30"})
    [d] = r.json()
    assert set(d) >= {"id", "origin", "type", "scope", "value", "duration", "scenario"}
    assert (d["origin"], d["type"], d["scope"], d["value"], d["scenario"]) == (
        "flowguard", "ban", "Ip", "203.0.113.30", "stratum_mining")
    assert d["duration"] == "23h59m58s"
    assert re.fullmatch(r"\d+h\d+m\d+s", d["duration"])
    assert (await svc.client.get("/v1/decisions", params={"ip": "203.0.113.31"})).json() == []
    assert len((await svc.client.get("/v1/decisions", params={"scope": "ip"})).json()) == 1


async def test_crowdsec_stream_per_bouncer(svc: Harness) -> None:
    a = {"X-Api-Key": KEY}
    b = {"Authorization": f"Bearer {OTHER_KEY}"}

    async def pull(headers: dict[str, str], startup: bool = False) -> tuple[list[str], list[str]]:
        params = {"startup": str(startup).lower()}
        r = await svc.client.get("/v1/decisions/stream", params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        return [d["value"] for d in body["new"]], [d["value"] for d in body["deleted"]]

    await svc.ingest(flow(dst="203.0.113.40"))
    assert await pull(a, startup=True) == (["203.0.113.40"], [])
    assert await pull(a) == ([], [])
    await svc.ingest(flow(dst="203.0.113.41"))
    assert await pull(a) == (["203.0.113.41"], [])
    assert await pull(b) == (["203.0.113.40", "203.0.113.41"], [])   # b's first call: everything
    [decision] = svc.store.decisions(svc.clock(), value="203.0.113.40")
    r = await svc.client.delete(f"/v1/decisions/{decision.decision.id}", headers=WRITE)
    assert r.status_code == 200 and r.json()["decision"]["end_reason"] == "revoked"
    assert ("revoke", ["203.0.113.40"]) in svc.adapter.calls
    assert await pull(a) == ([], ["203.0.113.40"])
    assert await pull(b) == ([], ["203.0.113.40"])
    assert await pull(a, startup=True) == (["203.0.113.41"], [])
    assert_error(await svc.client.delete(f"/v1/decisions/{decision.decision.id}", headers=WRITE), 404)
    assert_error(await svc.client.get("/v1/decisions/stream"), 401)     # a bouncer is known by its key
    assert_error(await svc.client.get("/v1/decisions/stream", headers={"X-Api-Key": "x" * 20}), 401)


# -- auth --------------------------------------------------------------------------------------------


async def test_writes_need_a_key_in_either_header(svc: Harness) -> None:
    missing = assert_error(await svc.client.post("/v1/verdicts", json=[flow()]), 401)
    assert "X-Api-Key" in missing["error"]
    wrong = await svc.client.post("/v1/verdicts", json=[flow()], headers={"X-Api-Key": "wrong-key-wrong-key"})
    assert assert_error(wrong, 401)["error"] == "the API key is not valid"
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert (await svc.client.post("/v1/verdicts", json=[flow()], headers=WRITE)).status_code == 201
    bearer = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert (await svc.client.post("/v1/verdicts", json=[flow()], headers=bearer)).status_code == 201
    assert_error(await svc.client.post("/v1/allowlist", json={"cidr": "10.0.0.0/8"}), 401)
    assert_error(await svc.client.delete("/v1/allowlist", params={"cidr": "10.0.0.0/8"}), 401)
    assert_error(await svc.client.delete("/v1/decisions/1"), 401)
    for path in ("/v1/verdicts", "/v1/blocklist.txt", "/v1/blocklist.json", "/v1/decisions", "/v1/allowlist",
                 "/v1/model", "/metrics", "/v1/feedback"):
        assert (await svc.client.get(path)).status_code == 200, path            # reads are open by default
    assert_error(await svc.client.get("/v1/verdicts", headers={"X-Api-Key": "not-a-key-at-all"}), 401)


async def test_reads_can_require_a_key(tmp_path: Path, model) -> None:
    async with running(tmp_path, model, read_requires_key=True) as h:
        assert_error(await h.client.get("/v1/blocklist.txt"), 401)
        assert_error(await h.client.get("/metrics"), 401)
        assert (await h.client.get("/v1/blocklist.txt", headers=WRITE)).status_code == 200
        assert (await h.client.get("/healthz")).status_code == 200
        assert (await h.client.get("/readyz")).status_code == 200


async def test_without_keys_writes_are_refused_with_how_to(tmp_path: Path, model) -> None:
    async with running(tmp_path / "a", model, api_keys=()) as h:
        body = assert_error(await h.client.post("/v1/verdicts", json=[flow()], headers=WRITE), 403)
        assert "FLOWGUARD_API_KEYS" in body["error"]
        assert (await h.client.get("/v1/blocklist.txt")).status_code == 200
    async with running(tmp_path / "b", model, api_keys=(), insecure_no_auth=True) as h:
        assert (await h.client.post("/v1/verdicts", json=[flow()])).status_code == 201
        assert (await h.client.get("/v1/decisions/stream", params={"startup": "true"})).json()["new"]


# -- the service itself ------------------------------------------------------------------------------


async def test_health_ready_metrics_model_docs(svc: Harness, model) -> None:
    assert (await svc.client.get("/healthz")).json()["ok"] is True
    assert (await svc.client.get("/readyz")).json() == {"ok": True}
    await svc.ingest(flow(dst="203.0.113.60"), flow(verdict="benign", score=0.9))
    metrics = (await svc.client.get("/metrics"))
    assert metrics.headers["content-type"].startswith("text/plain")
    assert await svc.metric('flowguard_verdicts_ingested_total{verdict="stratum_mining"}') == 1
    assert await svc.metric('flowguard_verdicts_ingested_total{verdict="benign"}') == 1
    assert await svc.metric('flowguard_verdicts_ingested_total{verdict="reverse_tunnel"}') == 0
    assert await svc.metric('flowguard_decisions_active{mode="enforced"}') == 1
    assert 'route="/v1/verdicts/{verdict_id}"' not in metrics.text
    await svc.client.get("/v1/verdicts/1")
    await svc.client.get("/no/such/path/10.9.8.7")
    text = (await svc.client.get("/metrics")).text
    route = 'method="GET",route="/v1/verdicts/{verdict_id}"'
    assert f"flowguard_http_request_duration_seconds_count{{{route}}} 1.0" in text
    assert "203.0.113.60" not in text and "10.9.8.7" not in text and "10.0.0.5" not in text
    assert all(line.startswith(("#", "flowguard_")) for line in text.splitlines() if line)

    info = (await svc.client.get("/v1/model")).json()
    assert info["version"] == model.version and info["classes"] == list(model.classes)
    assert info["thresholds"] == model.thresholds
    assert info["policy"]["thresholds"] == {"stratum_mining": 0.9, "reverse_tunnel": 0.5}
    assert (await svc.client.get("/docs")).status_code == 200
    spec = (await svc.client.get("/openapi.json")).json()
    assert "/v1/decisions/stream" in spec["paths"]


async def test_readyz_when_the_store_is_gone(svc: Harness) -> None:
    svc.store.close()
    body = assert_error(await svc.client.get("/readyz"), 503)
    assert "store" in body["error"]


async def test_cors_is_off_unless_configured(tmp_path: Path, model, svc: Harness) -> None:
    origin = {"Origin": "https://soc.example"}
    plain = await svc.client.get("/v1/blocklist.json", headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    async with running(tmp_path / "cors", model, cors_origins=("https://soc.example",)) as h:
        r = await h.client.get("/v1/blocklist.json", headers=origin)
        assert r.headers["access-control-allow-origin"] == "https://soc.example"


async def test_one_error_shape_everywhere(svc: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    c = svc.client
    assert_error(await c.get("/nope"), 404)
    assert_error(await c.get("/v1/verdicts/123456"), 404)
    assert_error(await c.post("/v1/verdicts/123456/feedback", headers=WRITE, json={"label": "benign"}), 404)
    assert_error(await c.put("/v1/verdicts", headers=WRITE), 405)
    assert_error(await c.delete("/v1/blocklist.txt"), 405)
    assert_error(await c.post("/v1/verdicts", headers={**WRITE, "Content-Type": "application/json"},
                              content=b"{not json"), 422)
    assert_error(await c.post("/v1/verdicts", headers=WRITE, json={"verdicts": "nope"}), 422)
    assert_error(await c.post("/v1/verdicts", headers=WRITE, json=42), 422)
    assert_error(await c.get("/v1/verdicts", params={"limit": "many"}), 422)
    assert_error(await c.get("/v1/decisions", params={"ip": "x"}), 422)
    assert_error(await c.post("/v1/verdicts", json=[]), 401)
    assert_error(await c.delete("/v1/allowlist", headers=WRITE, params={"cidr": "::1"}), 409)
    big = b"[" + b" " * (svc.settings.max_body_bytes + 1) + b"]"
    as_json = {**WRITE, "Content-Type": "application/json"}
    assert_error(await c.post("/v1/verdicts", headers=as_json, content=big), 413)

    async def chunks():
        for _ in range(3):
            yield b" " * (svc.settings.max_body_bytes // 2)
    streamed = await c.post("/v1/verdicts", headers=as_json, content=chunks())
    assert_error(streamed, 413)                                    # no Content-Length to trust

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")
    monkeypatch.setattr(svc.store, "verdicts", boom)
    crashed = assert_error(await c.get("/v1/verdicts"), 500)
    assert "secret internals" not in crashed["error"]

