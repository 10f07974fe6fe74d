"""What the routes share: `app.state.service`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowguard.config import Settings
from flowguard.policy import Policy
from flowguard.service.feeds import BlocklistCache
from flowguard.service.metrics import Metrics
from flowguard.store import Store

if TYPE_CHECKING:
    from flowguard.live import LivePipeline


@dataclass
class Service:
    """Everything the routes use; `app.state.service`."""

    settings: Settings
    store: Store
    policy: Policy
    metrics: Metrics
    feeds: BlocklistCache
    model: dict[str, Any]
    clock: Callable[[], datetime]
    owns_store: bool = False
    started: bool = field(default=False, init=False)
    capture: LivePipeline | None = field(default=None, init=False)
    """The live capture feeding this service (`serve --interface`), if any."""

    def start(self) -> None:
        """Check the firewall and sync it with the store (FirewallError if it cannot be driven).
        Runs once; `flowguard serve` calls it before listening, the lifespan otherwise."""
        if not self.started:
            self.policy.start()
            self.started = True
