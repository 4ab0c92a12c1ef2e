"""No default secrets in production: keys are random where unset, and required in production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from shared.errors import SettingsError
from shared.settings import Settings
from shared.variables import DEV_KEYS_FILE, environment, write_dev_keys

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "VISITOR_HASH_KEY": "v" * 40,
    "RECIPIENT_KEY": "r" * 40,
    "OPERATOR_TOKEN": "o" * 40,
    "WEBHOOK_SECRET_KEY": "w" * 40,
}
"""Every key some process requires in production, set."""
PROCESS_KEYS = {
    "redirector": ["VISITOR_HASH_KEY"],
    "api": ["RECIPIENT_KEY", "OPERATOR_TOKEN"],
    "relay": ["WEBHOOK_SECRET_KEY"],
}
"""The keys each process needs in production, in the order it checks them."""


def test_an_unset_key_is_random_never_a_default_anyone_can_read() -> None:
    first, second = Settings.from_env({}), Settings.from_env({})
    assert Settings.generated_keys() == (
        "VISITOR_HASH_KEY",
        "RECIPIENT_KEY",
        "WEBHOOK_SECRET_KEY",
    )
    one = first.redirector.visitor_hash_key.reveal()
    assert len(one) >= 43 and one != second.redirector.visitor_hash_key.reveal()
    assert "dev-only" not in one


@pytest.mark.parametrize(("section", "names"), [(p, n) for p, n in PROCESS_KEYS.items()])
def test_production_refuses_a_missing_key_naming_it(section: str, names: list[str]) -> None:
    env = {"CLICKTRACK_ENV": "production"}
    for name in names:
        with pytest.raises(SettingsError) as caught:
            Settings.from_env(env, sections=(section,))
        assert str(caught.value).startswith(f"{name} must be set when CLICKTRACK_ENV=production")
        env[name] = KEYS[name]
    Settings.from_env(env, sections=(section,))  # all set: it starts
    with pytest.raises(SettingsError, match=f"{names[0]} must be set"):
        Settings.from_env({**env, names[0]: " "}, sections=(section,))


def test_production_with_every_key_reads_them() -> None:
    s = Settings.from_env({"CLICKTRACK_ENV": "Production", **KEYS})
    assert s.redirector.visitor_hash_key.reveal() == KEYS["VISITOR_HASH_KEY"]
    assert s.api.operator_token.reveal() == KEYS["OPERATOR_TOKEN"]
    assert s.relay.webhook_secret_key.reveal() == KEYS["WEBHOOK_SECRET_KEY"]
    assert s.api.recipient_key.reveal() == KEYS["RECIPIENT_KEY"]


def test_a_misspelt_environment_is_an_error_not_development() -> None:
    with pytest.raises(SettingsError, match="CLICKTRACK_ENV must be development or production"):
        Settings.from_env({"CLICKTRACK_ENV": "prod"})


def test_a_short_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="VISITOR_HASH_KEY must be at least 32 characters"):
        Settings.from_env({"VISITOR_HASH_KEY": "dev-only-visitor-key"})


def test_development_keys_are_shared_through_their_file_and_ignored_in_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("VISITOR_HASH_KEY", "CLICKTRACK_ENV"):
        monkeypatch.delenv(name, raising=False)
    assert write_dev_keys(Settings.generated_keys()[:1]) is True
    first = DEV_KEYS_FILE.read_text()
    # a key added since the file was written is added to it; those there are kept
    assert write_dev_keys(Settings.generated_keys()) is True
    assert DEV_KEYS_FILE.read_text().startswith(first)
    assert write_dev_keys(Settings.generated_keys()) is False  # kept: one set for everyone
    assert list(dotenv_values(DEV_KEYS_FILE)) == list(Settings.generated_keys())
    assert oct(DEV_KEYS_FILE.stat().st_mode & 0o777) == "0o600"
    written = environment()["VISITOR_HASH_KEY"]
    assert Settings.from_env().redirector.visitor_hash_key.reveal() == written
    assert Settings.from_env().redirector.visitor_hash_key.reveal() == written
    monkeypatch.setenv("CLICKTRACK_ENV", "production")
    assert "VISITOR_HASH_KEY" not in environment()
    with pytest.raises(SettingsError, match="VISITOR_HASH_KEY must be set"):
        Settings.from_env(sections=("redirector",))


@pytest.mark.parametrize("process", sorted(PROCESS_KEYS))
def test_a_process_in_production_without_its_keys_refuses_to_start(
    process: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env.update(CLICKTRACK_ENV="production", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", f"services.{process}"],
        env=env,
        cwd=tmp_path,  # no .env, no development keys
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    first = PROCESS_KEYS[process][0]
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"clicktrack: refusing to start: {first} must be set when CLICKTRACK_ENV=production"
        " (a key or credential has no default there; see SECURITY.md, Keys)\n"
    )
