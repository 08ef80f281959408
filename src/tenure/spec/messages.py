"""Validate Segment Spec messages and normalise them into Tenure's canonical record.

A canonical record is a plain dict with snake_case keys (``message_id``, ``user_id``,
``anonymous_id``, ``timestamp`` …) and timestamps as ISO-8601 UTC strings. It is what the
inbox stores and what the flusher turns into lake rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from tenure.errors import ValidationError

MESSAGE_TYPES = ("track", "identify", "page", "screen", "alias", "group")
MAX_MESSAGE_ID_LENGTH = 100
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


@dataclass(frozen=True, slots=True)
class Limits:
    """Segment's request limits."""

    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_messages: int = 2500
    max_future: timedelta = timedelta(days=1)


def parse_timestamp(value: object, field: str) -> datetime:
    """Parse an ISO-8601 string into an aware UTC datetime (naive means UTC)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be an ISO-8601 string, got {type(value).__name__}")
    parsed = _parse_iso(value)
    if parsed is None:
        raise ValidationError(field, f"{value!r} is not an ISO-8601 timestamp")
    return parsed


@lru_cache(maxsize=4096)  # a batch repeats its sentAt, and SDK timestamps often repeat
def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


@lru_cache(maxsize=4096)  # every message of a request shares receivedAt
def format_timestamp(value: datetime) -> str:
    return (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat(timespec="microseconds")


def normalize_message(
    raw: Any,
    *,
    received_at: datetime,
    limits: Limits = Limits(),
    default_type: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate one message and return its canonical record.

    ``default_type`` is the type implied by the endpoint (``/v1/track``); ``defaults`` holds
    batch-level ``context``/``integrations``/``sentAt`` that apply to every item.
    Raises ``ValidationError`` naming the offending field.
    """
    if not isinstance(raw, dict):
        raise ValidationError("message", f"must be a JSON object, got {type(raw).__name__}")
    kind = raw.get("type", default_type)
    if kind not in MESSAGE_TYPES:
        raise ValidationError("type", f"must be one of {', '.join(MESSAGE_TYPES)}; got {kind!r}")
    user_id = _optional_id(raw, "userId")
    anonymous_id = _optional_id(raw, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise ValidationError("userId", "one of userId or anonymousId is required")
    for name in _OBJECT_FIELDS:
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise ValidationError(name, f"must be a JSON object, got {type(raw[name]).__name__}")
    record: dict[str, Any] = {
        "message_id": _message_id(raw),
        "type": kind,
        "event": None,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "previous_id": None,
        "group_id": None,
        "properties": raw.get("properties") or {},
        "traits": raw.get("traits") or {},
        "context": _merged_context(raw, defaults),
    }
    _add_type_fields(record, raw, kind)
    _add_timestamps(record, raw, received_at, limits, defaults)
    return record


def _optional_id(raw: dict[str, Any], field: str) -> str | None:
    value = raw.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    return str(value)


def _message_id(raw: dict[str, Any]) -> str:
    value = raw.get("messageId")
    if value is None:
        # Content hash: a retried copy of the same message gets the same id and is deduplicated.
        return "h-" + hashlib.blake2b(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()
    if not isinstance(value, str) or not value:
        raise ValidationError("messageId", "must be a non-empty string")
    if len(value) > MAX_MESSAGE_ID_LENGTH:
        raise ValidationError("messageId", f"must be at most {MAX_MESSAGE_ID_LENGTH} characters")
    return value


def _merged_context(raw: dict[str, Any], defaults: dict[str, Any] | None) -> dict[str, Any]:
    base = (defaults or {}).get("context")
    own = raw.get("context") or {}
    if not base:
        return own
    return {**base, **own}


def _add_type_fields(record: dict[str, Any], raw: dict[str, Any], kind: str) -> None:
    if kind == "track":
        record["event"] = _required_string(raw, "event", numbers_ok=False)
    elif kind in ("page", "screen"):
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            raise ValidationError("name", f"must be a string, got {type(name).__name__}")
        record["event"] = name
    elif kind == "alias":
        record["previous_id"] = _required_string(raw, "previousId")
        if record["user_id"] is None:
            raise ValidationError("userId", "is required for alias")
    elif kind == "group":
        record["group_id"] = _required_string(raw, "groupId")
    if kind in ("identify", "group") and raw.get("traits") is None:
        record["traits"] = (raw.get("context") or {}).get("traits") or {}


def _required_string(raw: dict[str, Any], field: str, *, numbers_ok: bool = True) -> str:
    """A required non-empty string; ids may arrive as numbers, as the SDKs allow."""
    value = raw.get(field)
    if numbers_ok and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "is required and must be a non-empty string")
    return value


def _add_timestamps(
    record: dict[str, Any],
    raw: dict[str, Any],
    received_at: datetime,
    limits: Limits,
    defaults: dict[str, Any] | None,
) -> None:
    """Segment's clock-skew correction: ``timestamp = receivedAt - (sentAt - originalTimestamp)``."""
    original_raw = raw.get("originalTimestamp", raw.get("timestamp"))
    original_field = "originalTimestamp" if "originalTimestamp" in raw else "timestamp"
    sent_raw = raw.get("sentAt", (defaults or {}).get("sentAt"))
    original = parse_timestamp(original_raw, original_field) if original_raw is not None else None
    sent = parse_timestamp(sent_raw, "sentAt") if sent_raw is not None else None
    if original is None:
        timestamp = received_at
    elif sent is not None:
        timestamp = received_at - (sent - original)
    else:
        timestamp = original
    check_field = original_field if original is not None else "receivedAt"
    if timestamp < EARLIEST:
        raise ValidationError(check_field, f"{format_timestamp(timestamp)} is before 2000-01-01")
    if timestamp > received_at + limits.max_future:
        ahead = (timestamp - received_at).total_seconds()
        raise ValidationError(check_field, f"is {ahead:.0f} s in the future")
    record["timestamp"] = format_timestamp(timestamp)
    record["original_timestamp"] = format_timestamp(original) if original else None
    record["sent_at"] = format_timestamp(sent) if sent else None
    record["received_at"] = format_timestamp(received_at)
