"""The session's clean-up deletes the topics tests made, and only those."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_TOPIC


@pytest.mark.parametrize(
    "name",
    [
        "clicks.test.0123456789",
        "clicks.dlq.test.0123456789",
        "clicks.fuzz.abcdef0123",
        "clicks.dlq.logs.abcdef01",
        "clicks.test.0123456789.webhooks-dlq",
    ],
)
def test_a_topic_a_test_made_is_deleted(name: str) -> None:
    assert TEST_TOPIC.match(name)


@pytest.mark.parametrize(
    "name",
    [
        "clicks.v1",
        "clicks.dlq.v1",
        "webhooks.dlq",
        "clicks.bench.0123456789",
        "clicks.test.v1",
        "clicks.test.0123456789.more",
        "__consumer_offsets",
    ],
)
def test_any_other_topic_is_kept(name: str) -> None:
    assert not TEST_TOPIC.match(name)
