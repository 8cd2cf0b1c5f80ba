"""What a camera may post to ``POST /v1/events``, checked against the limits with exact 4xx messages.

    incoming = await read_event(request, limits)   # Incoming(camera, time, hint, client_id, moments, blobs)

JSON: ``{"camera", "time", "hint"?, "client_event_id"?, "moments": ["https://..."]}``.
Multipart: a part ``event`` with that JSON (``moments`` may be empty or absent) and one file part
``moment`` per JPEG; uploaded moments follow the URL moments, in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from core.imageinfo import ImageError, check_pixels, probe
from core.settings import Settings
from core.ssrf import SsrfBlocked, SsrfGuard
from relay.params import ascii_number, aware_utc
from relay.problems import Problem

_URLS = SsrfGuard()  # its static rules only: the relay never resolves a tenant's host names


class EventIn(BaseModel):
    """The JSON body (or the ``event`` part) of POST /v1/events."""

    model_config = ConfigDict(extra="forbid")

    camera: str = Field(min_length=1, max_length=100, description="camera id, e.g. 'front-door'")
    time: datetime = Field(description="when the event happened (ISO 8601 with a zone)")
    hint: str | None = Field(None, max_length=64, description="the NVR's own label, e.g. 'person'")
    client_event_id: str | None = Field(
        None, min_length=1, max_length=200, description="your id for this event; a retry with it returns the same event"
    )
    moments: list[str] = Field(
        default_factory=list,
        description="http(s) URLs of the JPEG frames to review; public hosts on port 80, 443 or 8080-8999 "
        "(or a port the operator allowed for this tenant), no credentials",
        json_schema_extra={"items": {"type": "string", "format": "uri"}},
    )

    @field_validator("time")
    @classmethod
    def _storable_time(cls, value: datetime) -> datetime:
        try:
            aware_utc(value)
        except ValueError as exc:
            raise PydanticCustomError("time", str(exc)) from None
        return value


@dataclass
class Incoming:
    body: EventIn
    idem_key: str | None
    blobs: dict[str, bytes] = field(default_factory=dict)  # blob id -> JPEG, in upload order

    @property
    def n_moments(self) -> int:
        return len(self.body.moments) + len(self.blobs)


def _bad(detail: str, slug: str = "invalid-event", status: int = 422, **extra: Any) -> Problem:
    return Problem(status, slug, detail, **extra)


def _parse_json(raw: bytes | str) -> EventIn:
    data = raw.encode() if isinstance(raw, str) else raw
    if b"\\u0000" in data or b"\0" in data:  # PostgreSQL text cannot hold NUL
        raise _bad("NUL characters are not accepted in text")
    try:
        return EventIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()[:20]]
        first = errors[0] if errors else {"loc": "", "msg": "invalid"}
        raise _bad(f"{first['loc'] or 'body'}: {first['msg']}", errors=errors) from None


def check_url(url: str, limits: Settings, index: int, guard: SsrfGuard = _URLS) -> None:
    """The SSRF policy's static rules (core.ssrf), with the tenant's allow-lists in ``guard``."""
    if len(url) > limits.max_url_length:
        raise _bad(f"moments[{index}]: URL longer than {limits.max_url_length} characters", "url-too-long")
    if url.partition(":")[0].lower() not in ("http", "https"):
        raise _bad(f"moments[{index}]: only http(s) URLs with a host are accepted", "bad-url-scheme")
    try:
        guard.check_static(url)
    except SsrfBlocked as exc:
        raise _bad(f"moments[{index}]: {exc}", "invalid-url") from None


def check_jpeg(data: bytes, limits: Settings, index: int) -> None:
    if len(data) > limits.max_image_bytes:
        raise _bad(
            f"moment {index}: {len(data)} bytes is over the limit of {limits.max_image_bytes}", "image-too-large", 413
        )
    try:
        info = probe(data)
        if info.format != "jpeg":
            raise _bad(f"moment {index}: a {info.format} image; only JPEG is accepted", "unsupported-image", 415)
        check_pixels(info, limits.max_image_pixels)
    except ImageError as exc:
        slug, status = ("image-too-large", 413) if "pixel" in str(exc) else ("unsupported-image", 415)
        raise _bad(f"moment {index}: {exc}", slug, status) from None


def idempotency_key(request: Request, body: EventIn) -> str | None:
    key = request.headers.get("idempotency-key") or body.client_event_id
    if key is not None and not (1 <= len(key) <= 200):
        raise _bad("Idempotency-Key has 1 to 200 characters", "invalid-idempotency-key", 400)
    return key


async def read_event(
    request: Request, limits: Settings, private_hosts: Iterable[str] = (), ports: Iterable[int] = ()
) -> Incoming:
    """The event, checked; ``private_hosts`` and ``ports`` are the tenant's allow-lists (see core.ssrf)."""
    declared = ascii_number(request.headers.get("content-length"))
    if declared is not None and declared > limits.max_request_bytes:
        raise _bad(f"request body over {limits.max_request_bytes} bytes", "request-too-large", 413)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        raw = await _body(request, limits.max_request_bytes)
        body = _parse_json(raw)
        incoming = Incoming(body, idempotency_key(request, body))
    elif ctype == "multipart/form-data":
        incoming = await _read_multipart(request, limits)
    else:
        raise _bad("send application/json or multipart/form-data", "unsupported-media-type", 415)
    if incoming.n_moments == 0:
        raise _bad("an event has at least one moment", "no-moments")
    if incoming.n_moments > limits.max_moments:
        raise _bad(f"{incoming.n_moments} moments is over the limit of {limits.max_moments}", "too-many-moments")
    guard = _URLS.with_lists(private_hosts, ports)
    for i, url in enumerate(incoming.body.moments):
        check_url(url, limits, i, guard)
    return incoming


async def _body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _bad(f"request body over {limit} bytes", "request-too-large", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_multipart(request: Request, limits: Settings) -> Incoming:
    try:
        form = await request.form(
            max_files=limits.max_moments + 1, max_fields=4, max_part_size=limits.max_image_bytes + 1
        )
    except (HTTPException, ValueError) as exc:  # Starlette turns a MultiPartException into HTTPException(400)
        raise _bad(f"unreadable multipart body: {getattr(exc, 'detail', exc)}", "invalid-multipart", 400) from None
    try:
        event_part = form.get("event")
        if event_part is None:
            raise _bad("a multipart post has a part named 'event' with the event JSON", "invalid-multipart", 400)
        raw = await event_part.read() if isinstance(event_part, UploadFile) else event_part
        body = _parse_json(raw)
        files = form.getlist("moment")
        if len(files) + len(body.moments) > limits.max_moments:
            raise _bad(
                f"{len(files) + len(body.moments)} moments is over the limit of {limits.max_moments}",
                "too-many-moments",
            )
        blobs: dict[str, bytes] = {}
        total = 0
        for n, part in enumerate(files):
            index = len(body.moments) + n
            if not isinstance(part, UploadFile):
                raise _bad(f"moment {index}: send the JPEG as a file part", "invalid-multipart", 400)
            data = await part.read(limits.max_image_bytes + 1)
            total += len(data)
            if total > limits.max_request_bytes:
                raise _bad(f"request body over {limits.max_request_bytes} bytes", "request-too-large", 413)
            check_jpeg(data, limits, index)
            blobs[uuid.uuid4().hex] = data
        return Incoming(body, idempotency_key(request, body), blobs)
    finally:
        await form.close()
