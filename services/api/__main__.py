"""`python -m services.api`: run the links API with settings from the environment."""

from __future__ import annotations

import asyncio

import uvloop
from aiohttp import web

from services.api.app import create_app
from shared.logs import setup_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    setup_logging(settings.log_level)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
        loop=loop,
    )


if __name__ == "__main__":
    main()
