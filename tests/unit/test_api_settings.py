"""The settings the links API adds: short domain, code length, DLT limit, operator token."""

from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.settings import Settings


def test_defaults_fit_a_dlt_slot() -> None:
    s = Settings.from_env({})
    assert (s.api.port, s.links.short_domain, s.links.code_length, s.api.dlt_var_limit) == (
        8082,
        "127.0.0.1:8080",
        10,
        30,
    )
    assert len(s.links.short_domain) + 1 + s.links.code_length <= s.api.dlt_var_limit
    assert s.api.operator_token.reveal() == ""


def test_the_short_domain_follows_the_short_base_url_unless_set() -> None:
    derived = Settings.from_env({"SHORT_BASE_URL": "https://s.acme.in/"})
    assert (derived.links.short_base_url, derived.links.short_domain) == (
        "https://s.acme.in",
        "s.acme.in",
    )
    chosen = Settings.from_env({"SHORT_BASE_URL": "https://s.acme.in", "SHORT_DOMAIN": "a.in"})
    assert chosen.links.short_domain == "a.in"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CODE_LENGTH": "6"}, "CODE_LENGTH must be between 8 and 20, got 6"),
        ({"DLT_VAR_LIMIT": "0"}, "DLT_VAR_LIMIT must be between 1 and 2000, got 0"),
        ({"SHORT_DOMAIN": "s.in/"}, "SHORT_DOMAIN must be a host without spaces"),
        ({"SHORT_DOMAIN": "s .in"}, "SHORT_DOMAIN must be a host without spaces"),
        ({"OPERATOR_TOKEN": "short"}, "OPERATOR_TOKEN must be at least 32 characters"),
        ({"API_PORT": "x"}, "API_PORT must be a whole number"),
    ],
)
def test_malformed_values_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)
    for value in env.values():  # a rejected value may be a secret: only its name is shown
        if "OPERATOR_TOKEN" in env:
            assert value not in str(caught.value)


def test_the_operator_token_is_masked() -> None:
    token = "t" * 40
    s = Settings.from_env({"OPERATOR_TOKEN": token})
    assert s.api.operator_token.reveal() == token
    assert token not in repr(s) and token not in str(s)
