"""The collector's logic, apart from HTTP: decode, authenticate, validate, store durably.

``parse_request`` is pure (bytes in, canonical records and per-message errors out).
``Inbox`` writes accepted records to the state DB with group commit: requests that arrive
while a commit is running share the next transaction (and its one fsync), so durability does
not cap throughput at the disk's fsync rate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from tenure.errors import AuthError, PayloadTooLargeError, ValidationError
from tenure.spec.ecommerce import CurrencyTable, order_facts
from tenure.spec.messages import Limits, normalize_message
from tenure.store.state import StateDB, inbox

BATCH_ENDPOINTS = ("batch", "import")


@dataclass
class ParsedRequest:
    """Accepted canonical records, the rejected messages' errors, and the write key sent."""

    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ValidationError] = field(default_factory=list)
    write_key: str | None = None


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo gzip/deflate, refusing to inflate past ``limit`` bytes (no zip bombs)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        data = body
    elif encoding in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise ValidationError("body", f"invalid {encoding} data: {exc}") from None
    else:
        raise ValidationError("Content-Encoding", f"unsupported encoding {encoding!r}")
    if len(data) > limit:
        raise PayloadTooLargeError("body", f"exceeds the {limit // 1024} KB limit")
    return data


def write_key_from_auth(header: str | None) -> str | None:
    """The write key from ``Authorization: Basic base64(key:)`` (the colon is optional)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("Authorization header is not valid Basic auth") from None
    return decoded.split(":", 1)[0] or None


def parse_request(
    body: bytes,
    *,
    endpoint: str,
    received_at: datetime,
    currencies: CurrencyTable,
    limits: Limits = Limits(),
    content_encoding: str | None = None,
) -> ParsedRequest:
    """Validate a request to ``/v1/<endpoint>``; whole-request problems raise, message ones are collected."""
    is_batch = endpoint in BATCH_ENDPOINTS
    limit = limits.max_batch_bytes if is_batch else limits.max_message_bytes
    data = decode_body(body, content_encoding, limit)
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("body", f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationError("body", "must be a JSON object")
    key = payload.get("writeKey")
    parsed = ParsedRequest(write_key=key if isinstance(key, str) else None)
    if not is_batch:
        parsed.records.append(_validated(payload, endpoint, received_at, currencies, limits, None))
        return parsed
    items = payload.get("batch")
    if not isinstance(items, list):
        raise ValidationError("batch", "is required and must be a list of messages")
    if len(items) > limits.max_batch_messages:
        raise PayloadTooLargeError("batch", f"has {len(items)} messages; the limit is {limits.max_batch_messages}")
    defaults = {k: payload[k] for k in ("context", "integrations", "sentAt") if isinstance(payload.get(k), dict | str)}
    check_size = len(data) > limits.max_message_bytes  # a small batch cannot hold a big message
    for index, item in enumerate(items):
        try:
            if check_size and len(orjson.dumps(item)) > limits.max_message_bytes:
                raise PayloadTooLargeError("message", f"exceeds the {limits.max_message_bytes // 1024} KB limit")
            parsed.records.append(_validated(item, None, received_at, currencies, limits, defaults))
        except ValidationError as exc:
            parsed.errors.append(type(exc)(exc.field, exc.reason, index=index))
    return parsed


def _validated(
    raw: Any,
    endpoint: str | None,
    received_at: datetime,
    currencies: CurrencyTable,
    limits: Limits,
    defaults: dict[str, Any] | None,
) -> dict[str, Any]:
    record = normalize_message(raw, received_at=received_at, limits=limits, default_type=endpoint, defaults=defaults)
    if record["type"] == "track":
        order_facts(record["event"], record["properties"], currencies)  # raises naming the field
    return record


class Inbox:
    """Durable, group-committed append of accepted records to the state DB inbox."""

    def __init__(self, state: StateDB) -> None:
        self.state = state
        self._queue: asyncio.Queue[tuple[list[dict[str, Any]], datetime, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def append(self, records: list[dict[str, Any]], received_at: datetime) -> None:
        """Return once ``records`` are committed to disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((records, received_at, future))
        await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            while not self._queue.empty():
                group.append(self._queue.get_nowait())
            rows = [
                {"received_at": at, "n_messages": len(recs), "body": orjson.dumps(recs)} for recs, at, _ in group
            ]
            try:
                await loop.run_in_executor(None, self._commit, rows)
            except Exception as exc:  # every waiter learns its request was not stored
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in group:
                if not future.done():
                    future.set_result(None)

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        with self.state.begin() as conn:
            conn.execute(inbox.insert(), rows)
