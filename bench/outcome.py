"""The one JSON line every benchmark ends with, also when it cannot run.

A benchmark that fails (the stack is not up, a port is taken, a check of its own fails) must not
end with a traceback and no figures: a reader, or a script collecting the lines, then cannot tell
a broken run from a missing one. `finish` prints the result, or `{"bench": name, "error": why}`.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

import orjson


def finish(bench: str, measure: Callable[[], dict[str, Any]]) -> int:
    """Run `measure` and print its result as the last line of stdout; return the exit status.

    On an exception the traceback goes to stderr and the last line says what went wrong, as JSON
    with an `error` field; the status is then 1. Ctrl-C still stops the run at once.
    """
    try:
        result = measure()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        why = f"{type(exc).__name__}: {exc}".strip()
        line = {"bench": bench, "error": why[:2000] or type(exc).__name__}
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stdout.flush()
        return 1
    sys.stdout.write(orjson.dumps({"bench": bench, **result}).decode() + "\n")
    sys.stdout.flush()
    return 0
