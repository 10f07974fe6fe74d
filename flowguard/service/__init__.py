"""The verdict service: `create_app(settings)` is the ASGI app `flowguard serve` runs."""

from flowguard.service.app import create_app

__all__ = ["create_app"]
