"""`python -m services.relay`: run the webhook relay with settings from the environment."""

from __future__ import annotations

from services.relay.app import create_app
from shared.service import run_app
from shared.settings import Settings

SECTIONS = ("log", "kafka", "postgres", "relay")
"""The settings sections the relay reads; the others keep their defaults, unread."""


def main() -> None:
    settings = Settings.for_process(SECTIONS)
    run_app(create_app(settings), settings.relay.host, settings.relay.port, settings.log.level)


if __name__ == "__main__":
    main()
