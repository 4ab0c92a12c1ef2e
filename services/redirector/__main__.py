"""`python -m services.redirector`: run the redirector with settings from the environment.

With `REDIRECTOR_WORKERS=N` (N > 1) this process becomes a small supervisor: it starts N worker
processes that all listen on the same port through SO_REUSEPORT (the kernel spreads new
connections across them), each with its own spool folder `SPOOL_DIR/worker-<i>` and its own
`/metrics` port (`REDIRECTOR_METRICS_PORT` + i), restarts a worker that dies, and on
SIGTERM/SIGINT passes the signal on and waits for every worker to drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import uvloop

from services.redirector.app import Redirector
from shared.logs import setup_logging
from shared.settings import Settings

log = logging.getLogger("services.redirector")

WORKER_FLAG = "--worker"
RESTART_DELAY_S = 1.0
SHUTDOWN_TIMEOUT_S = 30.0


SECTIONS = ("log", "kafka", "postgres", "redis", "links", "redirector")
"""The settings sections the redirector reads; the others keep their defaults, unread."""


def main() -> None:
    settings = Settings.for_process(SECTIONS)
    setup_logging(settings.log.level)
    worker = WORKER_FLAG in sys.argv[1:]
    if settings.redirector.workers > 1 and not worker:
        sys.exit(supervise(settings))
    serve(settings, reuse_port=worker)


def serve(settings: Settings, *, reuse_port: bool) -> None:
    """Run one redirector process until SIGTERM/SIGINT (then drain the click sink and exit)."""
    uvloop.run(_serve(settings, reuse_port=reuse_port))


async def _serve(settings: Settings, *, reuse_port: bool) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    redirector = Redirector(settings)
    await redirector.start(
        settings.redirector.host, settings.redirector.port, reuse_port=reuse_port
    )
    log.info(
        "redirector listening", extra={"url": redirector.url, "metrics": redirector.metrics_url}
    )
    try:
        await stopping.wait()
    finally:
        await redirector.stop()


def supervise(settings: Settings) -> int:
    """Start `REDIRECTOR_WORKERS` workers on one port and keep them running; returns exit code."""
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    workers: dict[int, subprocess.Popen[bytes]] = {}
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for index in range(settings.redirector.workers):
        workers[index] = _spawn(settings, index)
    log.info(
        "redirector workers started",
        extra={"workers": len(workers), "port": settings.redirector.port},
    )
    while not stopping:
        time.sleep(0.2)
        for index, proc in list(workers.items()):
            if proc.poll() is not None and not stopping:
                log.error(
                    "redirector worker exited, restarting",
                    extra={"worker": index, "code": proc.returncode},
                )
                time.sleep(RESTART_DELAY_S)
                workers[index] = _spawn(settings, index)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    code = 0
    for proc in workers.values():
        try:
            code = max(code, exit_status(proc.wait(timeout=max(deadline - time.monotonic(), 0.1))))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = 1
    return code


def exit_status(returncode: int) -> int:
    """A worker's return code as an exit status: a death by signal N (returncode -N) is 128 + N,
    as a shell reports it, so that a worker killed on the way down is not reported as clean."""
    return returncode if returncode >= 0 else 128 - returncode


def _spawn(settings: Settings, index: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SPOOL_DIR=os.path.join(settings.redirector.spool_dir, f"worker-{index}"))
    # The supervisor's key, even one it made itself: every worker must hash and sign alike.
    env["VISITOR_HASH_KEY"] = settings.redirector.visitor_hash_key.reveal()
    if settings.redirector.metrics_port:  # each worker its own /metrics: base port + index
        env["REDIRECTOR_METRICS_PORT"] = str(settings.redirector.metrics_port + index)
    return subprocess.Popen([sys.executable, "-m", "services.redirector", WORKER_FLAG], env=env)


if __name__ == "__main__":
    main()
