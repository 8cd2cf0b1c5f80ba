"""Test kit for the SSRF guard and the preloader: hostile URL payloads, canary listeners, a tiny image server.

    canaries = await Canaries.start()         # TCP listeners on several loopback addresses; .hits records any contact
    server = await ImageServer.start()        # real HTTP/1.1 on 127.0.0.1 with routes for images and redirects
    payloads = generate(canaries)             # >= 500 Payload(url, expect, resolver answers, via)

Everything listens on loopback only and is stopped by ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.ssrf import ResolveError, system_resolver

PUBLIC_V4 = "93.184.215.14"  # a global address the guard accepts; tests map it to the loopback test server
PUBLIC_V6 = "2606:4700:4700::1111"
TEST_HOST = "cams.example.invalid"  # .invalid never resolves for real: only the injected resolver knows it


def jpeg(width: int = 640, height: int = 480, size: int = 4096) -> bytes:
    """JPEG-shaped bytes with a real header (SOI, JFIF APP0, SOF0 with the given size), padded to ``size``."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    head = b"\xff\xd8" + app0 + sof0 + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    return head + bytes((i * 7) & 0x7F for i in range(max(0, size - len(head) - 2))) + b"\xff\xd9"


# --- listeners ------------------------------------------------------------------------------------------------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@dataclass
class Canaries:
    """TCP listeners that must never be contacted. ``ports[address]`` is each one's port."""

    servers: list[asyncio.Server] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    hits: list[tuple[str, int, bytes]] = field(default_factory=list)

    @classmethod
    async def start(cls) -> Canaries:
        self = cls()
        addresses = ["127.0.0.1", "127.0.0.2", "127.1.2.3"] + (["::1"] if ipv6_loopback() else [])
        for address in addresses:
            server = await asyncio.start_server(self._record(address), address, 0)
            self.servers.append(server)
            self.ports[address] = server.sockets[0].getsockname()[1]
        return self

    def _record(self, address: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                first = await asyncio.wait_for(reader.read(200), 1.0)
            except (TimeoutError, ConnectionError):
                first = b""
            self.hits.append((address, self.ports[address], first))
            writer.close()

        return handle

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


Handler = Callable[[asyncio.StreamWriter, dict[str, str]], Awaitable[None]]


@dataclass
class ImageServer:
    """A small real HTTP/1.1 server on 127.0.0.1. Each connection serves one request, then closes.

    ``routes[path]`` is bytes (served as image/jpeg), a (status, headers, body) tuple, or an async handler
    ``(writer, request_headers)`` that writes the raw response itself. ``requests`` records (path, headers).
    """

    server: asyncio.Server | None = None
    port: int = 0
    routes: dict[str, bytes | tuple[int, dict[str, str], bytes] | Handler] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @classmethod
    async def start(cls, ssl_context: object | None = None) -> ImageServer:
        self = cls()
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)  # type: ignore[arg-type]
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        self.requests.append((path, headers))
        route = self.routes.get(path.split("?")[0])
        with contextlib.suppress(ConnectionError):
            if callable(route):
                await route(writer, headers)
            else:
                status, extra, body = (
                    (200, {"Content-Type": "image/jpeg"}, route)
                    if isinstance(route, bytes)
                    else route
                    if route is not None
                    else (404, {}, b"not found")
                )
                writer.write(response_head(status, {"Content-Length": str(len(body)), **extra}) + body)
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def response_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in {"Connection": "close", **headers}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- resolver ---------------------------------------------------------------------------------------------------


class ScriptedResolver:
    """Answers from a table; a list of answers per name is handed out in turn (the last one repeats).

    ``localhost`` goes to the real system resolver (no network: /etc/hosts). ``calls`` counts look-ups.
    """

    def __init__(self) -> None:
        self.table: dict[str, list[list[str]]] = {}
        self.calls: dict[str, int] = {}

    def set(self, name: str, *answers: list[str]) -> None:
        self.table[name] = list(answers)
        self.calls.pop(name, None)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls[host] = self.calls.get(host, 0) + 1
        if host.rstrip(".") == "localhost":
            return await system_resolver(host, port)
        answers = self.table.get(host)
        if not answers:
            raise ResolveError(f"{host} does not resolve (not in the test table)")
        return answers[min(self.calls[host], len(answers)) - 1]


# --- payloads ---------------------------------------------------------------------------------------------------

# Blocked IPv4 addresses and the words a refusal must contain.
BLOCKED_V4: dict[str, str] = {
    "127.0.0.1": "loopback",
    "127.0.0.2": "loopback",
    "127.1.2.3": "loopback",
    "127.255.255.254": "loopback",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "reserved",
    "10.0.0.1": "private",
    "10.255.255.255": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.0.1": "private",
    "192.168.255.255": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "192.0.0.8": "reserved",
    "192.0.2.1": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "198.18.0.1": "benchmarking",
    "198.19.255.254": "benchmarking",
    "192.88.99.1": "reserved",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "reserved",
    "254.1.2.3": "reserved",
}

