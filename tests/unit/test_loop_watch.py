"""A worker process whose loop stopped by itself exits (status 70) instead of living on idle."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from services.counter.app import create_app as counter_app
from services.relay.app import create_app as relay_app
from shared.service import LOOP_ALIVE, LOOP_DIED_EXIT_STATUS
from shared.settings import Settings

# A process serving an app whose "loop" stops after `stop_after` seconds (never if negative).
PROGRAM = """
import sys, time
from aiohttp import web
from shared.service import LOOP_ALIVE, run_app

stop_after = float(sys.argv[2])
started = time.monotonic()
app = web.Application()
app.router.add_get("/healthz", lambda request: web.json_response({"status": "ok"}))
app[LOOP_ALIVE] = lambda: stop_after < 0 or time.monotonic() - started < stop_after
run_app(app, "127.0.0.1", int(sys.argv[1]), "INFO")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(stop_after: float) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(port), str(stop_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port


def wait_serving(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the process never served /healthz")


def test_a_process_whose_loop_stopped_exits_with_a_failure_status() -> None:
    proc, port = serve(stop_after=2.0)
    try:
        wait_serving(proc, port)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == LOOP_DIED_EXIT_STATUS == 70
    assert "the worker's loop stopped: shutting the process down to be restarted" in err


def test_a_process_whose_loop_runs_exits_cleanly_on_sigterm() -> None:
    proc, port = serve(stop_after=-1)
    try:
        wait_serving(proc, port)
        time.sleep(1.5)  # the watch has looked at least once
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "loop stopped" not in err


def test_the_counter_and_the_relay_are_watched() -> None:
    settings = Settings.from_env({})
    for app in (counter_app(settings), relay_app(settings)):
        assert app[LOOP_ALIVE]() is False  # not started: not alive
