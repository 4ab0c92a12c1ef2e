"""The relay's process: the relay plus `/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

from aiohttp import web

from services.relay.relay import Relay
from shared.service import worker_app
from shared.settings import Settings


def create_app(settings: Settings) -> web.Application:
    """An app whose lifetime is the relay's: started at startup, drained and stopped at exit."""
    return worker_app(Relay(settings))
