"""Recipients' privacy on the real stack: no phone number in clear anywhere after a campaign is
minted, clicked, counted and relayed; erasure that keeps counts exact, with events in flight; the
purge of an organisation, late events included."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.counter import retention
from services.counter.counter import Counter
from services.relay import endpoints
from services.relay.relay import Relay
from shared import audit, db, events
from shared.erasure import forget_in_redis, prune_tombstones, pseudonymise_legacy, purge_org
from shared.kafka import ensure_topics
from shared.link_cache import cache_codes
from shared.links import create_campaign, create_org
from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.helpers import keyed_org, pg_counts, read_topic, wait_for
from tests.integration.api_client import WHITELISTED, ApiClient
from tests.integration.redirector_support import Running, redirector
from tests.integration.test_relay import Receiver
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

PHONES = ["+919800000001", "+919800000002", "+919800000003"]
NEEDLES = [*PHONES, *(p.removeprefix("+91") for p in PHONES)]
"""What must appear nowhere: the numbers, with and without the country code."""
PHONE_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/124.0 Mobile Safari/537.36"


class RestartableCounter:
    """A counter that a test may stop and start again."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._counter: Counter | None = None

    async def start(self) -> None:
        self._counter = Counter(self._settings)
        await self._counter.start()

    async def stop(self) -> None:
        if self._counter is not None:
            await self._counter.stop()
            self._counter = None


@pytest.fixture
async def counter(
    settings: Settings, pool: asyncpg.Pool, topics: list[str]
) -> AsyncIterator[RestartableCounter]:
    running = RestartableCounter(settings)
    await running.start()
    yield running
    await running.stop()


async def tap(app: Running, code: str, ua: str = PHONE_UA) -> None:
    """One tap on `code`, on the short domain the redirector serves (`SHORT_DOMAIN`)."""
    host = app.redirector.settings.links.short_domain
    async with (
        aiohttp.ClientSession(headers={"User-Agent": ua, "Host": host}) as http,
        http.get(f"{app.url}/{code}", allow_redirects=False) as resp,
    ):
        assert resp.status == 302


async def mint(api: ApiClient, key: str, link_id: int, recipients: list[str]) -> dict[str, str]:
    answer = await api.call(
        "POST",
        "/v1/links/{link_id}/recipients",
        auth=key,
        json={"recipients": recipients},
        link_id=link_id,
    )
    return {c["recipient"]: c["code"] for c in answer["codes"]}


