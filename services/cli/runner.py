"""Run a command's coroutine, turning our errors into a message and exit status 2."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from shared.errors import ClicktrackError
from shared.links import InvalidLinkError

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`; a `ClicktrackError` prints `error: ...` and exits with status 2."""
    try:
        return asyncio.run(coro)
    except (ClicktrackError, InvalidLinkError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