BLOCKED_V6: dict[str, str] = {
    "::1": "loopback",
    "0:0:0:0:0:0:0:1": "loopback",
    "0000:0000:0000:0000:0000:0000:0000:0001": "loopback",
    "::": "unspecified",
    "::ffff:127.0.0.1": "IPv4-mapped",
    "::ffff:7f00:1": "IPv4-mapped",
    "::ffff:169.254.169.254": "IPv4-mapped",
    "::ffff:10.0.0.1": "IPv4-mapped",
    "::ffff:8.8.8.8": "IPv4-mapped",
    "::127.0.0.1": "IPv4-compatible",
    "::a9fe:a9fe": "IPv4-compatible",
    "::2": "IPv4-compatible",
    "fe80::1": "link-local",
    "FE80::DEAD:BEEF": "link-local",
    "febf::1": "link-local",
    "fc00::1": "unique local",
    "fd12:3456:789a::1": "unique local",
    "fdff:ffff::1": "unique local",
    "fec0::1": "site-local",
    "feff::1": "site-local",
    "ff02::1": "multicast",
    "ff05::1:3": "multicast",
    "ff0e::1": "multicast",
    "2002:7f00:1::": "6to4 address embedding 127.0.0.1",
    "2002:a9fe:a9fe::1": "6to4 address embedding 169.254.169.254",
    "2002:c0a8:101::": "embedding 192.168.1.1",
    "2002:0a00:0001::": "embedding 10.0.0.1",
    "64:ff9b::7f00:1": "NAT64 address embedding 127.0.0.1",
    "64:ff9b::169.254.169.254": "NAT64 address embedding 169.254.169.254",
    "64:ff9b::a00:1": "embedding 10.0.0.1",
    "64:ff9b:1::1": "local-use NAT64",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "Teredo address embedding client 127.0.0.1",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe": "Teredo address embedding client 10.0.0.1",
    "2001:0:7f00:1:8000:63bf:f7f7:f7f7": "Teredo address embedding server 127.0.0.1",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "100::1": "discard-only",
    "2001:2::1": "benchmarking",
    "2001:10::1": "ORCHID",
    "2001:20::1": "ORCHIDv2",
    "::ffff:0:7f00:1": "reserved",
    "4000::1": "reserved",
    "1::1": "reserved",
}


def v4_spellings(address: str) -> list[str]:
    """Ways to write one IPv4 address that inet_aton, browsers or both accept."""
    a, b, c, d = (int(x) for x in address.split("."))
    n = int(ipaddress.IPv4Address(address))
    return sorted(
        {
            address,
            str(n),
            hex(n),
            hex(n).upper().replace("X", "x"),
            "0" + oct(n)[2:],
            "0x" + f"{n:08x}".lstrip("0") if n else "0x0",
            f"{a:#x}.{b:#x}.{c:#x}.{d:#x}",
            f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
            f"{a}.{b}.{(c << 8) | d}",
            f"{a}.{(b << 16) | (c << 8) | d}",
            f"{a:#x}.{(b << 16) | (c << 8) | d:#x}",
            f"0{a:o}.{(b << 16) | (c << 8) | d}",
            address + ".",
            f"{n}.",
        }
    )


@dataclass(frozen=True)
class Payload:
    id: str
    url: str
    expect: tuple[str, ...]  # phrases the refusal must contain
    answers: tuple[tuple[str, ...], ...] = ()  # resolver answers for the payload's host, in turn
    via: str = "direct"  # direct: the URL itself; redirect: the test server answers 302 to it


_HTTPX_REJECTS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def _expect_for_spelling(spelled: str, reason: str) -> str:
    # httpx refuses a dotted quad with leading zeros or parts over 255 before our parser sees it.
    if _HTTPX_REJECTS.match(spelled) and any((len(p) > 1 and p[0] == "0") or int(p) > 255 for p in spelled.split(".")):
        return "Invalid IPv4 address"
    return reason