def pg_dump(settings: Settings) -> str:
    """Schema and data of this test's schema, as `pg_dump` writes them."""
    done = subprocess.run(
        ["pg_dump", "--no-owner", "-n", settings.postgres.schema, settings.postgres.dsn.reveal()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )
    return done.stdout


async def redis_dump(client: aioredis.Redis) -> str:
    """Every key of the test database and its value (the fixture flushed it before the test)."""
    parts: list[str] = []
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        if kind == "string":
            value: object = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        else:
            value = kind
        parts.append(f"{key!r}={value!r}")
    return "\n".join(parts)


def found_in(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


async def test_no_phone_number_in_clear_in_tables_redis_topic_or_webhooks(
    api: ApiClient,
    api_settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    counter: RestartableCounter,
    receiver: tuple[Receiver, str],
) -> None:
    settings = api_settings.changed(RELAY_START_FROM="earliest", WEBHOOK_ALLOW_INSECURE=True)
    await ensure_topics(settings.kafka, [settings.relay.webhook_dlq_topic])
    state, base = receiver
    org_id, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    sealer = endpoints.secrets_sealer(settings.relay.webhook_secret_key)
    url = f"{base}/hook"
    _, secret = await endpoints.register(
        pool, org_id, url, allow_insecure=True, sealer=sealer, operator="test", ticket=None
    )
    campaign = await api.new_campaign(key)
    link_id = await api.new_link(key, campaign, "https://shop.example.in/diwali")
    codes = await mint(api, key, link_id, PHONES)
    rendered = await api.render(
        key,
        campaign_id=campaign,
        recipient=PHONES[0],
        template="Dear {#var#}, your offer: {#var#} -ACME",
        values=[PHONES[0], "https://shop.example.in/diwali"],
    )
    assert codes[PHONES[0]] in rendered["text"]  # the same code: the recipient is known
    relay = Relay(settings)
    await relay.start()
    try:
        async with redirector(settings) as app:
            for phone in (PHONES[0], PHONES[0], PHONES[1]):  # the third never taps
                await tap(app, codes[phone])
        assert await wait_for(lambda: pg_counts(pool, link_id), (3, 2, 0)) == (3, 2, 0)
        delivered = await wait_for(lambda: _delivered(state, secret), 3)
    finally:
        await relay.stop()
    assert delivered == 3

    records = await read_topic(settings, settings.kafka.clicks_topic, 3)
    topic = "\n".join(f"{r.key!r} {r.value!r}" for r in records)
    hooks = "\n".join(body.decode() for _, body, _ in state.requests["/hook"])
    dump, cache = pg_dump(settings), await redis_dump(redis)
    assert {"tables": found_in(dump), "redis": found_in(cache)} == {"tables": [], "redis": []}
    assert {"topic": found_in(topic), "webhooks": found_in(hooks)} == {"topic": [], "webhooks": []}
    # What they hold instead: the pseudonym, which the organisation can compute and reveal.
    vault = RecipientKeys(settings.api.recipient_key).vault(org_id)
    first = vault.pseudonym(PHONES[0])
    assert first in topic and first in hooks and first in dump
    lookup = {"pseudonyms": [vault.pseudonym(p) for p in PHONES]}
    got = await api.call("POST", "/v1/recipients/lookup", auth=key, json=lookup)
    assert got == {"recipients": {vault.pseudonym(p): p for p in PHONES}}
    # The lists show the organisation its own numbers, opened from their sealed copies.
    route = "/v1/campaigns/{campaign_id}/clickers"
    clickers = await api.call("GET", route, auth=key, campaign_id=campaign)
    assert sorted((c["recipient"], c["pseudonym"], c["clicks"]) for c in clickers["items"]) == [
        (PHONES[0], first, 2),
        (PHONES[1], vault.pseudonym(PHONES[1]), 1),
    ]
    route = "/v1/campaigns/{campaign_id}/non-clickers"
    non = await api.call("GET", route, auth=key, campaign_id=campaign)
    assert non["items"] == [{"recipient": PHONES[2], "pseudonym": vault.pseudonym(PHONES[2])}]
    _, other = await api.new_org("Other", tracking=True)  # another organisation reads nothing
    assert await api.call("POST", "/v1/recipients/lookup", auth=other, json=lookup) == {
        "recipients": {}
    }
    await api.call("GET", route, auth=other, expect=404, campaign_id=campaign)


async def _delivered(state: Receiver, secret: str) -> int:
    return len(state.delivered_ids("/hook", secret))


async def test_erasure_keeps_counts_and_leaves_nothing_that_leads_back_events_in_flight_too(
    api: ApiClient,
    api_settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    counter: RestartableCounter,
) -> None:
    settings = api_settings
    org_id, key = await api.new_org("Acme", tracking=True)
    campaign = await api.new_campaign(key)
    link_id = await api.new_link(key, campaign, "https://shop.example.in/diwali")
    codes = await mint(api, key, link_id, PHONES)
    vault = RecipientKeys(settings.api.recipient_key).vault(org_id)
    erased = vault.pseudonym(PHONES[0])
    async with redirector(settings) as app:
        await tap(app, codes[PHONES[0]])
        await tap(app, codes[PHONES[1]])
        assert await wait_for(lambda: pg_counts(pool, link_id), (2, 2, 0)) == (2, 2, 0)
        await counter.stop()
        # Two more taps of the first recipient wait on the topic, with its pseudonym...
        await tap(app, codes[PHONES[0]])
        await tap(app, codes[PHONES[0]])
        # ... while it is erased.
        got = await api.call(
            "DELETE",
            "/v1/recipients/{recipient}",
            auth=key,
            recipient=quote(PHONES[0], safe=""),
        )
        assert got == {"erased": 1, "unknown": 0, "codes": 1}
        entries = await audit.list_entries(pool, org_id=org_id)
        (entry,) = [e for e in entries if e.action == "recipients.erased"]
        assert entry.detail == {"erased": 1, "codes": 1}
        assert entry.operator == f"api-key:org {org_id}"  # how many, never whom
        # The redirectors forget the code; its next tap carries the new pseudonym.
        forgotten = await wait_for(lambda: _forgotten(app, codes[PHONES[0]]), True, seconds=10)
        assert forgotten
        await tap(app, codes[PHONES[0]])
    await counter.start()
    # 3 more clicks, all of one known visitor: the uniques do not move
    assert await wait_for(lambda: pg_counts(pool, link_id), (5, 2, 0)) == (5, 2, 0)
    both = "SELECT total_clicks, unique_clicks FROM campaign_counters WHERE campaign_id = $1"
    assert tuple(await pool.fetchrow(both, campaign)) == (5, 2)
    # the clickers list keeps the erased recipient's 4 clicks, under no id
    clickers = await api.call(
        "GET", "/v1/campaigns/{campaign_id}/clickers", auth=key, campaign_id=campaign
    )
    assert sorted((c["recipient"] or "", c["clicks"]) for c in clickers["items"]) == [
        ("", 4),
        (PHONES[1], 1),
    ]
    records = await read_topic(settings, settings.kafka.clicks_topic, 5)
    pseudonyms = [events.decode(r.value).recipient_id for r in records]
    second = vault.pseudonym(PHONES[1])
    assert (pseudonyms.count(erased), pseudonyms.count(second)) == (3, 1)  # 2 in flight
    (renamed,) = {p for p in pseudonyms if p not in (erased, second)}  # after the erasure
    assert renamed is not None and len(renamed) == 32

    async with pool.acquire() as conn:
        visitors = await conn.fetch(
            "SELECT visitor_id FROM link_visitors WHERE link_id = $1 ORDER BY 1", link_id
        )
        assert sorted(v[0] for v in visitors) == sorted([f"r:{renamed}", f"r:{second}"])
        assert await vault.reveal(conn, [erased]) == {}
        assert await vault.reveal(conn, [second]) == {second: PHONES[1]}
        # Only the tombstone the counter needs for late events still names the old pseudonym,
        # for as long as the topic may hold it; pruned, nothing does.
        assert [line for line in pg_dump(settings).splitlines() if erased in line] == [
            f"{tomb['id']}\t{org_id}\t{erased}\t{renamed}\t{tomb['at']}"
            for tomb in await conn.fetch(
                "SELECT id, created_at::text AS at FROM privacy_tombstones"
            )
        ]
        assert await prune_tombstones(conn, keep=timedelta(0)) == 1
    dump = pg_dump(settings)
    assert erased not in dump and found_in(dump) == []
    assert erased not in await redis_dump(redis)
    # erasing again finds nothing
    again = await api.call(
        "DELETE",
        "/v1/recipients/{recipient}",
        auth=key,
        expect=404,
        recipient=quote(PHONES[0], safe=""),
    )
    assert again["error"] == "not_found"


async def test_a_recipient_added_again_after_an_erasure_is_a_new_person(
    api: ApiClient,
    api_settings: Settings,
    pool: asyncpg.Pool,
    counter: RestartableCounter,
) -> None:
    """The same id gives the same pseudonym: the erasure's tombstone must not take the clicks
    of the code minted for them afterwards, only those of the codes it renamed."""
    settings = api_settings
    org_id, key = await api.new_org("Acme", tracking=True)
    campaign = await api.new_campaign(key)
    link_id = await api.new_link(key, campaign, "https://shop.example.in/diwali")
    old = await mint(api, key, link_id, PHONES[:2])
    async with redirector(settings) as app:
        await counter.stop()
        await tap(app, old[PHONES[0]])  # on the topic when the erasure comes
        got = await api.call(
            "DELETE", "/v1/recipients/{recipient}", auth=key, recipient=quote(PHONES[0], safe="")
        )
        assert got == {"erased": 1, "unknown": 0, "codes": 1}
        again = await mint(api, key, link_id, PHONES[:1])  # the customer subscribes again
        assert again[PHONES[0]] != old[PHONES[0]]
        await tap(app, again[PHONES[0]])
        await tap(app, again[PHONES[0]])
    await counter.start()
    # two people: the erased one (1 click) and the one added again (2 clicks)
    assert await wait_for(lambda: pg_counts(pool, link_id), (3, 2, 0)) == (3, 2, 0)
    clickers = await api.call(
        "GET", "/v1/campaigns/{campaign_id}/clickers", auth=key, campaign_id=campaign
    )
    assert sorted((c["recipient"] or "", c["clicks"]) for c in clickers["items"]) == [
        ("", 1),
        (PHONES[0], 2),
    ]
    nonclickers = await api.call(
        "GET", "/v1/campaigns/{campaign_id}/non-clickers", auth=key, campaign_id=campaign
    )
    assert [c["recipient"] for c in nonclickers["items"]] == [PHONES[1]]
    vault = RecipientKeys(settings.api.recipient_key).vault(org_id)
    visitors = await pool.fetch("SELECT visitor_id FROM link_visitors WHERE link_id = $1", link_id)
    assert f"r:{vault.pseudonym(PHONES[0])}" in {v[0] for v in visitors}


async def test_bulk_erasure_by_csv(
    api: ApiClient, api_settings: Settings, pool: asyncpg.Pool
) -> None:
    org_id, key = await api.new_org("Acme", tracking=True)
    campaign = await api.new_campaign(key)
    link_id = await api.new_link(key, campaign, "https://shop.example.in/diwali")
    await mint(api, key, link_id, PHONES)
    body = f"recipient\n{PHONES[0]}\n{PHONES[2]}\nnever-minted\n".encode()
    got = await api.call("POST", "/v1/recipients/erasures", auth=key, data=body)
    assert got == {"erased": 2, "unknown": 1, "codes": 2}
    vault = RecipientKeys(api_settings.api.recipient_key).vault(org_id)
    async with pool.acquire() as conn:
        left = await vault.reveal(conn, [vault.pseudonym(p) for p in PHONES])
        codes = await conn.fetch("SELECT recipient_id FROM codes WHERE link_id = $1", link_id)
    assert left == {vault.pseudonym(PHONES[1]): PHONES[1]}
    assert len(codes) == 3 and {c[0] for c in codes} & {vault.pseudonym(p) for p in PHONES} == {
        vault.pseudonym(PHONES[1])
    }


async def test_purge_removes_every_row_and_key_of_an_organisation_and_its_late_events(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    producer: AIOKafkaProducer,
    counter: RestartableCounter,
) -> None:
    keys = RecipientKeys(settings.api.recipient_key)
    made = {name: await keyed_org(pool, settings, name, PHONES[:2]) for name in ("Gone", "Kept")}
    async with redirector(settings) as app:
        for _, _, link in made.values():
            for code in link.codes.values():
                await tap(app, code)
    gone, kept = made["Gone"], made["Kept"]
    for _, _, link in made.values():
        counts = await wait_for(lambda i=link.link_id: pg_counts(pool, i), (2, 2, 0))
        assert counts == (2, 2, 0)
    before = await _rows_of(pool, *gone[:2], [gone[2].link_id])
    assert sum(before.values()) > 20 and before["recipients.org_id"] == 2
    gone_keys = await _keys_of(redis, [gone[2].link_id], [gone[1]], list(gone[2].codes.values()))
    kept_keys = await _keys_of(redis, [kept[2].link_id], [kept[1]], list(kept[2].codes.values()))
    assert len(gone_keys) == len(kept_keys) >= 4  # counters of all time and of the day, caches

    async with pool.acquire() as conn:
        purged = await purge_org(conn, gone[0], operator="cli:test", ticket="DPDP-42")
    await forget_in_redis(
        redis, codes=purged.codes, link_ids=purged.link_ids, campaign_ids=purged.campaign_ids
    )
    assert (purged.link_ids, purged.campaign_ids) == ([gone[2].link_id], [gone[1]])
    assert purged.rows["codes"] == 2 and purged.rows["recipients"] == 2
    entries = await audit.list_entries(pool, org_id=gone[0])  # the trail outlives the org
    (entry,) = [e for e in entries if e.action == "org.purged"]
    assert (entry.operator, entry.action, entry.ticket) == ("cli:test", "org.purged", "DPDP-42")
    assert entry.detail["rows"]["codes"] == 2
    # A late event of the purged organisation: dropped, nothing comes back.
    late = make_event(
        org_id=gone[0],
        link_id=gone[2].link_id,
        campaign_id=gone[1],
        campaign_kind="one_time",
        code=gone[2].codes[PHONES[0]],
        recipient_id=keys.vault(gone[0]).pseudonym(PHONES[0]),
    )
    extra = make_event(
        org_id=kept[0], link_id=kept[2].link_id, campaign_id=kept[1], campaign_kind="one_time"
    )
    for event in (late, extra):
        await producer.send_and_wait(settings.kafka.clicks_topic, events.encode(event), b"k")
    assert await wait_for(lambda: pg_counts(pool, kept[2].link_id), (3, 3, 0)) == (3, 3, 0)

    left = await _rows_of(pool, *gone[:2], [gone[2].link_id])
    assert {table: n for table, n in left.items() if n} == {}
    assert await _keys_of(redis, [gone[2].link_id], [gone[1]], list(gone[2].codes.values())) == []
    now_kept = await _keys_of(redis, [kept[2].link_id], [kept[1]], list(kept[2].codes.values()))
    assert [k for k, _ in now_kept] == [k for k, _ in kept_keys]  # counted on, none deleted


async def _rows_of(
    pool: asyncpg.Pool, org_id: int, campaign_id: int, link_ids: list[int]
) -> dict[str, int]:
    """Rows naming the organisation, its campaign or its links, in every table of the schema."""
    columns = await pool.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
        " AND column_name IN ('org_id', 'link_id', 'campaign_id', 'scope_id', 'id')"
    )
    partitions = {
        r[0]
        for r in await pool.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relispartition"
        )
    }
    found: dict[str, int] = {}
    for table, column in columns:
        if table in partitions or (column == "id" and table not in ("orgs", "campaigns", "links")):
            continue
        if table in ("privacy_tombstones", "operator_audit"):
            continue  # the purge's own tombstone, and the audit trail (which outlives it)
        owner = {"orgs": org_id, "campaigns": campaign_id}.get(table)
        if column == "id" and owner is None:
            wanted: object = link_ids
        elif column == "id":
            wanted = [owner]
        else:
            wanted = {"org_id": [org_id], "campaign_id": [campaign_id], "link_id": link_ids}.get(
                column, [campaign_id, *link_ids]
            )
        n = await pool.fetchval(
            f'SELECT count(*) FROM "{table}" WHERE {column} = ANY($1::bigint[])', wanted
        )
        found[f"{table}.{column}"] = n
    return found


