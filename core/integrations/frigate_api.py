"""Frigate's HTTP API, the three calls the bridge makes.

    api = FrigateApi(client, "http://frigate:5000", username=None, password=None)
    jpeg = await api.latest("front_door")                       # GET /api/<camera>/latest.jpg
    jpeg = await api.snapshot("1607123955.475377-mxklsc")       # GET /api/events/<id>/snapshot.jpg
    await api.set_sub_label(event_id, "person ✓ 0.91", 0.91)    # POST /api/events/<id>/sub_label

Every failure is a :class:`FrigateError` with the HTTP status where there was one (``refused`` for a
4xx: asking again will not help). With a user and password (Frigate's authenticated port, 8971) the
API logs in through ``POST /api/login`` and sends the JWT it gets as a bearer token, logging in again
once when the token is refused.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

MAX_JPEG_BYTES = 20_000_000
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class FrigateError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


class FrigateApi:
    def __init__(
        self, client: httpx.AsyncClient, base_url: str, username: str | None = None, password: str | None = None
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self._token: str | None = None

    async def _login(self) -> None:
        try:
            resp = await self.client.post(
                f"{self.base_url}/api/login", json={"user": self.username, "password": self.password}, timeout=TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise FrigateError(f"login: {str(exc) or type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise FrigateError(f"login refused: HTTP {resp.status_code}", resp.status_code)
        # Frigate sets the JWT as a cookie (named frigate_token unless its config says otherwise).
        token = resp.cookies.get("frigate_token") or next(
            (value for value in resp.cookies.values() if value.count(".") == 2), None
        )
        if not token:
            raise FrigateError("login: Frigate answered without a token cookie")
        self._token = token
        log.info("logged in to Frigate as %s", self.username)

    async def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            return await self.client.request(
                method, f"{self.base_url}{path}", headers=headers, timeout=TIMEOUT, **kwargs
            )
        except httpx.HTTPError as exc:
            raise FrigateError(f"{method} {path}: {str(exc) or type(exc).__name__}") from exc

    async def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        if self.username and self._token is None:
            await self._login()
        resp = await self._send(method, path, **kwargs)
        if resp.status_code == 401 and self.username:
            await self._login()  # the token expired
            resp = await self._send(method, path, **kwargs)
        if resp.status_code >= 400:
            raise FrigateError(f"{method} {path}: HTTP {resp.status_code} {_detail(resp)}".rstrip(), resp.status_code)
        return resp

    async def _jpeg(self, path: str) -> bytes:
        resp = await self._call("GET", path)
        data = resp.content
        if len(data) > MAX_JPEG_BYTES:
            raise FrigateError(f"GET {path}: {len(data)} bytes, over {MAX_JPEG_BYTES}")
        if not data.startswith(b"\xff\xd8"):
            raise FrigateError(f"GET {path}: not a JPEG ({resp.headers.get('content-type', 'no content type')})")
        return data

    async def latest(self, camera: str) -> bytes:
        return await self._jpeg(f"/api/{quote(camera, safe='')}/latest.jpg")

    async def snapshot(self, event_id: str) -> bytes:
        return await self._jpeg(f"/api/events/{quote(event_id, safe='')}/snapshot.jpg")

    async def set_sub_label(self, event_id: str, text: str, score: float | None) -> None:
        body: dict[str, object] = {"subLabel": text[:100]}
        if score is not None:
            body["subLabelScore"] = min(1.0, max(0.01, round(score, 2)))  # Frigate takes 0 < score <= 1
        await self._call("POST", f"/api/events/{quote(event_id, safe='')}/sub_label", json=body)


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or "")[:200]
    return ""
