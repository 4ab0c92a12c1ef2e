"""A body that breaks its type is refused with the error code and the words the API promises:
the field, what it must be, and what came instead."""

from __future__ import annotations

import msgspec
import pytest

from services.api import bodies
from services.api.body import refused

N = 100_001
TOO_MANY = b'{"recipients": [' + b",".join([b'"a"'] * N) + b"]}"


def refusal(body_type: type[bodies.Body], raw: bytes) -> tuple[str, str, dict[str, int | str]]:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(raw, type=body_type)
    error = refused(body_type, str(caught.value))
    assert error is not None
    return error.code, error.detail, error.context


@pytest.mark.parametrize(
    ("body_type", "raw", "code", "detail", "context"),
    [
        (bodies.OrgCreate, b"{}", "missing_field", "name is required", {"field": "name"}),
        (
            bodies.OrgCreate,
            b'{"name": null}',
            "invalid_field",
            "name must be a string of 1 to 200 characters (got null)",
            {"field": "name"},
        ),
        (
            bodies.OrgCreate,
            b'{"name": ""}',
            "invalid_name",
            "name must be a string of 1 to 200 characters",
            {"field": "name"},
        ),
        (
            bodies.RenderRequest,
            b'{"template": "Hi", "valuez": []}',
            "unknown_field",
            "unknown field valuez; expected some of template, values, campaign_id, recipient,"
            " var_limit, slot_types",
            {},
        ),
        (
            bodies.CampaignCreate,
            b'{"name": "x", "kind": "flash"}',
            "invalid_kind",
            "kind must be one of coupon_expiry_reminder, one_time, recurring, resend",
            {"field": "kind"},
        ),
        (
            bodies.CampaignCreate,
            b'{"name": "x", "kind": "resend", "channel": "SMS"}',
            "invalid_channel",
            "channel must be a string matching ^[a-z][a-z0-9_]{0,31}$, or null",
            {"field": "channel"},
        ),
        (
            bodies.CampaignCreate,
            b'{"name": "x", "kind": "resend", "parent_id": true}',
            "invalid_field",
            "parent_id must be a whole number from 1 to 9223372036854775807, or null (got bool)",
            {"field": "parent_id"},
        ),
        (
            bodies.LinkCreate,
            b'{"destination": "https://a.in/' + b"a" * 2048 + b'"}',
            "invalid_destination",
            "destination must be a string of at most 2048 characters",
            {"field": "destination"},
        ),
        (
            bodies.LinkCreate,
            b'{"destination": "https://a.in/", "expires_at": "2099-01-01T00:00:00"}',
            "invalid_field",
            "expires_at must be a timestamp with a time zone (RFC 3339, e.g."
            " 2026-12-31T18:30:00Z), or null",
            {"field": "expires_at"},
        ),
        (
            bodies.LinkChange,
            b'{"disabled": "yes"}',
            "invalid_field",
            "disabled must be true or false, or null (got str)",
            {"field": "disabled"},
        ),
        (
            bodies.Recipients,
            b'{"recipients": ["ok", ""]}',
            "invalid_recipient",
            "recipients[1] must be a string of 1 to 128 characters, or null",
            {"field": "recipients", "index": 1},
        ),
        (
            bodies.Recipients,
            TOO_MANY,
            "too_many_items",
            "recipients must be an array of at most 100000 items, each a string of 1 to 128"
            " characters, or null",
            {"field": "recipients"},
        ),
        (
            bodies.RenderRequest,
            b'{"template": "Go {#var#}", "values": [1]}',
            "invalid_field",
            "values[0] must be a string (got int)",
            {"field": "values", "index": 0},
        ),
        (
            bodies.RenderRequest,
            b'{"template": "' + b"x" * 10_001 + b'"}',
            "template_too_long",
            "template must be a string of at most 10000 characters",
            {"field": "template"},
        ),
        (
            bodies.RenderBatchRequest,
            b'{"template": "Hi", "messages": {}}',
            "invalid_field",
            "messages must be an array of at most 10000 items, each a Message object (got object)",
            {"field": "messages"},
        ),
    ],
)
def test_a_bad_body_is_refused_with_what_is_wrong(
    body_type: type[bodies.Body],
    raw: bytes,
    code: str,
    detail: str,
    context: dict[str, int | str],
) -> None:
    assert refusal(body_type, raw) == (code, detail, context)


def test_a_body_that_is_not_an_object_is_left_to_the_caller() -> None:
    """`decode` answers 400 invalid_json for these; `decode_item` names the item."""
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(b"[1]", type=bodies.OrgCreate)
    assert refused(bodies.OrgCreate, str(caught.value)) is None


def test_optional_fields_take_null_and_a_change_tells_null_from_absent() -> None:
    made = msgspec.json.decode(b'{"name": "x", "kind": "one_time", "channel": null}',
                               type=bodies.CampaignCreate)  # fmt: skip
    assert (made.channel, made.parent_id) == (None, None)
    change = msgspec.json.decode(b'{"expires_at": null}', type=bodies.LinkChange)
    assert change.expires_at is None
    assert change.fallback_url is msgspec.UNSET
