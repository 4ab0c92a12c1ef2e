"""`python -m services.counter`: run the counter with settings from the environment."""

from __future__ import annotations

from services.counter.app import create_app
from shared.service import run_app
from shared.settings import Settings

SECTIONS = ("log", "kafka", "postgres", "redis", "counter")
"""The settings sections the counter reads; the others keep their defaults, unread."""


def main() -> None:
    settings = Settings.for_process(SECTIONS)
    run_app(create_app(settings), settings.counter.host, settings.counter.port, settings.log.level)


if __name__ == "__main__":
    main()
