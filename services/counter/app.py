"""The counter's process: the counter plus `/healthz`, `/readyz` (naming Postgres and Redis) and
`/metrics`."""

from __future__ import annotations

from aiohttp import web

from services.counter.counter import Counter
from shared.service import worker_app
from shared.settings import Settings


def create_app(settings: Settings) -> web.Application:
    """An app whose lifetime is the counter's: started at startup, drained and stopped at exit;
    ready while its loop runs and Postgres and Redis answer."""
    counter = Counter(settings)
    return worker_app(counter, dependencies=counter.dependencies_ok)
