"""Click events from the real redirector to the real Kafka: content, bots, spool and replay."""

from __future__ import annotations

import asyncio
import json
import os
from importlib import resources
from pathlib import Path

import aiohttp
import asyncpg
import jsonschema
import orjson
import pytest

from services.redirector.kafka_sink import partition_of
from services.redirector.visitors import COOKIE_NAME
from shared.links import CreatedLink, create_campaign, create_link, create_org
from shared.settings import Settings
from tests.helpers import read_topic
from tests.integration.redirector_support import (
    events,
    readiness,
    redirector,
    wait_readiness,
)
from tests.unit.test_legacy_spool import old_record

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/p/42?ref=sms"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"
NO_BROKER = "127.0.0.1:18099"  # nothing listens there: Kafka is "down"
SCHEMA = json.loads((resources.files("shared") / "schemas" / "click_event.v1.json").read_text())


@pytest.fixture
async def link(pool: asyncpg.Pool) -> CreatedLink:
    org_id = await create_org(pool, "Acme", tracking=True)
    campaign_id = await create_campaign(pool, org_id, "Resend", "resend")
    return await create_link(
        pool,
        org_id=org_id,
        campaign_id=campaign_id,
        destination=DESTINATION,
        code_length=Settings().links.code_length,
    )


async def click(
    url: str, ua: str, *, method: str = "GET", **headers: str
) -> aiohttp.ClientResponse:
    async with (
        aiohttp.ClientSession(headers={"User-Agent": ua, **headers}) as http,
        http.request(method, url, allow_redirects=False) as resp,
    ):
        return resp


def log_files(settings: Settings) -> list[str]:
    return sorted(p for p in os.listdir(settings.redirector.spool_dir) if p.startswith("clicks-"))


