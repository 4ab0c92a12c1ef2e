"""A Kafka broker of the test's own (never the shared one), started by deploy/stack.sh."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import free_ports

ROOT = Path(__file__).resolve().parents[2]


class OwnBroker:
    """A single-node KRaft broker on `port` with its data in `stack_dir`.

    `up()` starts it (or starts it again on the same data: topics and records survive), `kill()`
    stops it hard by its pid, `down()` stops it through stack.sh. The shared Redis and Postgres
    named in `env` are only reused by stack.sh, never stopped.
    """

    def __init__(self, stack_dir: Path, services: dict[str, str], port: int | None = None) -> None:
        if port is None:  # the controller takes the next port
            port = free_ports(2)[0]
        self.address = f"127.0.0.1:{port}"
        self._stack_dir = stack_dir
        self._env = {
            **os.environ,
            **services,
            "STACK_DIR": str(stack_dir),
            "KAFKA_BOOTSTRAP_SERVERS": self.address,
        }

    def up(self) -> None:
        done = subprocess.run(
            ["bash", str(ROOT / "deploy" / "stack.sh"), "up"],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"own broker did not start:\n{done.stdout}\n{done.stderr}")

    def pid(self) -> int:
        return int((self._stack_dir / "kafka" / "kafka.pid").read_text().strip())

    def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def down(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / "deploy" / "stack.sh"), "down"],
            env=self._env,
            capture_output=True,
            timeout=120,
            check=False,
        )
