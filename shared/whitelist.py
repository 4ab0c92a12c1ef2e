"""An organisation's DLT URL whitelist: what it has whitelisted on its DLT portal.

Since 1 October 2024 Indian operators block a commercial SMS carrying a URL the sender has not
whitelisted. A short link is whitelisted as its short domain together with the headers it is
sent under; a link sent as it is (untracked) by its URL. So an entry is either

- `short_domain`: a short domain and one header (or none: every header of the sender), or
- `url`: the start of the URLs the sender sends untracked (`https://shop.brand.in/offers/`),

each with the DLT portal's reference and the date it was whitelisted. Rendering checks each
link against them (`Whitelist`) and refuses with `url_not_whitelisted`, naming the exact entry to
whitelist. Senders keep the list in spreadsheets: `parse_csv` reads one (`value,header,dlt_ref,
whitelisted_on`), all or nothing, and `import_entries` stores it (or, `dry_run`, only says what
it would add).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from urllib.parse import urlsplit

import asyncpg

from shared import audit
from shared.campaigns import clean_header
from shared.errors import InvalidInputError, NotFoundError, TemplateError
from shared.hostnames import clean_domain
from shared.orgs import Owned

EntryKind = Literal["short_domain", "url"]
MAX_IMPORT = 10_000
"""Rows one CSV import may hold."""
MAX_REF = 100
CSV_COLUMNS = ("value", "header", "dlt_ref", "whitelisted_on")
_DATES = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y")
_COLUMNS = "id, org_id, kind, value, header, dlt_ref, whitelisted_on, created_at"


@dataclass(frozen=True, slots=True)
class Entry:
    """One whitelisted item."""

    id: int
    org_id: int
    kind: EntryKind
    value: str
    """A short domain, or the start of URLs (`https://shop.brand.in/offers/`)."""
    header: str | None
    """For a short domain: the header it is whitelisted with; null: every header."""
    dlt_ref: str | None
    """The DLT portal's reference of the whitelisting."""
    whitelisted_on: date | None
    created_at: datetime


