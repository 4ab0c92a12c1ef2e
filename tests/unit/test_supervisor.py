"""The redirector supervisor's exit status: a worker that died of a signal is no clean exit."""

from __future__ import annotations

import signal
import subprocess
import sys

from services.redirector.__main__ import exit_status


def test_a_worker_killed_by_a_signal_makes_the_exit_status_a_failure() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    proc.send_signal(signal.SIGTERM)
    assert exit_status(proc.wait(10)) == 143  # 128 + SIGTERM, as a shell says it


def test_a_worker_exit_code_is_kept() -> None:
    assert [exit_status(code) for code in (0, 1, 3)] == [0, 1, 3]
