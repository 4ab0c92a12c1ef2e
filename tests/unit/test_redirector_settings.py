from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.settings import Settings


def test_redirector_defaults() -> None:
    s = Settings.from_env({})
    assert (s.redirector.workers, s.redirector.code_min_length, s.redirector.code_max_length) == (
        1,
        4,
        32,
    )
    assert s.redirector.publish_send_timeout_ms == 5_000
    assert (
        s.redirector.spool_dir,
        s.redirector.spool_max_mb,
        s.redirector.spool_file_mb,
        s.redirector.spool_fsync_ms,
    ) == (
        ".stack/spool/redirector",
        1024,
        64,
        50,
    )
    assert (s.redirector.bot_cidrs, s.redirector.trusted_proxies) == ((), ())
    assert (
        s.redirector.publish_linger_ms,
        s.redirector.local_cache_ttl_s,
        s.redirector.local_code_ttl_s,
    ) == (50, 30, 86_400)


def test_linger_and_code_ttl_are_read_from_the_environment() -> None:
    s = Settings.from_env({"PUBLISH_LINGER_MS": "0", "LOCAL_CODE_TTL_S": "600"})
    assert (s.redirector.publish_linger_ms, s.redirector.local_code_ttl_s) == (0, 600)


def test_cidr_lists_are_parsed_and_normalised() -> None:
    s = Settings.from_env({"BOT_CIDRS": " 203.0.113.7/24, ,2001:db8::/32", "TRUSTED_PROXIES": ""})
    assert s.redirector.bot_cidrs == ("203.0.113.0/24", "2001:db8::/32")
    assert s.redirector.trusted_proxies == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BOT_CIDRS": "10.0.0.0/8,nope"}, "BOT_CIDRS must list CIDRs like 10.0.0.0/8, got 'nope'"),
        ({"CODE_MIN_LENGTH": "12", "CODE_MAX_LENGTH": "10"}, "CODE_MIN_LENGTH must not exceed"),
        ({"REDIRECTOR_WORKERS": "0"}, "REDIRECTOR_WORKERS must be between 1 and 256, got 0"),
        ({"SPOOL_FSYNC_MS": "fast"}, "SPOOL_FSYNC_MS must be a whole number, got 'fast'"),
        ({"PUBLISH_LINGER_MS": "6000"}, "PUBLISH_LINGER_MS must be between 0 and 5000, got 6000"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)
