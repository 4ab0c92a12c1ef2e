"""`python -m services.ops`: run the lag exporter (same as `clicktrack serve-lag`)."""

from __future__ import annotations

from services.ops.exporter import create_app
from shared.service import run_app
from shared.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    run_app(create_app(settings), settings.lag_host, settings.lag_port, settings.log_level)


if __name__ == "__main__":
    main()