async def test_every_click_is_one_schema_valid_event_on_the_keyed_partition(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    code = link.codes[None]
    async with redirector(settings) as app:
        answers = await asyncio.gather(
            *(click(f"{app.url}/{code}", f"{PHONE} n/{i}") for i in range(300))
        )
        assert [a.status for a in answers] == [302] * 300
    # Closing the app shipped the log: everything is on the topic now.
    assert app.metric("clicktrack_events_logged_total") == 300
    assert app.metric("clicktrack_events_sent_total") == 300
    records = await read_topic(settings, settings.kafka.clicks_topic, 301, seconds=3)
    assert len(records) == 300
    assert {r.key for r in records} == {code.encode()}
    assert {r.partition for r in records} == {partition_of(code.encode(), 3)}
    bodies = [orjson.loads(r.value) for r in records]
    for body in bodies:
        jsonschema.validate(body, SCHEMA)
    assert len({b["event_id"] for b in bodies}) == 300
    assert {b["user_agent"] for b in bodies} == {f"{PHONE} n/{i}" for i in range(300)}
    assert {(b["is_bot"], b["outcome"], b["campaign_kind"], b["ip"]) for b in bodies} == {
        (False, "redirect", "resend", "127.0.0.0")
    }
    assert app.metric("clicktrack_events_dropped_total") == 0


async def test_bots_are_redirected_flagged_and_get_no_cookie(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    code = link.codes[None]
    async with redirector(settings) as app:
        target = f"{app.url}/{code}"
        answers = [
            await click(target, "WhatsApp/2.23.20.0 A"),
            await click(target, "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
            await click(target, PHONE, method="HEAD"),
            await click(target, PHONE, Referer="https://nam02.safelinks.protection.outlook.com/"),
            await click(target, "python-requests/2.32.3"),
            await click(target, PHONE),
        ]
        assert [a.status for a in answers] == [302] * 6
        assert [COOKIE_NAME in a.cookies for a in answers] == [False] * 5 + [True]
        assert app.metric("clicktrack_bot_clicks_total", {"signal": "ua"}) == 3
    got = {(e["user_agent"], e["bot_reason"]) for e in await events(settings, 6) if e["is_bot"]}
    assert got == {
        ("WhatsApp/2.23.20.0 A", "ua:whatsapp"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "ua:slack"),
        (PHONE, "head"),
        (PHONE, "referer:safelinks"),
        ("python-requests/2.32.3", "ua:http-library"),
    }


async def test_configured_networks_are_bots(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    async with redirector(settings.changed(BOT_CIDRS=("127.0.0.0/8",))) as app:
        assert (await click(f"{app.url}/{link.codes[None]}", PHONE)).status == 302
    (event,) = await events(settings, 1)
    assert (event["is_bot"], event["bot_reason"]) == (True, "cidr:127.0.0.0/8")


async def test_kafka_down_at_start_logs_then_a_restart_ships_everything(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    code = link.codes[None]
    down = settings.changed(KAFKA_BOOTSTRAP_SERVERS=NO_BROKER)
    async with redirector(down) as app:
        answers = await asyncio.gather(
            *(click(f"{app.url}/{code}", f"{PHONE} d/{i}") for i in range(50))
        )
        assert [a.status for a in answers] == [302] * 50
        unshipped = app.redirector.publisher.log.unshipped_bytes
        assert unshipped > 50 * 200
        assert await readiness(app) == (
            503,
            {"status": "degraded", "sink": "not_shipping", "unshipped_bytes": unshipped},
        )
        assert app.metric("clicktrack_events_logged_total") == 50
        assert app.metric("clicktrack_events_sent_total") == 0
    assert len(log_files(settings)) == 1  # the clicks wait on disk
    async with redirector(settings) as back:  # the same folder, Kafka reachable again
        await wait_readiness(back, 200, seconds=10)
        for _ in range(100):  # the shipper works in the background: bounded wait (10 s)
            if back.metric("clicktrack_events_sent_total") == 50:
                break
            await asyncio.sleep(0.1)
        assert back.metric("clicktrack_events_sent_total") == 50
        assert back.redirector.publisher.log.unshipped_bytes == 0
    assert log_files(settings) == []  # shipped files are deleted, an empty one is not kept
    bodies = await events(settings, 51, seconds=3)
    assert sorted(b["user_agent"] for b in bodies) == sorted(f"{PHONE} d/{i}" for i in range(50))


async def test_the_log_reaches_the_topic_in_the_order_it_was_written(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    async with redirector(settings) as app:
        publisher = app.redirector.publisher
        for i in range(3000):  # no await in between: one gathered send carries them
            publisher.publish(b"k", b'{"n":%d}' % i)
        for _ in range(100):
            if app.metric("clicktrack_events_sent_total") == 3000:
                break
            await asyncio.sleep(0.1)
        assert app.metric("clicktrack_events_sent_total") == 3000
    records = await read_topic(settings, settings.kafka.clicks_topic, 3001, seconds=3)
    assert [orjson.loads(r.value)["n"] for r in records] == list(range(3000))  # one partition
    assert app.metric("clicktrack_events_dropped_total") == 0


async def test_the_clicks_of_one_loop_turn_are_one_write_done_before_any_answer(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    async with redirector(settings) as app:
        publisher = app.redirector.publisher
        log = publisher.log
        before = log.end()
        first = [publisher.publish(b"k", b'{"n":%d}' % i) for i in range(3)]
        assert log.end() == before and not first[0].done()  # nothing written yet
        await first[0]
        assert first[1] is first[0] and first[2] is first[0]
        assert log.end().offset - before.offset == 3 * (16 + 1 + 7)  # header, key, value
        second = publisher.publish(b"k", b'{"n":3}')
        assert second is not first[0] and not second.done()  # the next turn's
        await second
        assert app.metric("clicktrack_click_log_writes_total") == 2
        assert app.metric("clicktrack_events_logged_total") == 4
        # Real clicks, 20 at once: each answered only after its turn's write.
        taps = [click(f"{app.url}/{link.codes[None]}", PHONE) for _ in range(20)]
        assert [r.status for r in await asyncio.gather(*taps)] == [302] * 20
        assert app.metric("clicktrack_events_logged_total") == 24
        assert app.metric("clicktrack_click_log_writes_total") <= 2 + 20


def plant_old_spool(folder: Path, files: list[list[tuple[bytes, bytes]]]) -> None:
    """The files of the spool an older redirector kept during an outage (format of c0c54a4)."""
    folder.mkdir(parents=True, exist_ok=True)
    for seq, part in enumerate(files, start=1):
        (folder / f"spool-{seq:012d}.log").write_bytes(b"".join(old_record(*r) for r in part))


async def test_an_older_redirectors_spool_reaches_the_topic_after_an_upgrade(
    settings: Settings, pool: asyncpg.Pool, topics: list[str]
) -> None:
    folder = Path(settings.redirector.spool_dir)
    old = [(b"code%d" % i, b'{"old":%d}' % i) for i in range(40)]
    plant_old_spool(folder, [old[:25], old[25:]])
    async with redirector(settings) as app:
        for _ in range(100):
            if app.metric("clicktrack_events_sent_total") == 40:
                break
            await asyncio.sleep(0.1)
        assert app.metric("clicktrack_events_sent_total") == 40
        assert app.metric("clicktrack_events_logged_total") == 40
    assert not [p for p in os.listdir(folder) if p.startswith("spool-")]
    got = await read_topic(settings, settings.kafka.clicks_topic, 41, seconds=3)
    assert sorted((r.key, r.value) for r in got) == sorted(old)


async def test_a_full_log_drops_and_counts_exactly_what_does_not_fit(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    down = settings.changed(KAFKA_BOOTSTRAP_SERVERS=NO_BROKER, SPOOL_MAX_MB=1)
    value = b"v" * 1000  # with its 10-byte key and 16-byte header: 1026 bytes a record
    async with redirector(down) as app:
        publisher = app.redirector.publisher
        turn = [publisher.publish(b"0123456789", value) for _ in range(1100)]
        assert len(set(turn)) == 1  # one loop turn: one future, one write attempt
        await turn[0]
        fits = (1024 * 1024) // 1026
        assert app.metric("clicktrack_events_logged_total") == fits
        assert app.metric("clicktrack_events_dropped_total") == 1100 - fits
