"""The links API fuzzed from its own OpenAPI document with schemathesis.

Every operation gets generated valid and invalid requests, with an organisation's key and with
the operator token: no 5xx, every status and body as documented, invalid input refused, and no
operation that works without its credential.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import call_json as call
from tests.helpers import free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
"""The virtualenv running the tests (its console scripts: clicktrack, st)."""
OPERATOR = "operator-token-for-schemathesis-" + "0" * 16
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    ]
)
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def api(service_addresses: dict[str, str]) -> Iterator[str]:
    """Base URL of a real API process on its own schema, rate limits out of the fuzzer's way."""
    schema = f"t_st_{uuid.uuid4().hex[:8]}"
    (port,) = free_ports()  # now, not at import: a port free at collection may be taken since
    env = {
        **os.environ,
        **service_addresses,
        "POSTGRES_SCHEMA": schema,
        "API_PORT": str(port),
        "API_METRICS_PORT": "0",
        "OPERATOR_TOKEN": OPERATOR,
        "API_RATE_PER_S": "1000000",
        "API_RATE_BURST": "1000000",
        "API_AUTH_FAILURES_BURST": "1000000",
    }
    python = str(BIN / "python")
    clicktrack = str(BIN / "clicktrack")
    subprocess.run([clicktrack, "migrate"], env=env, check=True, capture_output=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "schemathesis-api.log").open("wb") as log:
        proc = subprocess.Popen([python, "-m", "services.api"], env=env, stdout=log, stderr=log)
    assert proc.poll() is None
    base = f"http://127.0.0.1:{port}"
    try:
        last: object = None
        for _ in range(100):
            try:
                last = call("GET", f"{base}/readyz")
                if last[0] == 200:
                    break
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        else:
            pytest.fail(f"the API did not become ready: {last}")
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        subprocess.run(
            ["psql", service_addresses["POSTGRES_DSN"], "-qc", f"DROP SCHEMA {schema} CASCADE"],
            capture_output=True,
        )


def org_key(base: str) -> str:
    _, org = call("POST", f"{base}/v1/orgs", {"name": "Fuzzed"}, OPERATOR)
    call("PUT", f"{base}/v1/orgs/{org['id']}/link-tracking", {"enabled": True}, OPERATOR)
    status, made = call("POST", f"{base}/v1/orgs/{org['id']}/api-keys", {}, OPERATOR)
    assert status == 201, made
    return str(made["key"])


def schemathesis(base: str, credential: str, name: str, *extra: str) -> tuple[int, int, str]:
    """Run `st run`; (cases generated, cases passed, output)."""
    done = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{base}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {credential}",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--workers",
            "1",
            # A loaded test machine (other suites beside) can hold a request for seconds; that
            # is not a defect of the API, a wrong answer is.
            "--request-timeout",
            "60",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output = done.stdout + done.stderr
    (ARTIFACTS / f"schemathesis-{name}.txt").write_text(output)
    found = re.search(r"(\d+) generated, (\d+) passed", output)
    assert done.returncode == 0 and found, output[-6000:]
    return int(found[1]), int(found[2]), output


def test_every_operation_as_an_organisation(api: str) -> None:
    generated, passed, _ = schemathesis(api, org_key(api), "org")
    assert generated == passed > 500


def test_operator_operations(api: str) -> None:
    generated, passed, _ = schemathesis(
        api, OPERATOR, "operator", "--include-path-regex", "^/v1/orgs"
    )
    assert generated == passed > 100
