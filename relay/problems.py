"""RFC 9457 problem details: our typed errors at the HTTP boundary, and the pages that document them.

raise Problem(404, "not-found", "No such event")
raise Problem(429, "quota-exceeded", "...", retry_after=3600)

Every slug is registered in :data:`TYPES` with its title and a sentence on what it means. A problem's
``type`` is the full path ``/problems/<slug>`` (RFC 9457 allows a relative reference and asks that it be
a full path): it resolves against the relay that answered, where ``GET /problems/<slug>`` serves that
sentence, so the project names no domain it does not own and a type never depends on a Host header.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relay.db import DatabaseFull, DatabaseUnavailable

log = logging.getLogger(__name__)

TYPE_BASE = "/problems/"
MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    title: str
    about: str


TYPES: dict[str, ProblemType] = {
    # authentication and authorization
    "unauthenticated": ProblemType(
        "Unauthenticated", "Send Authorization: Bearer with a valid, unrevoked API key, worker token or admin token."
    ),
    "admin-disabled": ProblemType("Admin API disabled", "The operator has not set INSANE_ADMIN_TOKEN."),
    "invalid-enroll-code": ProblemType(
        "Invalid enrollment code", "The one-time code is unknown, already used or expired; ask for a new one."
    ),
    # what was asked for
    "not-found": ProblemType(
        "Not found", "No such route, or no such event, blob, tenant or key visible to these credentials."
    ),
    "method-not-allowed": ProblemType("Method not allowed", "The route exists but not with this HTTP method."),
    "conflict": ProblemType("Conflict", "The change clashes with what exists (e.g. a tenant name already taken)."),
    "http-error": ProblemType("HTTP error", "The HTTP layer refused the request; detail says why."),
    # bodies and parameters
    "invalid-event": ProblemType(
        "Invalid event",
        "The body of POST /v1/events does not match the EventIn schema (or its time cannot be represented); "
        "detail names the first field and errors lists up to 20.",
    ),
    "invalid-body": ProblemType(
        "Invalid body", "The JSON body does not match the operation's schema; detail names the first field."
    ),
    "invalid-query": ProblemType(
        "Invalid query parameter", "A query parameter is malformed or out of range; detail names it and the rule."
    ),
    "invalid-cursor": ProblemType(
        "Invalid cursor", "A result stream's cursor (Last-Event-ID or ?cursor=) is not one the stream gave out."
    ),
    "invalid-multipart": ProblemType(
        "Invalid multipart body", "A multipart post has one part 'event' with the event JSON and file parts 'moment'."
    ),
    "invalid-idempotency-key": ProblemType("Invalid Idempotency-Key", "An Idempotency-Key has 1 to 200 characters."),
    "invalid-url": ProblemType(
        "Invalid URL",
        "A URL (a moment or a webhook) is refused by the SSRF policy: http(s) with a host, no credentials, "
        "a public address (or a host on the tenant's private-host allow-list), and port 80, 443, 8080-8999 or "
        "one the tenant's allowed ports name. detail says which rule.",
    ),
    "url-too-long": ProblemType("URL too long", "A moment URL is longer than INSANE_MAX_URL_LENGTH."),
    "bad-url-scheme": ProblemType("Unsupported URL scheme", "Moments are http(s) URLs with a host."),
    "no-moments": ProblemType("No moments", "An event has at least one moment (a URL or an uploaded JPEG)."),
    "too-many-moments": ProblemType("Too many moments", "An event has at most INSANE_MAX_MOMENTS moments."),
    "unsupported-media-type": ProblemType(
        "Unsupported media type", "POST /v1/events takes application/json or multipart/form-data."
    ),
    "unsupported-image": ProblemType("Unsupported image", "Uploaded moments are JPEG images."),
    "image-too-large": ProblemType(
        "Image too large", "An uploaded JPEG is over INSANE_MAX_IMAGE_BYTES or INSANE_MAX_IMAGE_PIXELS."
    ),
    "request-too-large": ProblemType("Request too large", "The request body is over the route's size limit."),
    # limits
    "quota-exceeded": ProblemType(
        "Daily quota exceeded", "The tier's daily deep reviews are used up; Retry-After says when they renew."
    ),
    "rate-limited": ProblemType("Rate limited", "Over the tier's events per second; retry after Retry-After."),
    "overloaded": ProblemType(
        "Overloaded", "The lane's backlog is at its bound; nothing was stored; retry after Retry-After."
    ),
    # the relay's own state
    "unavailable": ProblemType(
        "Service unavailable",
        "PostgreSQL or Redis is unreachable; nothing was stored or acked; retry after Retry-After.",
    ),
    "internal-error": ProblemType("Internal error", "The relay failed; the error is in its log."),
}


class ProblemDetails(BaseModel):
    """The body of every problem+json answer (RFC 9457), as :meth:`Problem.response` writes it."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        json_schema_extra={"format": "uri-reference"},
        description=f"{TYPE_BASE}<slug>, documented by GET on that path of this relay",
    )
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="the path of the request that failed")
    errors: list[dict[str, str]] | None = Field(
        None, description="invalid-event: up to 20 of the body's errors, each {loc, msg}"
    )


