"""`python -m services.relay`: run the webhook relay with settings from the environment."""

from __future__ import annotations

from services.relay.app import create_app
from shared.service import run_app
from shared.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    run_app(create_app(settings), settings.relay_host, settings.relay_port, settings.log_level)


if __name__ == "__main__":
    main()
