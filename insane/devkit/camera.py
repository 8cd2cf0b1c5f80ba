"""A camera's snapshot server on loopback: what the demo's Pro tenant and the worker tests fetch moments from.

with ImageServer() as camera:
    url = camera.add("front/3.jpg", data)        # http://127.0.0.1:PORT/front/3.jpg
with serve_images({"bus.jpg": data}) as camera:
    camera.base + "/bus.jpg"
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Mapping
from typing import ClassVar


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class ImageServer:
    """A camera's snapshot server on loopback: ``url = server.add("front/3.jpg", data)``."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}
        handler = type("Handler", (_Handler,), {"files": self._files})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-images", daemon=True)
        self.host = "127.0.0.1"
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, name: str, data: bytes) -> str:
        self._files[f"/{name}"] = data
        return f"{self.base}/{name}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_images(files: Mapping[str, bytes]) -> ImageServer:
    """An ImageServer serving ``files`` by name (enter it to start serving)."""
    server = ImageServer()
    for name, data in files.items():
        server.add(name, data)
    return server