class Problem(Exception):
    """An HTTP error with a registered type slug, a title, and optional extra members."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail
        self.retry_after, self.extra = retry_after, extra
        self.headers = dict(headers or {})

    @property
    def title(self) -> str:
        known = TYPES.get(self.slug)
        if known is None:  # a slug nobody registered: tests/relay/test_problems.py keeps this from shipping
            log.error("problem type %r is not registered in relay.problems.TYPES", self.slug)
            return self.slug.replace("-", " ").capitalize()
        return known.title

    def response(self, instance: str | None = None) -> Response:
        body = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        if instance:
            body["instance"] = instance
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after + 0.999)))
        return Response(json.dumps(body), status_code=self.status, headers=headers, media_type=MEDIA_TYPE)


async def problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response(request.url.path)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    # Starlette's own 404/405 (unknown route, wrong method) in the same problem+json form.
    status = getattr(exc, "status_code", 500)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(status, "http-error")
    problem = Problem(
        status, slug, str(getattr(exc, "detail", "")) or slug.replace("-", " "), headers=getattr(exc, "headers", None)
    )
    return problem.response(request.url.path)


def unavailable(what: str, retry_after: float = 5) -> Problem:
    return Problem(503, "unavailable", f"{what} is unavailable; retry later", retry_after=retry_after)


# A dependency that fails under a request handler is a 503 with Retry-After, mapped here once for every
# route (the app's exception handlers, and the DeepStack API's own error form): handlers let these raise,
# and catch them only where they degrade instead (a cache, a position in the queue, a webhook nudge).
# PostgreSQL's socket errors arrive as DatabaseUnavailable (relay.db.scoped_tx wraps them), so a bare
# OSError under a handler is Redis's: redis-py raises some socket errors unwrapped.
DEPENDENCIES: dict[type[Exception], str] = {
    DatabaseUnavailable: "the database",
    RedisError: "the queue",
    OSError: "the queue",
}


def dependency_problem(request: Request, exc: BaseException) -> Problem:
    """The 503 for a failed dependency (a key of :data:`DEPENDENCIES`, or a subclass of one), logged."""
    if isinstance(exc, DatabaseFull):
        log.error("%s %s: the database is out of space: %s", request.method, request.url.path, exc)
        return Problem(503, "overloaded", "the relay's database is out of space; retry later", retry_after=60)
    what = next(DEPENDENCIES[cls] for cls in type(exc).__mro__ if cls in DEPENDENCIES)
    log.warning("%s %s: %s is unavailable: %r", request.method, request.url.path, what, exc)
    return unavailable(what)


async def dependency_handler(request: Request, exc: Exception) -> Response:
    return dependency_problem(request, exc).response(request.url.path)


# --- the documentation pages: GET /problems and GET /problems/{slug} ---------------------------------------

_PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>\n'
    "<body><h1>{title}</h1>\n{body}\n</body></html>\n"
)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body))


async def problem_page(request: Request) -> Response:
    slug = request.path_params["slug"]
    known = TYPES.get(slug)
    if known is None:
        raise Problem(404, "not-found", "no such problem type; GET /problems lists them")
    return _page(
        known.title,
        f"<p><code>{TYPE_BASE}{html.escape(slug)}</code></p>\n<p>{html.escape(known.about)}</p>\n"
        "<p>The answer's <code>detail</code> says exactly what was wrong. "
        '<a href="/problems">All problem types</a>.</p>',
    )


async def problem_index(request: Request) -> Response:
    items = "\n".join(
        f'<li><a href="{TYPE_BASE}{slug}"><code>{slug}</code></a>: {html.escape(t.title)}</li>'
        for slug, t in sorted(TYPES.items())
    )
    return _page("Problem types of the Insane AI Security relay", f"<ul>\n{items}\n</ul>")
