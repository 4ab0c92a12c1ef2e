"""`python -m services.counter`: run the counter with settings from the environment."""

from __future__ import annotations

from services.counter.app import create_app
from shared.service import run_app
from shared.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    run_app(create_app(settings), settings.counter_host, settings.counter_port, settings.log_level)


if __name__ == "__main__":
    main()
