"""Read a DeepStack / CodeProject.AI request: multipart ``image``, ``min_confidence``, ``api_key``.

    form = await read_form(request, max_image_bytes=8_000_000)     # VisionForm, or WireError(400/413)
    form.require_image()                                          # the JPEG bytes, or WireError(400)

The key and the image are checked by the caller in DeepStack's order: the key first (401), then the
image (400), then ``min_confidence`` (400). ``max_predictions`` may come as a form field or in the query
string (an NVR that lets you edit the endpoint path can ask for more than 20 that way).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from core.lan.wire import NO_IMAGE, WireError, parse_max_predictions, parse_min_confidence

MAX_FIELDS = 8  # image, min_confidence, api_key and a few a client may add (DeepStack ignores the rest)


@dataclass(frozen=True)
class VisionForm:
    image: bytes | None
    min_confidence_raw: str | None
    max_predictions_raw: str | None
    api_key: str | None

    def require_image(self) -> bytes:
        if not self.image:
            raise WireError(400, NO_IMAGE)
        return self.image

    @property
    def min_confidence(self) -> float:
        return parse_min_confidence(self.min_confidence_raw)

    @property
    def max_predictions(self) -> int:
        return parse_max_predictions(self.max_predictions_raw)


class _Capped(Request):
    """The request with its body cut at ``limit`` bytes as it streams: a body sent without a
    Content-Length (chunked) would otherwise be spooled to disk whatever its size."""

    def __init__(self, request: Request, limit: int) -> None:
        super().__init__(request.scope, request.receive)
        self._limit = limit

    async def stream(self) -> AsyncGenerator[bytes, None]:
        seen = 0
        async for chunk in super().stream():
            seen += len(chunk)
            if seen > self._limit:
                raise MultiPartException(f"the request exceeded the maximum size of {self._limit} bytes")
            yield chunk


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def read_form(request: Request, max_image_bytes: int) -> VisionForm:
    """The request's fields; a body that is not multipart (or a form without ``image``) has no image."""
    declared = request.headers.get("content-length")
    limit = max_image_bytes + 64 * 1024  # the image plus the other fields and the multipart framing
    if declared and declared.isdigit() and int(declared) > limit:
        raise WireError(413, f"request over {limit} bytes; an image may have {max_image_bytes} bytes at most")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return VisionForm(None, None, request.query_params.get("max_predictions"), None)
    try:
        capped = _Capped(request, limit)
        form = await capped.form(max_files=2, max_fields=MAX_FIELDS, max_part_size=max_image_bytes + 1)
    except (HTTPException, ValueError) as exc:  # Starlette turns a MultiPartException into HTTPException(400)
        detail = str(getattr(exc, "detail", exc))
        if "maximum size" in detail:
            raise WireError(413, f"the request is over the limit of {max_image_bytes} bytes for an image") from None
        raise WireError(400, f"{NO_IMAGE} (unreadable form: {detail})") from None
    try:
        part = form.get("image")
        image = None
        if isinstance(part, UploadFile):
            image = await part.read(max_image_bytes + 1)
            if len(image) > max_image_bytes:
                raise WireError(413, f"the image is over the limit of {max_image_bytes} bytes")
        max_predictions = _text(form.get("max_predictions")) or request.query_params.get("max_predictions")
        return VisionForm(image, _text(form.get("min_confidence")), max_predictions, _text(form.get("api_key")))
    finally:
        await form.close()


def credential(form: VisionForm, authorization: str | None) -> str | None:
    """The key a client sent: the ``api_key`` field, else ``Authorization: Bearer KEY``, else HTTP Basic
    (``http://KEY@host/`` in an NVR's URL field: the password, or the user name when there is none)."""
    if form.api_key:
        return form.api_key.strip()
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (password or user).strip() or None
    return None