def generate(ports: dict[str, int]) -> list[Payload]:
    """Hostile URLs: encodings × blocked ranges × IPv6 forms × URL tricks × hostile DNS × redirects."""
    port = ports.get("127.0.0.1", 9)
    out: list[Payload] = []

    def add(url: str, *expect: str, answers: tuple[tuple[str, ...], ...] = (), via: str = "direct") -> None:
        out.append(Payload(f"{via}-{len(out)}", url, expect, answers, via))

    for address, reason in BLOCKED_V4.items():
        to = ports.get(address, port)
        for spelled in v4_spellings(address):
            add(f"http://{spelled}:{to}/x.jpg", _expect_for_spelling(spelled, reason))
        add(f"https://{address}/x.jpg", reason)
    v6_port = ports.get("::1", port)
    for address, reason in BLOCKED_V6.items():
        add(f"http://[{address}]:{v6_port}/x.jpg", reason)
        add(f"https://[{address}]/x.jpg", reason)
    add(f"http://[fe80::1%25lo]:{v6_port}/", "zone identifier")
    add(f"http://[::1%251]:{v6_port}/", "zone identifier")

    loop = f"127.0.0.1:{port}"
    for url, expect in [
        (f"http://user:pass@{loop}/", "credentials"),
        (f"http://8.8.8.8@{loop}/", "credentials"),
        (f"http://user@{PUBLIC_V4}/", "credentials"),
        (f"http://@{loop}/", "credentials"),
        (f"http://:@{loop}/", "credentials"),
        (f"http://{PUBLIC_V4}:x@{loop}/", "credentials"),
        (f"http://{loop}#@{PUBLIC_V4}/", "loopback"),
        (f"http://{loop}?@{PUBLIC_V4}/", "loopback"),
        (f"http://{loop}\\@{PUBLIC_V4}/", "backslash"),
        (f"http://{PUBLIC_V4}\\@{loop}/", "backslash"),
        ("file:///etc/passwd", "scheme 'file'"),
        (f"gopher://{loop}/_FLUSHALL", "scheme 'gopher'"),
        (f"dict://{loop}/info", "scheme 'dict'"),
        (f"ftp://{loop}/x.jpg", "scheme 'ftp'"),
        (f"ws://{loop}/", "scheme 'ws'"),
        ("data:image/jpeg;base64,/9j/4AAQ", "scheme 'data'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        (f"HTTP://{loop}/", "loopback"),
        (f"hTTps://{loop}/", "loopback"),
        (f"http:/{loop}/", "no host"),
        (f"http:{loop}/", "no host"),
        ("http:///x.jpg", "no host"),
        (f" http://{loop}/", "whitespace"),
        (f"http://{loop}/\r\nX: y", "whitespace"),
        ("http://127.0.0.1\t/", "whitespace"),
        ("http://127.0.0.1:0/", "out of range"),
        ("http://127.0.0.1:65536/", "out of range"),
        ("http://127.0.0.1:99999/", "out of range"),
        (f"http://{loop}/" + "a" * 2100, "over the limit"),
        (f"http://localhost:{port}/", "loopback"),
        (f"http://LOCALHOST:{port}/", "loopback"),
        (f"http://localhost.:{port}/", "does not resolve"),
        (f"http://1.2.3.4.5:{port}/", "more than four parts"),
        (f"http://127.0.0.1.1:{port}/", "more than four parts"),
        (f"http://08.0.0.1:{port}/", "Invalid IPv4 address"),
        (f"http://0x7g.1:{port}/", "'0x7g' is not a number"),
        (f"http://08.1:{port}/", "not a valid number"),
        (f"http://256.0.0.1:{port}/", "Invalid IPv4 address"),
        (f"http://127..1:{port}/", "is not a number"),
        (f"http://4294967296:{port}/", "out of range"),
        (f"http://127.0.0.256.:{port}/", "out of range"),
        (f"http://example.127:{port}/", "is not a number"),
        (f"http://%31%32%37.0.0.1:{port}/", "is not a number"),
        (f"http://%6c%6fcalhost:{port}/", "not allowed"),
        (f"http://[::1:{port}/", "not a valid URL"),
        (f"http://[127.0.0.1]:{port}/", "not a valid URL"),
        (f"http://１２７.０.０.１:{port}/", "not a valid URL"),
        (f"http://127。0。0。1:{port}/", "loopback"),
    ]:
        add(url, expect)

    # Hostile DNS: a name with one blocked address, or a public one mixed with a blocked one.
    for i, (address, reason) in enumerate([*BLOCKED_V4.items(), *BLOCKED_V6.items()]):
        ip = str(ipaddress.ip_address(address))
        add(f"http://name{i}.{TEST_HOST}:{port}/x.jpg", f"resolves to {ip}, which", reason, answers=((address,),))
        add(
            f"http://mixed{i}.{TEST_HOST}:{port}/x.jpg",
            f"resolves to {ip}, which",
            reason,
            answers=((PUBLIC_V4, PUBLIC_V6, address),),
        )
    add(f"http://scoped.{TEST_HOST}/", "fe80::1, which is link-local", answers=(("fe80::1%eth0",),))
    add(f"http://garbage.{TEST_HOST}/", "not an IP address", answers=(("not-an-ip",),))

    # Redirects from an accepted public URL to each kind of blocked target.
    redirect_targets = [
        *(
            f"http://{s}:{ports.get(a, port)}/x.jpg"
            for a in ("127.0.0.1", "127.0.0.2", "127.1.2.3")
            for s in v4_spellings(a)
        ),
        *(f"http://{a}:{port}/latest/meta-data/" for a in ("169.254.169.254", "10.0.0.1", "192.168.1.1", "0.0.0.0")),
        *(
            f"http://[{a}]:{v6_port}/"
            for a in ("::1", "::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1", "fe80::1")
        ),
        f"http://localhost:{port}/",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_x",
        f"//127.0.0.1:{port}/x",
        f"http://user:pw@{PUBLIC_V4}/",
        f"http://private.{TEST_HOST}:{port}/",
    ]
    for target in redirect_targets:
        add(target, "refused redirect", via="redirect")
    return out