_ENTRIES = Owned(
    "dlt_whitelist", Entry, _COLUMNS, "whitelist entry", "kind DESC, value, header NULLS FIRST"
)


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to add (checked and spelled as stored)."""

    kind: EntryKind
    value: str
    header: str | None = None
    dlt_ref: str | None = None
    whitelisted_on: date | None = None


def new_entry(
    value: str,
    header: str | None = None,
    dlt_ref: str | None = None,
    whitelisted_on: date | str | None = None,
) -> NewEntry:
    """An entry from its parts: a value with a scheme or a path is a URL prefix, else a short
    domain; `InvalidInputError` naming what is wrong."""
    value = value.strip()
    if not value.isprintable():
        raise InvalidInputError("a whitelist value must be printable text", code="invalid_entry")
    if "://" in value or "/" in value:
        if header:
            raise InvalidInputError(
                "a header goes with a short domain, not with a URL", code="invalid_entry"
            )
        return NewEntry("url", url_prefix(value), None, _ref(dlt_ref), _date(whitelisted_on))
    return NewEntry(
        "short_domain",
        clean_domain(value),
        clean_header(header) if header else None,
        _ref(dlt_ref),
        _date(whitelisted_on),
    )


def url_prefix(value: str) -> str:
    """A URL prefix as stored: as given, with its scheme (if any) and host in lower case."""
    text = value.strip()
    scheme, has_scheme, rest = text.rpartition("://") if "://" in text else ("", "", text)
    try:
        hostname = urlsplit("https://" + rest).hostname
    except ValueError:  # an unbalanced [ of an IPv6 host, ...
        hostname = None
    if (has_scheme and scheme.lower() not in ("http", "https")) or not hostname:
        raise InvalidInputError(
            f"{value!r} is not the start of an http(s) URL", code="invalid_entry"
        )
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}{has_scheme}{host.lower()}{slash}{path}"


def _bare(url: str) -> str:
    """A URL without its scheme: a whitelisted `www.shop.in/` covers `https://www.shop.in/x`
    and the `www.shop.in/x` an SMS shows."""
    return url.split("://", 1)[1] if "://" in url else url


def _ref(ref: str | None) -> str | None:
    if ref is None or not ref.strip():
        return None
    ref = ref.strip()
    if len(ref) > MAX_REF or not ref.isprintable():
        raise InvalidInputError(
            f"dlt_ref must be at most {MAX_REF} printable characters", code="invalid_entry"
        )
    return ref


def _date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    if not value.strip():
        return None
    for form in _DATES:
        try:
            return datetime.strptime(value.strip(), form).date()
        except ValueError:
            continue
    raise InvalidInputError(
        f"whitelisted_on {value!r} is not a date (2024-10-01, 01-10-2024 or 01/10/2024)",
        code="invalid_entry",
    )


def parse_csv(text: str) -> list[NewEntry]:
    """The entries of a CSV with a header row naming `value` and some of `header`, `dlt_ref`,
    `whitelisted_on` (any order and case). A `header` cell may list several headers (`A;B` or
    `A B`): one entry each. All or nothing: `InvalidInputError` lists the bad lines."""
    try:
        table = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as exc:
        raise InvalidInputError(f"the CSV cannot be read: {exc}", code="invalid_csv") from None
    rows = iter(table)
    head = [name.strip().lower() for name in next(rows, [])]
    unknown = sorted(set(head) - set(CSV_COLUMNS) - {""})
    if "value" not in head or unknown:
        raise InvalidInputError(
            f"the first row must name the columns: value, and any of header, dlt_ref,"
            f" whitelisted_on{f' (unknown: {chr(44).join(unknown)})' if unknown else ''}",
            code="invalid_csv",
        )
    entries: list[NewEntry] = []
    problems: list[str] = []
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = dict(zip(head, row, strict=False))
        listed = (cells.get("header") or "").replace(";", " ").replace(",", " ").split()
        headers: list[str | None] = [*listed] or [None]
        try:
            for header in headers:
                entries.append(
                    new_entry(
                        cells.get("value", ""),
                        header,
                        cells.get("dlt_ref"),
                        cells.get("whitelisted_on"),
                    )
                )
        except InvalidInputError as exc:
            problems.append(f"line {line}: {exc.detail}")
        if len(entries) > MAX_IMPORT:
            raise InvalidInputError(f"at most {MAX_IMPORT} entries per import", code="invalid_csv")
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        shown = "; ".join(problems[:10]) + more
        raise InvalidInputError(f"nothing imported: {shown}", code="invalid_csv")
    return entries


async def list_entries(conn: asyncpg.Connection | asyncpg.Pool, org_id: int) -> list[Entry]:
    """The organisation's entries: short domains first, then URLs, each by value."""
    return await _ENTRIES.all(conn, org_id)


async def import_entries(
    pool: asyncpg.Pool,
    org_id: int,
    entries: Iterable[NewEntry],
    *,
    dry_run: bool,
    operator: str,
    ticket: str | None,
) -> tuple[list[NewEntry], list[NewEntry]]:
    """Add the entries the organisation lacks (an entry it has keeps its reference and date);
    returns (added, already there). With `dry_run` nothing is written."""
    wanted = list(entries)
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        conn = trail.conn
        # one import of an organisation at a time: two cannot both add the same entry
        if await conn.fetchval("SELECT id FROM orgs WHERE id = $1 FOR UPDATE", org_id) is None:
            raise NotFoundError(f"organisation {org_id} does not exist")
        have = {(e.kind, e.value, e.header) for e in await list_entries(conn, org_id)}
        seen: set[tuple[str, str, str | None]] = set()
        added, kept = [], []
        for entry in wanted:
            key = (entry.kind, entry.value, entry.header)
            if key in have or key in seen:
                kept.append(entry)
                continue
            seen.add(key)
            added.append(entry)
        if dry_run or not added:
            return added, kept
        await conn.executemany(
            "INSERT INTO dlt_whitelist (org_id, kind, value, header, dlt_ref, whitelisted_on)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(org_id, e.kind, e.value, e.header, e.dlt_ref, e.whitelisted_on) for e in added],
        )
        action: audit.Action = "whitelist.added" if len(added) == 1 else "whitelist.imported"
        await trail.record(
            action, org_id, added=len(added), entries=[_label(e) for e in added[:20]]
        )
    return added, kept


