"""Enrollment: exchange a one-time code for a worker token (``POST /v1/workers/enroll``).

async with httpx.AsyncClient(timeout=15) as client:
    reply = await enroll(client, "https://relay.example", "ABCD-1234", name=socket.gethostname())
TokenStore().save(relay_url, reply.token)
"""

from __future__ import annotations

import logging
import socket

import httpx
from pydantic import ValidationError

from core.protocol import EnrollRequest, EnrollResponse

log = logging.getLogger(__name__)


class EnrollError(Exception):
    """Enrollment failed; ``str()`` is a sentence for the user."""


def worker_name() -> str:
    return (socket.gethostname() or "desktop")[:100]


async def enroll(client: httpx.AsyncClient, relay_url: str, code: str, name: str | None = None) -> EnrollResponse:
    try:
        body = EnrollRequest(code=code.strip(), name=name or worker_name())
    except ValidationError as exc:
        raise EnrollError("that does not look like an enrollment code (8 to 200 characters)") from exc
    url = relay_url.rstrip("/") + "/v1/workers/enroll"
    try:
        response = await client.post(url, json=body.model_dump(mode="json"))
    except httpx.HTTPError as exc:
        raise EnrollError(f"cannot reach the relay at {relay_url}: {exc}") from exc
    if response.status_code in (400, 401, 403, 404, 409, 410, 422):
        raise EnrollError("the relay did not accept this code: it may be mistyped, used already or expired")
    if response.status_code >= 300:
        raise EnrollError(f"the relay answered {response.status_code}; try again later")
    try:
        reply = EnrollResponse.model_validate_json(response.content)
    except ValidationError as exc:
        raise EnrollError(f"{relay_url} answered, but not like an Insane AI relay") from exc
    log.info("enrolled with %s as worker %s", relay_url, reply.worker_id)
    return reply
