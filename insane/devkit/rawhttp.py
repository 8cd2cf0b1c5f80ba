"""A small keep-alive HTTP/1.1 client for load generators: a fraction of httpx's CPU per request.

    conn = await Connection.open("http://127.0.0.1:8787")
    status, body = await conn.request("POST", "/v1/worker/lease", json_body={"max_events": 2}, auth=token)
    await conn.close()

Benchmarks run the load and the relay on the same few cores, so the client's own cost is part of what
is measured; this one builds requests by hand and reads ``Content-Length`` bodies only (what the relay
sends). Not for anything but loopback benchmarks: no TLS, no chunked bodies, no redirects.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any


class Connection:
    def __init__(self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.host, self.port = host, port
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
        return cls(host, int(port), reader, writer)

    async def close(self) -> None:
        self.writer.close()

    async def _reopen(self) -> None:
        self.writer.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)

    def head(self, method: str, path: str, length: int, content_type: str | None, auth: str | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {length}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        if auth:
            lines.append(f"Authorization: Bearer {auth}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes = b"",
        content_type: str | None = None,
        auth: str | None = None,
    ) -> tuple[int, bytes]:
        """One request on this connection; returns (status, body)."""
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        request = self.head(method, path, len(body), content_type, auth) + body
        if self.reader.at_eof():
            await self._reopen()  # the server closed it while idle (uvicorn's keep-alive timeout is 5 s)
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise  # the server answered part of it: not a request it never read
            # Closed as the request went out: the server never read it, so sending it again is safe.
            await self._reopen()
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, (await self.reader.readexactly(length)) if length else b""


def multipart(event: dict[str, Any], jpegs: Sequence[bytes]) -> tuple[bytes, str]:
    """An events POST that uploads its moments: (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="event"\r\n'
        "Content-Type: application/json\r\n\r\n".encode()
        + json.dumps(event).encode()
        + b"\r\n"
    ]
    for i, data in enumerate(jpegs):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="moment"; filename="m{i}.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