async def remove_entry(
    pool: asyncpg.Pool, org_id: int, entry_id: int, *, operator: str, ticket: str | None
) -> Entry:
    """Remove one of the organisation's entries (its id as `list_entries` gives it); rendering
    then refuses the links only it covered, while the organisation's check is on."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        entry = await _ENTRIES.delete(trail.conn, entry_id, org_id)
        await trail.record("whitelist.removed", org_id, entry=_label(entry))
    return entry


def _label(entry: Entry | NewEntry) -> str:
    return entry.value + (f" with header {entry.header}" if entry.header else "")


@dataclass(frozen=True, slots=True)
class Needed:
    """An entry a message needs, and whether the organisation has it."""

    kind: EntryKind
    value: str
    header: str | None
    whitelisted: bool
    dlt_ref: str | None


def _covers(prefix: str, url: str) -> bool:
    """Whether a whitelisted prefix covers a URL (both without scheme); a bare host covers that
    host only (`shop.in` does not cover `shop.india.com`)."""
    if "/" in prefix:
        return url.startswith(prefix)
    return url.partition("/")[0].partition("?")[0].partition("#")[0] == prefix


class Whitelist:
    """An organisation's entries, to check the links of a message against; `enforced` False
    (the organisation's check is off) passes everything."""

    def __init__(self, entries: Iterable[Entry], *, enforced: bool) -> None:
        self.enforced = enforced
        self._entries = list(entries)

    def short_link(self, domain: str, header: str | None) -> Needed:
        """What a short link on `domain`, sent under `header`, needs: the domain whitelisted
        for that header (or for every header)."""
        for e in self._entries:
            if e.kind == "short_domain" and e.value == domain and e.header in (None, header):
                return Needed("short_domain", domain, e.header, True, e.dlt_ref)
        return Needed("short_domain", domain, header, False, None)

    def plain_url(self, url: str) -> Needed:
        """What a link sent as it is needs: a whitelisted URL prefix it starts with."""
        try:
            wanted = url_prefix(url)
        except InvalidInputError:
            wanted = url
        for e in self._entries:
            if e.kind == "url" and _covers(_bare(e.value), _bare(wanted)):
                return Needed("url", e.value, None, True, e.dlt_ref)
        return Needed("url", wanted, None, False, None)

    def require(self, needed: Needed, slot: int) -> None:
        """Pass a whitelisted need (or any, when not enforced), else `url_not_whitelisted`."""
        if needed.whitelisted or not self.enforced:
            return
        if needed.kind == "url":
            what = f"the URL {needed.value} (or a start of it)"
        elif needed.header is None:
            what = (
                f"the short domain {needed.value} (the campaign names no DLT header: give it"
                " its dlt_header, or whitelist the domain for every header)"
            )
        else:
            what = f"the short domain {needed.value} with the header {needed.header}"
        context: dict[str, int | str] = {"slot": slot, "kind": needed.kind, "entry": needed.value}
        if needed.header is not None:
            context["header"] = needed.header
        raise TemplateError(
            f"slot {slot}: operators block this link until {what} is whitelisted on the"
            " organisation's DLT portal and added to its whitelist here",
            code="url_not_whitelisted",
            **context,
        )
