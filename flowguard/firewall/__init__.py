"""Everything that touches a firewall lives in this package (see base.FirewallAdapter).

    make_adapter("nftables", netns="fw")            -> nftables.NftablesAdapter
    make_adapter("webhook", url=..., secret=...)    -> webhook.WebhookAdapter
    make_adapter("none")                            -> null.NullAdapter (dry runs, pull-only)
"""

from __future__ import annotations

import inspect
from typing import Any

from flowguard.errors import ConfigError
from flowguard.firewall.base import FirewallAdapter
from flowguard.firewall.nftables import NftablesAdapter
from flowguard.firewall.null import NullAdapter
from flowguard.firewall.webhook import WebhookAdapter

__all__ = ["KINDS", "FirewallAdapter", "NftablesAdapter", "NullAdapter", "WebhookAdapter", "make_adapter"]

#: adapter kind -> class
KINDS: dict[str, type[Any]] = {"nftables": NftablesAdapter, "webhook": WebhookAdapter, "none": NullAdapter}


def make_adapter(kind: str, **options: Any) -> FirewallAdapter:
    """The adapter of `kind`, built with `options` (its constructor's keyword arguments).

    ConfigError when the kind is unknown, an option is not one that kind takes, or a value is bad.
    """
    cls = KINDS.get(kind)
    if cls is None:
        raise ConfigError(f"firewall kind {kind!r} is not one of: {', '.join(KINDS)}")
    params = inspect.signature(cls).parameters
    allowed = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "no options"
        raise ConfigError(f"firewall {kind} does not take {', '.join(unknown)} (it takes: {takes})")
    missing = [n for n in allowed if params[n].default is inspect.Parameter.empty and n not in options]
    if missing:
        raise ConfigError(f"firewall {kind} needs {', '.join(missing)}")
    adapter: FirewallAdapter = cls(**options)
    return adapter
