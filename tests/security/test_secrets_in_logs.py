"""A whole run of the three services at DEBUG level, then a grep of their logs: no API key,
operator token, database password or visitor-hash key may appear in them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import call_json as call
from tests.helpers import free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
"""The virtualenv running the tests (its console scripts: clicktrack, st)."""
PORTS = dict(zip(("api", "redirector", "counter"), free_ports(3), strict=True))
OPERATOR = "operator-secret-" + uuid.uuid4().hex + uuid.uuid4().hex
VISITOR_KEY = "visitor-secret-" + uuid.uuid4().hex


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert proc.poll() is None, f"service on {port} exited"
        try:
            if call("GET", f"http://127.0.0.1:{port}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"service on {port} not ready")


@pytest.fixture
def run(service_addresses: dict[str, str], tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    # Ports picked now, not at import: a port free when the suite was collected may have been
    # taken by another test's client by the time this runs (seen once in CI: EADDRINUSE).
    PORTS.update(zip(("api", "redirector", "counter"), free_ports(3), strict=True))
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **service_addresses,
        "POSTGRES_SCHEMA": f"t_logs_{tag}",
        "CLICKS_TOPIC": f"clicks.logs.{tag}",
        "DLQ_TOPIC": f"clicks.dlq.logs.{tag}",
        "WEBHOOK_DLQ_TOPIC": f"clicks.logs.{tag}.webhooks-dlq",
        "COUNTER_GROUP": f"counter-logs-{tag}",
        "API_PORT": str(PORTS["api"]),
        "API_METRICS_PORT": "0",
        "REDIRECTOR_PORT": str(PORTS["redirector"]),
        "REDIRECTOR_METRICS_PORT": "0",
        "COUNTER_PORT": str(PORTS["counter"]),
        "SHORT_BASE_URL": f"http://127.0.0.1:{PORTS['redirector']}",
        "OPERATOR_TOKEN": OPERATOR,
        "VISITOR_HASH_KEY": VISITOR_KEY,
        "LOG_LEVEL": "DEBUG",
        "SPOOL_DIR": str(tmp_path / "spool"),
    }
    # A fresh schema numbers its links from 1 again: a link key an earlier test cached in this
    # Redis database (`ct:link1:1`) must not describe this run's link (as the `pool` fixture).
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        client.flushdb()
    finally:
        client.close()
    clicktrack = str(BIN / "clicktrack")
    for command in ("migrate", "topics"):
        subprocess.run([clicktrack, command], env=env, check=True, capture_output=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("counter", "redirector", "api"):
            with (tmp_path / f"{name}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [str(BIN / "python"), "-m", f"services.{name}"],
                        env=env,
                        stdout=log,
                        stderr=log,
                    )
                )
            wait_ready(PORTS[name], procs[-1])
        yield env, tmp_path
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        subprocess.run(
            [
                "psql",
                service_addresses["POSTGRES_DSN"],
                "-qc",
                f"DROP SCHEMA {env['POSTGRES_SCHEMA']} CASCADE",
            ],
            capture_output=True,
        )


def test_no_secret_reaches_a_log(run: tuple[dict[str, str], Path]) -> None:
    env, logs = run
    api = f"http://127.0.0.1:{PORTS['api']}"
    status, org = call("POST", f"{api}/v1/orgs", {"name": "Logs"}, OPERATOR)
    assert status == 201
    call("PUT", f"{api}/v1/orgs/{org['id']}/link-tracking", {"enabled": True}, OPERATOR)
    status, made = call("POST", f"{api}/v1/orgs/{org['id']}/api-keys", {}, OPERATOR)
    key = made["key"]
    status, campaign = call("POST", f"{api}/v1/campaigns", {"name": "c", "kind": "one_time"}, key)
    assert status == 201
    status, link = call(
        "POST",
        f"{api}/v1/campaigns/{campaign['id']}/links",
        {"destination": "https://x.example/"},
        key,
    )
    assert status == 201, link
    assert call("GET", f"{api}/v1/campaigns", token=key + "tampered")[0] == 401
    assert call("POST", f"{api}/v1/orgs", {"name": "x"}, key)[0] == 403
    status, minted = call(
        "POST", f"{api}/v1/links/{link['id']}/recipients", {"recipients": ["cust-1"]}, key
    )
    assert status == 200, minted
    code = minted["codes"][0]["code"]
    opener = urllib.request.build_opener(NoRedirect)
    answered = 0
    for _ in range(3):
        try:
            opener.open(f"http://127.0.0.1:{PORTS['redirector']}/{code}", timeout=10)
        except urllib.error.HTTPError as exc:
            answered += exc.code == 302
    assert answered == 3
    time.sleep(2)  # let the counter log its batch at DEBUG

    password_in_dsn = env["POSTGRES_DSN"].split("//", 1)[1].split("@", 1)[0]  # user:password
    secrets = {"operator token": OPERATOR, "API key": key, "visitor key": VISITOR_KEY}
    if ":" in password_in_dsn:
        secrets["database user:password"] = password_in_dsn
    lines = 0
    for log in logs.glob("*.log"):
        text = log.read_text(errors="replace")
        lines += text.count("\n")
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in {log.name}"
        assert "Authorization" not in text, f"a request header in {log.name}"
    assert lines > 10  # the services did log, at DEBUG
