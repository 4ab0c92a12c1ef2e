"""The click topic as a public contract (docs/click-topic.md).

Every event the redirector produces validates against the published JSON Schema (formats
included), its key is the code, and an event carrying fields a later version may add is still
read and counted by our own consumer.
"""

from __future__ import annotations

import json
from importlib import resources

import aiohttp
import asyncpg
import jsonschema
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.counter.counter import Counter
from shared import events
from shared.campaigns import CAMPAIGN_KINDS
from shared.links import create_campaign, create_link
from shared.orgs import create_org
from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.helpers import pg_counts, read_topic, seed_links, wait_for
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

KEYS = RecipientKeys(b"k" * 43)


def validator() -> jsonschema.Draft202012Validator:
    text = (resources.files("shared") / "schemas" / "click_event.v1.json").read_text()
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


async def test_every_kind_of_event_the_redirector_produces_validates(
    redirector_url: str, pool: asyncpg.Pool, settings: Settings
) -> None:
    org = await create_org(pool, "Contract Co", tracking=True)
    campaign = await create_campaign(pool, org, "Weekly", "recurring")
    personal = await create_link(
        pool,
        org_id=org,
        campaign_id=campaign,
        destination="https://a.example/",
        recipients=["r1"],
        keys=KEYS,
        code_length=settings.links.code_length,
    )
    shared = await create_link(
        pool,
        org_id=org,
        destination="https://b.example/x?y=1",
        code_length=settings.links.code_length,
    )
    (shared_code,) = shared.codes.values()
    asks = [
        ("GET", personal.codes["r1"], {"User-Agent": "Phone/1", "Referer": "https://sms.example/"}),
        ("HEAD", personal.codes["r1"], {"User-Agent": "WhatsApp/2"}),
        ("GET", shared_code, {"User-Agent": "U" * 2000}),  # cut to 512
        ("GET", shared_code, {}),  # no user agent at all
    ]
    async with aiohttp.ClientSession(skip_auto_headers=["User-Agent"]) as http:
        for method, code, headers in asks:
            async with http.request(
                method, f"{redirector_url}/{code}", headers=headers, allow_redirects=False
            ) as resp:
                assert resp.status == 302
    records = await read_topic(settings, settings.kafka.clicks_topic, len(asks))
    assert len(records) == len(asks)
    check = validator()
    by_key: dict[bytes, list[dict[str, object]]] = {}
    for record in records:
        body = orjson.loads(record.value)
        check.validate(body)
        assert record.key == str(body["code"]).encode()
        assert set(body) == set(events.ClickEvent.__struct_fields__)
        by_key.setdefault(record.key, []).append(body)
    mine = by_key[personal.codes["r1"].encode()]
    assert sorted((b["is_bot"], b["referer"]) for b in mine) == [
        (False, "https://sms.example/"),
        (True, None),
    ]
    theirs = by_key[shared_code.encode()]
    seen = {
        (b["campaign_id"], b["campaign_kind"], b["recipient_id"], b["user_agent"]) for b in theirs
    }
    assert seen == {(None, None, None, "U" * 512), (None, None, None, None)}


def test_the_schema_refuses_what_the_contract_forbids() -> None:
    check = validator()
    good = orjson.loads(events.encode(make_event()))
    for field, value in [
        ("event_id", "not-a-uuid"),
        ("occurred_at", "yesterday"),
        ("code", "has space"),
        ("link_id", 0),
        ("is_bot", "no"),
        ("schema_version", 2),
        ("campaign_kind", "newsletter"),
        ("channel", "SMS"),
        ("channel", "sms\n"),
        ("org_id", 2**63),
    ]:
        with pytest.raises(jsonschema.ValidationError):
            check.validate({**good, field: value})
    without = dict(good)
    del without["visitor_id"]
    with pytest.raises(jsonschema.ValidationError):
        check.validate(without)
    check.validate({**good, "added_later": {"any": ["shape"]}})  # additions are allowed


async def test_an_event_with_unknown_fields_is_counted_by_the_real_counter(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    known = make_event(link_id=77, visitor_id="v:future")
    await seed_links(pool, [known])
    newer = {
        **orjson.loads(events.encode(known)),
        "device": {"os": "Android", "model": "X1"},
        "geo_country": "IN",
        "tags": ["a", "b"],
    }
    raw = orjson.dumps(newer)
    assert events.decode(raw) == known  # the reader ignores what it does not know
    validator().validate(newer)
    await producer.send_and_wait(settings.kafka.clicks_topic, raw, key=known.code.encode())
    second = make_event(link_id=77, visitor_id="v:other")
    await producer.send_and_wait(
        settings.kafka.clicks_topic,
        orjson.dumps({**orjson.loads(events.encode(second)), "later": None}),
        key=b"k",
    )
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 77), (2, 2, 0)) == (2, 2, 0)
    finally:
        await counter.stop()
    assert counter.registry.get_sample_value("clicktrack_events_dead_lettered_total") == 0


async def test_postgres_refuses_kinds_and_channels_outside_the_shared_lists(
    pool: asyncpg.Pool,
) -> None:
    org = await create_org(pool, "Checks Co", tracking=True)
    insert = "INSERT INTO campaigns (org_id, name, kind, channel) VALUES ($1, 'c', $2, $3)"
    for kind in CAMPAIGN_KINDS:
        await pool.execute(insert, org, kind, "whatsapp")
    for kind, channel in [("newsletter", "sms"), ("resend", "SMS"), ("resend", "sms\n")]:
        with pytest.raises(asyncpg.CheckViolationError):
            await pool.execute(insert, org, kind, channel)
    hourly = (
        "INSERT INTO quarter_counters (link_id, quarter, channel, org_id, campaign_kind)"
        " VALUES (1, now(), $1, 1, $2)"
    )
    await pool.execute(hourly, "sms", None)
    for channel, kind in [("rcs", "newsletter"), ("", "resend")]:
        with pytest.raises(asyncpg.CheckViolationError):
            await pool.execute(hourly, channel, kind)


async def test_events_postgres_would_refuse_are_dead_lettered_and_counting_goes_on(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    # Without the decoder's checks one such event would fail its whole batch on the CHECKs.
    await seed_links(pool, [make_event(link_id=78)])
    good = orjson.loads(events.encode(make_event(link_id=78, visitor_id="v:a")))
    poison = [
        orjson.dumps({**good, "campaign_kind": "newsletter"}),
        orjson.dumps({**good, "channel": "SMS"}),
    ]
    later = events.encode(make_event(link_id=78, visitor_id="v:b"))
    for value in [orjson.dumps(good), *poison, later]:
        await producer.send_and_wait(settings.kafka.clicks_topic, value, key=b"k")
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 78), (2, 2, 0)) == (2, 2, 0)
        dead = await read_topic(settings, settings.kafka.dlq_topic, len(poison))
    finally:
        await counter.stop()
    assert [(r.value, dict(r.headers)["reason"].decode()) for r in dead] == [
        (poison[0], "field 'campaign_kind': invalid enum value 'newsletter'"),
        (poison[1], "field 'channel' 'SMS' does not match ^[a-z][a-z0-9_]{0,31}(?!\\n)$"),
    ]
