"""`python -m services.ops`: run the lag exporter (same as `clicktrack serve-lag`)."""

from __future__ import annotations

from services.ops.exporter import create_app
from shared.service import run_app
from shared.settings import Settings

SECTIONS = ("log", "kafka", "lag")
"""The settings sections the lag exporter reads; the others keep their defaults, unread."""


def main() -> None:
    settings = Settings.for_process(SECTIONS)
    run_app(create_app(settings), settings.lag.host, settings.lag.port, settings.log.level)


if __name__ == "__main__":
    main()
