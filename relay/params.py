"""Reading what a request carries besides its route: JSON bodies and query parameters, with exact 4xx answers.

    body = await parse_body(request, Heartbeat)               # the pydantic model, or Problem(413/422)
    limit = query_int(request, "limit", 50, 1, 200)           # ASCII digits only, or Problem(400)
    since = query_time(request, "since")                      # aware UTC datetime or None
    at, event_id = decode_cursor(raw)                         # what encode_cursor wrote

Everything that reaches PostgreSQL from here is storable: text without NUL, times inside datetime's range
once in UTC (timestamptz is UTC), numbers finite (the models set ``allow_inf_nan=False``).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from relay.problems import Problem

M = TypeVar("M", bound=BaseModel)

NUL_JSON = b"\\u0000"  # PostgreSQL text and jsonb cannot hold NUL
_ASCII_NUMBER = re.compile(r"[0-9]{1,18}")


def aware_utc(value: datetime) -> datetime:
    """``value`` in UTC; ValueError when it has no zone or leaves datetime's range in UTC (PostgreSQL stores
    timestamptz in UTC, so ``0001-01-01T00:00:00+14:00`` is an instant of year 0 it cannot be given)."""
    if value.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2024-05-01T12:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: once in UTC it must fall within the years 1 to 9999") from None


def ascii_number(raw: str | None) -> int | None:
    """A whole number written in ASCII digits, or None (``str.isdigit`` also takes '²' and '١٢')."""
    return int(raw) if raw is not None and _ASCII_NUMBER.fullmatch(raw) else None


async def parse_body(request: Request, model: type[M], limit: int = 16_000_000, slug: str = "invalid-body") -> M:
    """The JSON body as ``model``; 413 over ``limit`` bytes, 422 with the first error and up to 20 of them."""
    raw = await request.body()
    if len(raw) > limit:
        raise Problem(413, "request-too-large", f"request body over {limit} bytes")
    if NUL_JSON in raw or b"\0" in raw:
        raise Problem(422, slug, "NUL characters are not accepted in text")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()[:20]]
        first = errors[0] if errors else {"loc": "body", "msg": "invalid"}
        raise Problem(422, slug, f"{first['loc'] or 'body'}: {first['msg']}", errors=errors) from None


def _bad_query(detail: str) -> Problem:
    return Problem(400, "invalid-query", detail)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = ascii_number(raw)
    if value is None or not low <= value <= high:
        raise _bad_query(f"{name}: a whole number from {low} to {high}")
    return value


def query_text(request: Request, name: str, max_length: int) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and (not 1 <= len(raw) <= max_length or "\0" in raw):
        raise _bad_query(f"{name}: 1 to {max_length} characters, no NUL")
    return raw


def query_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query_params.get(name)
    if raw is not None and raw not in choices:
        raise _bad_query(f"{name}: one of {', '.join(choices)}")
    return raw


def _time(raw: str) -> datetime:
    value = datetime.fromisoformat(raw)
    return aware_utc(value if value.tzinfo else value.replace(tzinfo=UTC))  # a time without a zone is UTC


def query_time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return _time(raw)
    except ValueError as exc:
        why = str(exc) if str(exc).startswith("out of range") else "an ISO 8601 time, e.g. 2024-05-01T12:00:00Z"
        raise _bad_query(f"{name}: {why}") from None


def encode_cursor(at: datetime, ident: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    if raw is None:
        return None
    try:
        at, _, ident = base64.urlsafe_b64decode(raw.encode() + b"==").decode().partition("|")
        return _time(at), uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeError):
        raise _bad_query("cursor: pass next_cursor from the previous page unchanged") from None
