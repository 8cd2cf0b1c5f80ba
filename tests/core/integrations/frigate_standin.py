"""A Frigate stand-in on loopback: the API calls the bridge makes, with the shapes Frigate answers.

    with FrigateStandIn(frames={"front_door": [jpeg, ...]}) as frigate:
        frigate.add_event("1607123955.475377-mxklsc", snapshot=jpeg)
        frigate.url                                   # http://127.0.0.1:PORT
        frigate.fail("GET", "/api/events/<id>/snapshot.jpg", 500)   # the next answer there is a 500
        frigate.sub_labels                            # {event id: (sub label, score)} as Frigate stored them
        frigate.calls                                 # [(method, path)] in order

Shapes (Frigate 0.14+, ``frigate/api``): ``GET /api/<camera>/latest.jpg`` and
``GET /api/events/<id>/snapshot.jpg`` answer image/jpeg (404 JSON for an unknown event);
``POST /api/events/<id>/sub_label`` takes ``{"subLabel": str <= 100, "subLabelScore": 0 < float <= 1}``
and answers ``{"success": true, "message": "Event <id> sub label set to <label>"}``, 404 for an unknown
event, 422 for a bad body. With ``auth=(user, password)`` it behaves like Frigate's port 8971:
``POST /api/login`` sets the ``frigate_token`` JWT cookie, and every other call needs it (cookie or
``Authorization: Bearer``), else 401.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import secrets
import threading
from collections import defaultdict
from http.cookies import SimpleCookie
from typing import Any


class FrigateStandIn:
    def __init__(
        self,
        frames: dict[str, list[bytes]] | None = None,
        auth: tuple[str, str] | None = None,
        sub_label_api: bool = True,
    ) -> None:
        self.frames = {camera: itertools.cycle(images) for camera, images in (frames or {}).items()}
        self.snapshots: dict[str, bytes] = {}
        self.sub_labels: dict[str, tuple[str, float | None]] = {}
        self.calls: list[tuple[str, str]] = []
        self.auth = auth
        self.sub_label_api = sub_label_api  # False: a Frigate from before the sub-label API (404)
        self.tokens: set[str] = set()
        self.faults: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.lock = threading.Lock()
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._answer(self, "GET")

            def do_POST(self) -> None:
                standin._answer(self, "POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FrigateStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_event(self, event_id: str, snapshot: bytes) -> None:
        self.snapshots[event_id] = snapshot

    def fail(self, method: str, path: str, *statuses: int) -> None:
        """The next answers to ``method path`` are these statuses, in order."""
        with self.lock:
            self.faults[(method, path)].extend(statuses)

    def count(self, method: str, pattern: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and re.fullmatch(pattern, p))

    # ------------------------------------------------------------------------------------------
    def _answer(self, h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        with self.lock:
            self.calls.append((method, path))
            queued = self.faults.get((method, path))
            fault = queued.pop(0) if queued else None
        if fault is not None:
            return self._json(h, fault, {"success": False, "message": f"injected {fault}"})
        if method == "POST" and path == "/api/login":
            return self._login(h, body)
        if self.auth and not self._authorized(h):
            return self._json(h, 401, {"success": False, "message": "Unauthorized"})
        if method == "GET" and (m := re.fullmatch(r"/api/([A-Za-z0-9_-]+)/latest\.jpg", path)):
            frames = self.frames.get(m[1])
            if frames is None:
                return self._json(h, 404, {"success": False, "message": "Camera not found"})
            with self.lock:
                image = next(frames)
            return self._jpeg(h, image)
        if method == "GET" and (m := re.fullmatch(r"/api/events/([^/]+)/snapshot\.jpg", path)):
            image = self.snapshots.get(m[1])
            if image is None:
                return self._json(h, 404, {"success": False, "message": "Event not found"})
            return self._jpeg(h, image)
        if method == "POST" and (m := re.fullmatch(r"/api/events/([^/]+)/sub_label", path)) and self.sub_label_api:
            return self._sub_label(h, m[1], body)
        return self._json(h, 404, {"detail": "Not Found"})

    def _authorized(self, h: http.server.BaseHTTPRequestHandler) -> bool:
        bearer = h.headers.get("authorization", "").removeprefix("Bearer ").strip()
        cookie = SimpleCookie(h.headers.get("cookie", "")).get("frigate_token")
        return bearer in self.tokens or (cookie is not None and cookie.value in self.tokens)

    def _login(self, h: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        try:
            creds = json.loads(body)
        except ValueError:
            creds = {}
        if not self.auth or (creds.get("user"), creds.get("password")) != self.auth:
            return self._json(h, 401, {"message": "Login failed"})
        token = f"eyJhbGciOiJIUzI1NiJ9.{secrets.token_urlsafe(12)}.{secrets.token_urlsafe(12)}"
        self.tokens.add(token)
        h.send_response(200)
        h.send_header("Set-Cookie", f"frigate_token={token}; Path=/; HttpOnly; SameSite=Lax")
        h.send_header("Content-Type", "application/json")
        data = b"{}"
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _sub_label(self, h: http.server.BaseHTTPRequestHandler, event_id: str, body: bytes) -> None:
        if event_id not in self.snapshots:
            return self._json(h, 404, {"success": False, "message": f"Event {event_id} not found"})
        try:
            data = json.loads(body)
            label, score = data["subLabel"], data.get("subLabelScore")
            if not isinstance(label, str) or len(label) > 100:
                raise ValueError("subLabel: a string of at most 100 characters")
            if score is not None and not (isinstance(score, int | float) and 0 < score <= 1):
                raise ValueError("subLabelScore: greater than 0, at most 1")
        except (ValueError, KeyError, TypeError) as exc:
            return self._json(h, 422, {"detail": [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]})
        with self.lock:
            self.sub_labels[event_id] = (label, score)
        return self._json(h, 200, {"success": True, "message": f"Event {event_id} sub label set to {label}"})

    @staticmethod
    def _jpeg(h: http.server.BaseHTTPRequestHandler, data: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _json(h: http.server.BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
