"""The worker's DeepStack / CodeProject.AI-compatible API, for NVRs on the LAN (an ASGI app).

    app = create_app(LanService(worker), key=None, max_image_bytes=8_000_000)

Routes (the same on the relay, see relay/vision.py):

    POST /v1/vision/detection          multipart image, min_confidence, api_key -> predictions
    POST /v1/vision/custom/{model}     the same with the worker's own model's name
    POST /v1/vision/custom/list        the models this server runs
    GET  /v1/server/status/ping        {"success": true}

Every answer is JSON with a Content-Length, never chunked (Blue Iris fails on chunked answers).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.imageinfo import ImageError
from core.lan.form import credential, read_form
from core.lan.service import LanService
from core.lan.wire import WRONG_KEY, ModelList, WireError, detection_body, encode, error_body, predictions
from core.worker.batcher import InferenceError
from core.worker.engine import WorkerNotRunning

log = logging.getLogger(__name__)

JSON = "application/json"


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(body), status_code=status, media_type=JSON, headers=headers)  # type: ignore[arg-type]


def error_response(exc: WireError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers())


class LanApi:
    def __init__(self, service: LanService, key: str | None, max_image_bytes: int) -> None:
        self.service = service
        self.key = key or None
        self.max_image_bytes = max_image_bytes

    def check_key(self, given: str | None) -> None:
        if self.key is None:
            return  # no key set: DeepStack ignores api_key then
        if given is None or not hmac.compare_digest(given.encode(), self.key.encode()):
            raise WireError(401, WRONG_KEY)

    async def detection(self, request: Request) -> Response:
        return await self._detect(request, "detect")

    async def custom(self, request: Request) -> Response:
        model = request.path_params["model"]
        if model != self.service.model_name:
            # Checked after the key, like DeepStack's own middlewares (the key goes first).
            form = await read_form(request, self.max_image_bytes)
            self.check_key(credential(form, request.headers.get("authorization")))
            raise WireError(400, f"no model {model[:100]!r} here; this server runs {self.service.model_name!r}")
        return await self._detect(request, "custom")

    async def _detect(self, request: Request, command: str) -> Response:
        started = time.monotonic()
        form = await read_form(request, self.max_image_bytes)
        self.check_key(credential(form, request.headers.get("authorization")))
        data = form.require_image()
        min_confidence, limit = form.min_confidence, form.max_predictions
        try:
            answer = await self.service.review(data)
        except ImageError as exc:
            raise WireError(400, f"invalid image file: {exc}") from None
        except WorkerNotRunning as exc:
            raise WireError(503, f"{exc}; retry shortly", retry_after=2) from None
        except InferenceError as exc:
            raise WireError(500, f"error occurred on the server: {exc}") from None
        preds = predictions(answer.detections, min_confidence, limit, answer.width, answer.height)
        body = detection_body(
            preds,
            inference_ms=answer.infer_ms,
            process_ms=answer.decode_ms + answer.wait_ms + answer.infer_ms,
            round_trip_ms=(time.monotonic() - started) * 1000.0,
            model=self.service.model_name,
            provider=self.service.provider,
            command=command,
            request_id=uuid.uuid4().hex,
        )
        return json_response(body)

    async def custom_list(self, request: Request) -> Response:
        form = await read_form(request, self.max_image_bytes)
        self.check_key(credential(form, request.headers.get("authorization")))
        return json_response(ModelList(models=[self.service.model_name]))

    async def ping(self, request: Request) -> Response:
        return json_response({"success": True})


def _counted(service: LanService, handler: Callable[[Request], Awaitable[Response]]) -> Callable:
    async def run(request: Request) -> Response:
        try:
            response = await handler(request)
        except WireError as exc:
            response = error_response(exc)
        service.count(response.status_code == 200)
        return response

    return run


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    text = {404: "no such route", 405: "method not allowed"}.get(status, str(getattr(exc, "detail", "")))
    return json_response(error_body(text, status), status)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("LAN API: unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response(error_body("error occurred on the server", 500), 500)


def create_app(service: LanService, key: str | None = None, max_image_bytes: int = 8_000_000) -> Starlette:
    api = LanApi(service, key, max_image_bytes)
    routes = [
        Route("/v1/vision/detection", _counted(service, api.detection), methods=["POST"]),
        Route("/v1/vision/custom/list", _counted(service, api.custom_list), methods=["POST", "GET"]),
        Route("/v1/vision/custom/{model}", _counted(service, api.custom), methods=["POST"]),
        Route("/v1/server/status/ping", api.ping, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})
