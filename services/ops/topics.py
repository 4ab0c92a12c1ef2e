"""Check that topics exist with the configuration we rely on (`clicktrack topics --check`).

A topic is checked for its partition count, its replication factor (each partition has that many
replicas, all in sync), and the topic configs of `shared.kafka.topic_configs`: retention,
cleanup policy, the broker's timestamps and, when there are replicas, `min.insync.replicas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.errors import DependencyError
from shared.kafka import errors, replication_factor, start_with_retries, topic_configs
from shared.settings import Settings


@dataclass(frozen=True)
class TopicReport:
    """What one topic looks like and how it differs from what we expect."""

    name: str
    exists: bool
    partitions: int = 0
    replicas: int = 0
    configs: dict[str, str] = field(default_factory=dict)
    """The values of the configs we check, as the broker reports them."""
    problems: tuple[str, ...] = ()
    """One sentence per difference; empty when the topic is as expected."""

    @property
    def ok(self) -> bool:
        return self.exists and not self.problems


async def check_topics(settings: Settings, names: list[str]) -> list[TopicReport]:
    """Compare each topic in `names` with the partitions, replicas and configs we expect."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await start_with_retries(
        admin.start, "kafka admin client", settings.kafka.bootstrap_servers, retries=3
    )
    try:
        with errors("describing topics", settings.kafka.bootstrap_servers):
            replicas = await replication_factor(admin, settings.kafka)
            existing = set(await admin.list_topics())
            present = [n for n in names if n in existing]
            described = (
                {t["topic"]: t for t in await admin.describe_topics(present)} if present else {}
            )
            configs = await _configs(admin, present)
    finally:
        await admin.close()
    expected = topic_configs(settings.kafka, replicas)
    reports = []
    for name in names:
        if name not in existing:
            reports.append(TopicReport(name, exists=False, problems=("topic does not exist",)))
            continue
        parts = described[name]["partitions"]
        problems = []
        if len(parts) != settings.kafka.topic_partitions:
            problems.append(
                f"has {len(parts)} partitions, expected {settings.kafka.topic_partitions}"
            )
        counts = {len(p["replicas"]) for p in parts}
        if counts != {replicas}:
            have = "/".join(str(c) for c in sorted(counts))
            problems.append(f"has {have} replicas per partition, expected {replicas}")
        lagging = sorted(p["partition"] for p in parts if len(p["isr"]) < len(p["replicas"]))
        if lagging:
            problems.append(f"partitions {lagging} have replicas out of sync")
        have_configs = {k: configs[name].get(k, "") for k in expected}
        for key, want in expected.items():
            if have_configs[key] != want:
                problems.append(f"{key} is {have_configs[key]!r}, expected {want!r}")
        reports.append(
            TopicReport(
                name,
                exists=True,
                partitions=len(parts),
                replicas=max(counts, default=0),
                configs=have_configs,
                problems=tuple(problems),
            )
        )
    return reports


async def align_topics(settings: Settings, names: list[str]) -> list[str]:
    """Give the existing topics in `names` the configs of `topic_configs` where they differ (a
    topic made before the broker stamped its records, say); returns the names changed. Run by
    `clicktrack topics`, an operator's command, never by a service as it starts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await start_with_retries(
        admin.start, "kafka admin client", settings.kafka.bootstrap_servers, retries=3
    )
    try:
        with errors("aligning topic configs", settings.kafka.bootstrap_servers):
            wanted = topic_configs(settings.kafka, await replication_factor(admin, settings.kafka))
            present = [n for n in names if n in set(await admin.list_topics())]
            configs = await _configs(admin, present)
            changed = [n for n in present if any(configs[n].get(k) != v for k, v in wanted.items())]
            if changed:
                await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, n, dict(wanted)) for n in changed]
                )
    finally:
        await admin.close()
    return changed


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, message, _type, name, entries in response.resources:
            if error_code:
                raise DependencyError(f"cannot read the configuration of topic {name}: {message}")
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found