async def _keys_of(
    client: aioredis.Redis, link_ids: list[int], campaign_ids: list[int], codes: list[str]
) -> list[tuple[bytes, object]]:
    wanted = (
        [f"ct:link:{i}" for i in link_ids]
        + [f"ct:campaign:{i}" for i in campaign_ids]
        + [f"ct:code1:{c}" for c in codes]
        + [f"ct:link1:{i}" for i in link_ids]
    )
    found: list[tuple[bytes, object]] = []
    for pattern in wanted:
        for key in sorted([k async for k in client.scan_iter(match=pattern + "*")]):
            if key.decode() == pattern or key.decode().startswith(pattern + ":"):
                kind = (await client.type(key)).decode()
                value = await client.hgetall(key) if kind == "hash" else await client.get(key)
                found.append((key, value))
    return found


async def _forgotten(app: Running, code: str) -> bool:
    return app.redirector.resolver.codes.get(code) is None


async def test_ids_stored_before_pseudonyms_become_pseudonyms_counts_unchanged(
    settings: Settings, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    """A schema as it was before migration 0080 (today's main), holding phone numbers as given in
    codes, visitor rows, per-recipient clicks and the code cache: `clicktrack migrate` (the SQL
    migrations, `pseudonymise_legacy`, then the cached codes dropped) leaves none in clear."""
    schema, keys = settings.postgres.schema, RecipientKeys(settings.api.recipient_key)
    async with db.pool(settings.postgres, max_size=1) as pool, pool.acquire() as conn:
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            await conn.execute(
                "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, sql in db.migration_files():
                if version < "0080":
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES ($1)", version)
            org_id = await create_org(conn, "Old Co", tracking=True)
            campaign = await create_campaign(conn, org_id, "Old", "one_time")
            link_id = await conn.fetchval(
                "INSERT INTO links (org_id, campaign_id, destination)"
                " VALUES ($1, $2, 'https://old.example/') RETURNING id",
                org_id,
                campaign,
            )
            today = datetime.now(UTC).date()
            await retention.ensure_partitions(conn, [today])
            for i, phone in enumerate(PHONES[:2]):
                await conn.execute(
                    "INSERT INTO codes (code, link_id, recipient_id) VALUES ($1, $2, $3)",
                    f"OldCode000{i}",
                    link_id,
                    phone,
                )
                await conn.execute(
                    "INSERT INTO link_visitors (link_id, visitor_id) VALUES ($1, $2)",
                    link_id,
                    f"r:{phone}",
                )
                await conn.execute(
                    "INSERT INTO campaign_visitors (campaign_id, visitor_id) VALUES ($1, $2)",
                    campaign,
                    f"r:{phone}",
                )
            await conn.execute(
                "INSERT INTO daily_visitors (day, scope, scope_id, visitor_id)"
                " VALUES ($1, 'l', $2, $3)",
                today,
                link_id,
                f"r:{PHONES[0]}",
            )
            await conn.execute(
                "INSERT INTO quarter_visitors (link_id, quarter, visitor_id, channel, org_id,"
                " campaign_id, campaign_kind) VALUES ($1, date_trunc('hour', now()), $2, 'sms',"
                " $3, $4, 'one_time')",
                link_id,
                f"r:{PHONES[0]}",
                org_id,
                campaign,
            )
            await conn.execute(
                "INSERT INTO recipient_clicks (link_id, recipient_id, campaign_id, clicks,"
                " first_click, last_click) VALUES ($1, $2, $3, 2, now(), now())",
                link_id,
                PHONES[0],
                campaign,
            )
            await cache_codes(redis, [("OldCode0000", link_id, PHONES[0])], 600)
            assert found_in(pg_dump(settings)) == [*PHONES[:2], *NEEDLES[3:5]]
            assert found_in(await redis_dump(redis)) == [PHONES[0], NEEDLES[3]]

            applied = await db.migrate(conn, schema)
            assert applied == [v for v, _ in db.migration_files() if v >= "0080"]
            legacy = await pseudonymise_legacy(conn, keys)
            assert (legacy.erased, sorted(legacy.codes)) == (2, ["OldCode0000", "OldCode0001"])
            await forget_in_redis(redis, codes=legacy.codes)  # as `clicktrack migrate` does
            again = await pseudonymise_legacy(conn, keys)
            assert (again.erased, again.codes) == (0, [])  # done once
            assert found_in(pg_dump(settings)) == []
            assert found_in(await redis_dump(redis)) == []
            vault = keys.vault(org_id)
            names = [vault.pseudonym(p) for p in PHONES[:2]]
            codes = await conn.fetch("SELECT code, recipient_id FROM codes ORDER BY code")
            assert [(c[0], c[1]) for c in codes] == [
                ("OldCode0000", names[0]),
                ("OldCode0001", names[1]),
            ]
            for table in ("link_visitors", "campaign_visitors"):
                got = await conn.fetch(f"SELECT visitor_id FROM {table} ORDER BY 1")
                assert sorted(v[0] for v in got) == sorted(f"r:{n}" for n in names), table
            assert await conn.fetchval("SELECT visitor_id FROM daily_visitors") == f"r:{names[0]}"
            assert await conn.fetchval("SELECT visitor_id FROM quarter_visitors") == f"r:{names[0]}"
            clicks = await conn.fetch("SELECT recipient_id, clicks FROM recipient_clicks")
            assert [tuple(c) for c in clicks] == [(names[0], 2)]

            # A tap published before the migration, with the number, is counted after it: for
            # the pseudonym its code holds now, as the same visitor.
            late = make_event(
                code="OldCode0000",
                link_id=link_id,
                org_id=org_id,
                campaign_id=campaign,
                campaign_kind="one_time",
                recipient_id=PHONES[0],
                visitor_id=f"r:{PHONES[0]}",
            )
            await producer.send_and_wait(settings.kafka.clicks_topic, events.encode(late), b"k")
            counter = Counter(settings)
            await counter.start()
            try:
                done = "SELECT count(*) FROM processed_events"
                assert await wait_for(lambda: conn.fetchval(done), 1) == 1
            finally:
                await counter.stop()
            clicks = await conn.fetch("SELECT recipient_id, clicks FROM recipient_clicks")
            assert [tuple(c) for c in clicks] == [(names[0], 3)]
            got = await conn.fetch("SELECT visitor_id FROM link_visitors ORDER BY 1")
            assert sorted(v[0] for v in got) == sorted(f"r:{n}" for n in names)
            assert found_in(pg_dump(settings)) == []
            assert await vault.reveal(conn, names) == dict(zip(names, PHONES[:2], strict=True))
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
