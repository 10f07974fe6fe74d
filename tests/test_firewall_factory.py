"""make_adapter: the kinds, their options, and errors that name them."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from flowguard.decisions import Decision
from flowguard.errors import ConfigError
from flowguard.firewall import FirewallAdapter, NftablesAdapter, NullAdapter, WebhookAdapter, make_adapter

URL = "https://receiver.test/flowguard"


def test_make_adapter() -> None:
    now = datetime.now(timezone.utc)
    d = Decision(id=1, value="192.0.2.1", scenario="reverse_tunnel", created_at=now, expires_at=now)
    none = make_adapter("none")
    assert isinstance(none, NullAdapter) and isinstance(none, FirewallAdapter)
    none.apply([d]), none.sync([d]), none.revoke([d]), none.check()
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    hook = make_adapter("webhook", url=URL, secret="k", client=client)
    assert isinstance(hook, WebhookAdapter) and isinstance(hook, FirewallAdapter)
    nft = make_adapter("nftables", table="fgtest", netns="fgfw-r", hooks=["input"])
    assert isinstance(nft, NftablesAdapter) and isinstance(nft, FirewallAdapter)
    assert nft.hooks == ("input",)
    with pytest.raises(ConfigError, match="not one of: nftables, webhook, none"):
        make_adapter("iptables")
    with pytest.raises(ConfigError, match="does not take colour"):
        make_adapter("nftables", colour="red")
    with pytest.raises(ConfigError, match="needs url, secret"):
        make_adapter("webhook")
    with pytest.raises(ConfigError, match="nftables hooks"):
        make_adapter("nftables", hooks=["sideways"])
