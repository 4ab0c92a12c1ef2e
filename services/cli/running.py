"""Running a command's coroutine: errors become one line on stderr and exit status 2."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from shared.errors import ClicktrackError

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; a Clicktrack error is printed as `error: ...` and exits with status 2."""
    try:
        return asyncio.run(coro)
    except ClicktrackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
