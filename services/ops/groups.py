"""Describe consumer groups without aiokafka 0.14's DescribeGroups v3 bug.

aiokafka 0.14 negotiates DescribeGroups v3 with Kafka 4.x brokers, but pairs the v3 request with
the v2 response schema (`DescribeGroupsRequest_v3.RESPONSE_TYPE = DescribeGroupsResponse_v2`).
The v3 response carries one more field per group (`authorized_operations`), so a response about
two or more groups is misread ("Buffer underrun decoding string") and aiokafka drops the
connection. It is not KIP-896 (Kafka 4.0 only removed v0): v1 and v2 are still served. So we
send the same request pinned to v1..v2, whose response aiokafka reads correctly; the fields we
need (state, members) are all in v2.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeGroupsRequest_v1, DescribeGroupsRequest_v2
from aiokafka.protocol.api import Request


class _DescribeGroupsUpToV2(Request[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2]):  # type: ignore[misc]
    API_KEY = 15

    def __init__(self, groups: list[str]) -> None:
        self._groups = groups

    def build(
        self, request_struct_class: type[DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2]
    ) -> DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2:
        return request_struct_class(self._groups)


@dataclass(frozen=True, slots=True)
class GroupState:
    """What the group coordinator says about a group."""

    group: str
    state: str
    """Stable, Empty, PreparingRebalance, CompletingRebalance or Dead."""
    members: int | None
    """Members currently joined; None if the coordinator could not describe the group."""
    coordinator: int
    """Node id of the broker coordinating the group."""


async def describe_groups(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, GroupState]:
    """State and member count of each group in `names`, asking each group's coordinator."""
    by_node: dict[int, list[str]] = defaultdict(list)
    for name in names:
        by_node[await admin.find_coordinator(name)].append(name)
    found: dict[str, GroupState] = {}
    for node, groups in by_node.items():
        response = await admin._client.send(node, _DescribeGroupsUpToV2(groups))
        for error_code, group, state, _protocol_type, _protocol, members in response.groups:
            if error_code:
                # One group the classic API cannot describe (e.g. a KIP-848 "consumer" protocol
                # group) must not hide the others: its members are unknown.
                name = for_code(error_code).__name__
                found[group] = GroupState(group, f"Unknown ({name})", None, node)
            else:
                found[group] = GroupState(group, state, len(members), node)
    return found
