"""Prometheus artefacts: alert rules pass promtool (syntax, unit tests), link to real docs;
the Grafana dashboard's queries are valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
"""The virtualenv running the tests (promtool is installed into it)."""
RULES = ROOT / "deploy" / "prometheus"
OPERATIONS = ROOT / "docs" / "operations.md"


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from the venv (`make promtool`), from PATH, or installed now."""
    local = BIN / "promtool"
    if local.exists():
        return str(local)
    found = shutil.which("promtool")
    if found:
        return found
    subprocess.run(
        ["bash", str(RULES / "install-promtool.sh"), str(local)], check=True, timeout=300
    )
    return str(local)


def run(promtool: str, *args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_pass_promtool_check(promtool: str) -> None:
    done = run(promtool, "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 14 rules found" in done.stdout


def test_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    done = run(promtool, "test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_example_prometheus_config_is_valid(promtool: str) -> None:
    done = run(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_refuses_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: sum(by (\n"
    )
    done = run(promtool, "check", "rules", str(broken), cwd=tmp_path)
    assert done.returncode == 1
    assert "FAILED" in done.stdout + done.stderr


def test_every_alert_links_to_a_section_of_the_operations_page() -> None:
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    headings = {
        _anchor(line.lstrip("#").strip())
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for group in rules["groups"]:
        for rule in group["rules"]:
            text = " ".join(rule["annotations"].values())
            links = re.findall(r"docs/operations\.md#([a-z0-9-]+)", text)
            assert links, f"{rule['alert']} does not link to docs/operations.md"
            for anchor in links:
                assert anchor in headings, f"{rule['alert']} links to missing #{anchor}"


def _anchor(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation dropped, spaces to hyphens.
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")


def test_grafana_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "clicktrack-lag.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) == 13
    # promtool has no bare PromQL check: each query becomes a recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": e.replace("$cluster", "c")}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
