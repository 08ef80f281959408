"""The Segment message model: validation names the field; skew correction as Segment does it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenure.errors import ValidationError
from tenure.spec import normalize_message

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def norm(raw: object, **kw: object) -> dict[str, object]:
    return normalize_message(raw, received_at=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ({"type": "track", "event": "x"}, "userId", "one of userId or anonymousId is required"),
        ({"type": "track", "userId": "u"}, "event", "is required"),
        ({"type": "fly", "userId": "u"}, "type", "must be one of"),
        ({"type": "track", "event": "x", "userId": ["u"]}, "userId", "must be a string"),
        ({"type": "track", "event": "x", "userId": "u", "properties": [1]}, "properties", "must be a JSON object"),
        ({"type": "alias", "userId": "u"}, "previousId", "is required"),
        ({"type": "group", "userId": "u"}, "groupId", "is required"),
        ({"type": "track", "event": "x", "userId": "u", "timestamp": "soon"}, "timestamp", "is not an ISO-8601"),
        ({"type": "track", "event": "x", "userId": "u", "timestamp": "1999-12-31T00:00:00Z"}, "timestamp", "before 2000"),
        ({"type": "track", "event": "x", "userId": "u", "timestamp": "2025-06-03T12:00:00Z"}, "timestamp", "in the future"),
        ({"type": "track", "event": "x", "userId": "u", "messageId": "m" * 101}, "messageId", "at most 100"),
        ({"type": "track", "event": "x", "userId": "u", "timestamp": 17}, "timestamp", "must be an ISO-8601 string"),
    ],
)
def test_invalid_messages_name_the_field(raw: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        norm(raw)
    assert info.value.field == field
    assert reason in info.value.reason


def test_endpoint_type_and_batch_context_apply() -> None:
    rec = norm(
        {"userId": 42, "event": "Signed Up", "context": {"ip": "1.2.3.4"}},
        default_type="track",
        defaults={"context": {"library": {"name": "x"}, "ip": "0.0.0.0"}},
    )
    assert rec["type"] == "track" and rec["user_id"] == "42"
    assert rec["context"] == {"library": {"name": "x"}, "ip": "1.2.3.4"}


def test_missing_message_id_is_a_stable_content_hash() -> None:
    raw = {"type": "track", "event": "x", "userId": "u", "timestamp": "2025-06-01T10:00:00Z"}
    assert norm(raw)["message_id"] == norm(dict(raw))["message_id"]
    assert norm(raw)["message_id"] != norm({**raw, "event": "y"})["message_id"]


@given(
    client_offset=st.integers(-86_400 * 30, 3_600),
    delay=st.integers(0, 86_400 * 3),
)
def test_clock_skew_correction(client_offset: int, delay: int) -> None:
    """A client clock off by ``client_offset`` s sends an event ``delay`` s after it happened."""
    true_time = NOW - timedelta(seconds=delay)
    skew = timedelta(seconds=client_offset)
    raw = {
        "type": "track",
        "event": "x",
        "userId": "u",
        "timestamp": (true_time + skew).isoformat(),
        "sentAt": (NOW + skew).isoformat(),
    }
    assert datetime.fromisoformat(norm(raw)["timestamp"]) == true_time  # type: ignore[arg-type]


def test_without_sent_at_the_timestamp_is_trusted_and_naive_means_utc() -> None:
    rec = norm({"type": "page", "anonymousId": "a", "timestamp": "2025-05-01T08:00:00"})
    assert rec["timestamp"] == "2025-05-01T08:00:00.000000+00:00"
    assert rec["sent_at"] is None
