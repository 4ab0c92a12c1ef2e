"""`python -m services.api`: run the links API with settings from the environment."""

from __future__ import annotations

from services.api.app import create_app
from shared.service import run_app
from shared.settings import Settings

SECTIONS = ("log", "kafka", "postgres", "redis", "links", "api", "counter")
"""The settings sections the API reads (the counter's for its group, whose lag it reports);
the others keep their defaults, unread."""


def main() -> None:
    settings = Settings.for_process(SECTIONS)
    run_app(create_app(settings), settings.api.host, settings.api.port, settings.log.level)


if __name__ == "__main__":
    main()
