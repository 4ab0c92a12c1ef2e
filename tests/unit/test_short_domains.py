"""Short domains and DLT headers: their spelling, the prefix of a short link and its length, and
which organisation a request's host serves (pure logic, no services)."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry

from services.redirector.hosts import ANY_ORG, Hosts
from services.redirector.metrics import RedirectorMetrics
from shared.audit import ACTIONS, clean_ticket
from shared.campaigns import HEADER_PATTERN, clean_header
from shared.db import migration_files
from shared.domains import ShortPrefix
from shared.errors import InvalidInputError
from shared.hostnames import clean_domain, hostname


@pytest.mark.parametrize(
    ("given", "stored"),
    [("s.brand.in", "s.brand.in"), ("S.Brand.IN.", "s.brand.in"), (" go.x-y.co ", "go.x-y.co"),
     ("ब्रांड.भारत", "xn--i1b6d5aq4e8d.xn--h2brj9c")],
)  # fmt: skip
def test_domains_are_stored_as_lower_case_ascii_host_names(given: str, stored: str) -> None:
    assert clean_domain(given) == stored


@pytest.mark.parametrize(
    "given",
    ["", "brand", "http://s.brand.in", "s.brand.in/x", "s.brand.in:8080", "-s.brand.in",
     "s..brand.in", "s.brand.123", "a" * 64 + ".in", "s brand.in", 7],
)  # fmt: skip
def test_anything_but_a_host_name_is_refused(given: object) -> None:
    with pytest.raises(InvalidInputError) as refused:
        clean_domain(given)
    assert refused.value.code == "invalid_domain"


def test_headers_are_six_letters_or_digits_in_upper_case() -> None:
    assert clean_header(" acme01 ") == "ACME01"
    for bad in ("ACME", "ACME-1", "ACMEIN1", "ACMEI\n", None):
        with pytest.raises(InvalidInputError):
            clean_header(bad)
    sql = "\n".join(text for version, text in migration_files() if version.startswith("0041"))
    assert f"dlt_header ~ '{HEADER_PATTERN}'" in sql


def test_a_short_link_counts_its_header() -> None:
    plain, headed = ShortPrefix("s.brand.in", None), ShortPrefix("s.brand.in", "ACMEIN")
    assert plain.url("AbC123xYz9") == "s.brand.in/AbC123xYz9"
    assert headed.url("AbC123xYz9") == "s.brand.in/ACMEIN/AbC123xYz9"
    assert (plain.length(10), headed.length(10)) == (21, 28)
    assert headed.length(10) == len(headed.url("x" * 10))


def test_audit_actions_fit_the_sql_check_and_tickets_are_checked() -> None:
    sql = "\n".join(text for version, text in migration_files() if version.startswith("0040"))
    pattern = re.search(r"action ~ '([^']+)'", sql)
    assert pattern is not None
    assert all(re.fullmatch(pattern[1].strip("^$"), action) for action in ACTIONS)
    assert clean_ticket("  SUP-1 ") == "SUP-1" and clean_ticket(None) is None
    for bad in ("", "   ", "x" * 101, "SUP\n1"):
        with pytest.raises(InvalidInputError):
            clean_ticket(bad)


@pytest.mark.parametrize(
    ("host", "name"),
    [("S.Brand.in:443", "s.brand.in"), ("s.brand.in.", "s.brand.in"), ("[::1]:8080", "[::1]"),
     ("https://s.brand.in", "s.brand.in"), ("127.0.0.1:8080", "127.0.0.1")],
)  # fmt: skip
def test_hostname_drops_scheme_port_and_case(host: str, name: str) -> None:
    assert hostname(host) == name


def test_a_host_serves_its_organisation_the_global_domain_all_and_others_none() -> None:
    hosts = Hosts("http://127.0.0.1:8080", None, RedirectorMetrics(CollectorRegistry()), 30)
    hosts.use({"s.alpha.in": 1, "s.beta.in": 2})
    assert [hosts.scope(h) for h in ("s.alpha.in", "S.BETA.IN:443", "127.0.0.1:51234")] == [
        1, 2, ANY_ORG,
    ]  # fmt: skip
    assert [hosts.scope(h) for h in ("evil.example", "", None, "s.alpha.in.evil")] == [None] * 4
    hosts.use({"s.beta.in": 1})  # moved, and alpha removed: the memo is dropped
    assert (hosts.scope("s.alpha.in"), hosts.scope("s.beta.in")) == (None, 1)
    for n in range(5000):  # random hosts cannot grow the memo without bound
        hosts.scope(f"h{n}.example")
    assert len(hosts._memo) <= 4096
