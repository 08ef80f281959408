"""Collector routes: ``/v1/{track,identify,page,screen,alias,group,batch,import}``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tenure.api.responses import json_response
from tenure.errors import AuthError, ValidationError
from tenure.ingest.collector import parse_request, write_key_from_auth
from tenure.spec.messages import MESSAGE_TYPES

router = APIRouter(prefix="/v1")
ENDPOINTS = (*MESSAGE_TYPES, "batch", "import")


@router.post("/{endpoint}")
async def collect(endpoint: str, request: Request) -> Response:
    """Accept one message or a batch; answer 200 only once the accepted ones are on disk.

    Invalid messages inside a batch are dropped and reported (index, field, reason) while the
    valid ones are stored, as Segment does; a request with nothing valid in it is a 400.
    """
    if endpoint not in ENDPOINTS:
        return json_response({"success": False, "message": f"unknown endpoint /v1/{endpoint}"}, status_code=404)
    state = request.app.state
    received_at = state.ws.clock.now()
    parsed = parse_request(
        await request.body(),
        endpoint=endpoint,
        received_at=received_at,
        currencies=state.ws.currencies,
        limits=state.limits,
        content_encoding=request.headers.get("content-encoding"),
    )
    key = write_key_from_auth(request.headers.get("authorization")) or parsed.write_key
    if key is None:
        raise AuthError("no write key: send it as the Basic auth user name or as writeKey")
    if not state.ws.keys.verify(key):
        raise AuthError("unknown write key")
    if not parsed.records:
        first = parsed.errors[0] if parsed.errors else ValidationError("batch", "contains no messages")
        return json_response(
            {"success": False, "error": first.as_dict(), "rejected": [e.as_dict() for e in parsed.errors]},
            status_code=400,
        )
    await state.inbox.append(parsed.records, received_at)
    body: dict[str, object] = {"success": True, "accepted": len(parsed.records)}
    if parsed.errors:
        body["rejected"] = [e.as_dict() for e in parsed.errors]
    return json_response(body)
