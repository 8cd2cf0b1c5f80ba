"""RFC 9457 problem details: our typed errors at the HTTP boundary.

raise Problem(404, "not-found", "No such event")
raise Problem(429, "quota-exceeded", "...", retry_after=3600)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger(__name__)

TYPE_BASE = "https://insane.ai/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP error with a stable type slug, a title, and optional extra members."""

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

    def response(self, instance: str | None = None) -> Response:
        body = {
            "type": TYPE_BASE + self.slug,
            "title": self.slug.replace("-", " "),
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
