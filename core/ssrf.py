"""The SSRF guard: tenant URLs reach public addresses only, and the connection goes where the check looked.

    guard = SsrfGuard(dedicated_tenant=worker_tenant)        # None on a shared worker
    target = await guard.for_event(event).check(url)         # raises SsrfBlocked("169.254.169.254 is link-local")
    client = httpx.AsyncClient(transport=GuardedTransport(guard), follow_redirects=False)
    await client.get(url, extensions={PIN_EXTENSION: target})   # connects to target.addresses, nothing else

The check parses the URL with httpx's own parser (the one that sends the request, so the two cannot disagree),
refuses anything but http/https, credentials and ports outside the port policy, reads numeric hosts the way
``inet_aton`` and browsers do (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``), resolves a name once and
refuses it if ANY of its addresses is not a global unicast address. :class:`GuardedTransport` then connects only
to those vetted addresses (its network backend never resolves a name), while the Host header and the TLS server name
stay the URL's own. Redirects are never followed by the transport's caller implicitly: each hop is a new
request and is checked again.

A tenant's allow-list may name private hosts; the caller honours it only on a worker dedicated to that tenant
(:meth:`SsrfGuard.for_event`). Even then only private-use ranges open up (private, loopback, link-local, CGNAT,
ULA), never multicast, reserved or the IPv4-in-IPv6 forms.

Ports: 80, 443 and 8080-8999 (:data:`DEFAULT_PORTS`), plus the ports on the tenant's own allow-list
(``allow_ports``, set by the operator; honoured on every worker and for webhooks, since a public host's port
opens nothing private). Any other port on a public host is refused, so a tenant cannot point a worker or the
relay at a public SMTP, database or admin port. A host on the private-host allow-list, where it is honoured,
may use any port: it is the tenant's own camera or NVR (Frigate on 5000, Blue Iris on 81).

``guard.check_static(url)`` applies every rule that needs no DNS (the relay runs it when a tenant posts a moment
URL or the operator sets a webhook), and ``check`` re-applies them all, with the resolved addresses, at fetch.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit
from uuid import UUID

import httpcore
import httpx

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = frozenset({80, 443, *range(8080, 9000)})
PORT_POLICY = "80, 443, 8080-8999 or a port on the tenant's allow-list"
PIN_EXTENSION = "insane_ssrf_target"  # request extension carrying a Target vetted by a (per-event) guard

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SsrfBlocked(Exception):
    """A URL the policy refuses. ``str()`` says exactly why, e.g. "169.254.169.254 is link-local"."""


class ResolveError(Exception):
    """The host name did not resolve (a network problem, not a refusal)."""


class _TenantEvent(Protocol):
    """What the guard reads of an event (a frozen LeasedEvent is one: read-only members)."""

    @property
    def tenant_id(self) -> UUID: ...

    @property
    def allow_private_hosts(self) -> Sequence[str]: ...

    @property
    def allow_ports(self) -> Sequence[int]: ...


# Categories an allow-listed host may resolve to. Everything else stays refused even then.
PRIVATE_USE = frozenset({"loopback", "private", "shared", "link-local", "unique-local", "site-local"})

_N4 = ipaddress.IPv4Network
_N6 = ipaddress.IPv6Network

# (network, category, how it reads in a message); first match wins, so narrower ranges come first.
_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str, str], ...] = (
    (_N4("0.0.0.0/32"), "unspecified", "unspecified"),
    (_N4("0.0.0.0/8"), "reserved", "reserved (this network, 0.0.0.0/8)"),
    (_N4("127.0.0.0/8"), "loopback", "loopback"),
    (_N4("10.0.0.0/8"), "private", "private"),
    (_N4("172.16.0.0/12"), "private", "private"),
    (_N4("192.168.0.0/16"), "private", "private"),
    (_N4("100.64.0.0/10"), "shared", "shared address space (carrier-grade NAT, 100.64.0.0/10)"),
    (_N4("169.254.0.0/16"), "link-local", "link-local"),
    (_N4("192.0.0.0/24"), "reserved", "reserved (IETF protocol assignments)"),
    (_N4("192.0.2.0/24"), "documentation", "documentation (TEST-NET-1)"),
    (_N4("198.51.100.0/24"), "documentation", "documentation (TEST-NET-2)"),
    (_N4("203.0.113.0/24"), "documentation", "documentation (TEST-NET-3)"),
    (_N4("198.18.0.0/15"), "benchmarking", "benchmarking"),
    (_N4("192.88.99.0/24"), "reserved", "reserved (6to4 relay anycast)"),
    (_N4("224.0.0.0/4"), "multicast", "multicast"),
    (_N4("255.255.255.255/32"), "broadcast", "broadcast"),
    (_N4("240.0.0.0/4"), "reserved", "reserved (240.0.0.0/4)"),
)

_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str, str], ...] = (
    (_N6("::/128"), "unspecified", "unspecified"),
    (_N6("::1/128"), "loopback", "loopback"),
    (_N6("64:ff9b:1::/48"), "reserved", "reserved (local-use NAT64)"),
    (_N6("100::/64"), "reserved", "reserved (discard-only)"),
    (_N6("2001:2::/48"), "benchmarking", "benchmarking"),
    (_N6("2001:10::/28"), "reserved", "reserved (ORCHID)"),
    (_N6("2001:20::/28"), "reserved", "reserved (ORCHIDv2)"),
    (_N6("2001:db8::/32"), "documentation", "documentation"),
    (_N6("3fff::/20"), "documentation", "documentation"),
    (_N6("fc00::/7"), "unique-local", "unique local (IPv6 ULA)"),
    (_N6("fe80::/10"), "link-local", "link-local"),
    (_N6("fec0::/10"), "site-local", "site-local"),
    (_N6("ff00::/8"), "multicast", "multicast"),
)
_MAPPED = _N6("::ffff:0:0/96")
_COMPATIBLE = _N6("::/96")
_NAT64 = _N6("64:ff9b::/96")
_GLOBAL_UNICAST = _N6("2000::/3")


def refusal(ip: IPAddress, allowed: frozenset[str] = frozenset()) -> str | None:
    """Why ``ip`` may not be fetched (a phrase like "is link-local"), or None for a global address.

    ``allowed`` names categories (see PRIVATE_USE) that an allow-list opened up.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        for network, category, label in _V4_RANGES:
            if ip in network:
                return None if category in allowed else f"is {label}"
        return None if ip.is_global else "is not a global address"
    if ip.scope_id:
        return "has an IPv6 zone identifier"
    if ip in _MAPPED:
        return f"is an IPv4-mapped IPv6 address (of {ip.ipv4_mapped})"
    for network6, category, label in _V6_RANGES:
        if ip in network6:
            return None if category in allowed else f"is {label}"
    if ip in _COMPATIBLE:
        return f"is an IPv4-compatible IPv6 address (of {ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)})"
    if ip in _NAT64:
        return _embedded("a NAT64 address", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        return _embedded("a 6to4 address", ip.sixtofour)
    if ip.teredo is not None:
        server, client = ip.teredo
        return _embedded("a Teredo address", client, "client") or _embedded("a Teredo address", server, "server")
    if ip not in _GLOBAL_UNICAST:
        return "is reserved (outside global unicast 2000::/3)"
    return None


def _embedded(kind: str, v4: ipaddress.IPv4Address, role: str = "") -> str | None:
    # The IPv4-in-IPv6 forms are judged by the IPv4 address they lead to; an allow-list never opens them.
    reason = refusal(v4)
    if reason is None:
        return None
    what = f"{role} {v4}" if role else str(v4)
    return f"is {kind} embedding {what}, which {reason}"


_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")
_DOMAIN = re.compile(r"^[a-z0-9_.-]+$")


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any spelling ``inet_aton`` and the WHATWG URL standard accept, or None for a name.

    A host whose last label is a number IS an address to a browser or resolver; if it is not a valid one
    (``1.2.3.4.5``, ``08.1``, ``256.1.1.1``) it is refused rather than sent to a resolver to guess.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot: "127.0.0.1." is still 127.0.0.1
    if not parts or not _NUMBER.match(parts[-1]):
        return None
    if len(parts) > 4:
        raise SsrfBlocked(f"host {host!r} looks like an IPv4 address but has more than four parts")
    numbers = []
    for part in parts:
        if not _NUMBER.match(part):
            raise SsrfBlocked(f"host {host!r} looks like an IPv4 address but {part!r} is not a number")
        try:
            if part[:2].lower() == "0x":
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part[0] == "0":
                numbers.append(int(part, 8))
            else:
                numbers.append(int(part))
        except ValueError:
            raise SsrfBlocked(f"host {host!r} looks like an IPv4 address but {part!r} is not a valid number") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise SsrfBlocked(f"host {host!r} looks like an IPv4 address but a part is out of range")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


@dataclass(frozen=True)
class Target:
    """A vetted URL: where it may connect (``addresses``, in the resolver's order) and under what name."""

    url: httpx.URL
    host: str  # the ASCII host as httpx sends it (IDNA-encoded, no brackets)
    port: int
    addresses: tuple[str, ...]
    allow_listed: bool = False


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the OS resolver (the event loop's getaddrinfo), in its order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ResolveError(f"{host} does not resolve: {exc.strerror}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class SsrfGuard:
    """Checks tenant URLs. One per process; ``for_event`` adds a tenant's allow-lists where they apply."""

    def __init__(
        self,
        allow_private_hosts: frozenset[str] = frozenset(),
        resolver: Resolver = system_resolver,
        *,
        dedicated_tenant: UUID | None = None,
        allow_ports: Iterable[int] = (),
    ) -> None:
        self.allow_private_hosts = frozenset(_normal_host(h) for h in allow_private_hosts)
        self.allow_ports = frozenset(allow_ports)
        self.dedicated_tenant = dedicated_tenant
        self._resolver = resolver
        self._per_list: dict[tuple[frozenset[str], frozenset[int]], SsrfGuard] = {}

    def for_event(self, event: _TenantEvent) -> SsrfGuard:
        """The guard for one event: its tenant's ports always, its private hosts only on that tenant's worker."""
        own = self.dedicated_tenant is not None and event.tenant_id == self.dedicated_tenant
        return self.with_lists(event.allow_private_hosts if own else (), event.allow_ports)

    def with_lists(self, hosts: Iterable[str] = (), ports: Iterable[int] = ()) -> SsrfGuard:
        """This guard with more allow-listed private hosts and ports (guards are cached per pair of lists)."""
        more_hosts = frozenset(_normal_host(h) for h in hosts) - self.allow_private_hosts
        more_ports = frozenset(ports) - self.allow_ports
        if not more_hosts and not more_ports:
            return self
        key = (self.allow_private_hosts | more_hosts, self.allow_ports | more_ports)
        guard = self._per_list.get(key)
        if guard is None:
            guard = self._per_list[key] = SsrfGuard(
                key[0], self._resolver, dedicated_tenant=self.dedicated_tenant, allow_ports=key[1]
            )
        return guard

    def check_static(self, url: str | httpx.URL) -> None:
        """Every rule that needs no DNS (syntax, scheme, credentials, port, literal addresses); raises SsrfBlocked.

        A host name passes here and is resolved and judged by :meth:`check` when the URL is fetched.
        """
        self._vet(url)

    async def check(self, url: str | httpx.URL) -> Target:
        """Vet ``url`` and resolve its host once. Raises SsrfBlocked (refused) or ResolveError (no such host)."""
        parsed, host, port, literal, allow_listed = self._vet(url)
        if literal is not None:
            return Target(parsed, host, port, (str(literal),), allow_listed)
        allowed = PRIVATE_USE if allow_listed else frozenset()
        answers = await self._resolver(host, port)
        if not answers:
            raise ResolveError(f"{host} has no addresses")
        addresses = []
        for answer in answers:
            try:
                ip = ipaddress.ip_address(answer.split("%", 1)[0])
            except ValueError:
                raise SsrfBlocked(f"{host} resolves to {answer!r}, which is not an IP address") from None
            reason = refusal(ip, allowed)
            if reason is not None:
                raise SsrfBlocked(f"{host} resolves to {ip}, which {reason}")
            addresses.append(str(ip))
        return Target(parsed, host, port, tuple(dict.fromkeys(addresses)), allow_listed)

    def _vet(self, url: str | httpx.URL) -> tuple[httpx.URL, str, int, IPAddress | None, bool]:
        parsed = _parse(url)
        host = parsed.raw_host.decode("ascii").lower()
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        literal, spelled = _literal(host)
        allow_listed = _normal_host(host) in self.allow_private_hosts
        if literal is not None:
            reason = refusal(literal, PRIVATE_USE if allow_listed else frozenset())
            if reason is not None:
                said = f"{host} means {literal}, which" if spelled else host
                raise SsrfBlocked(f"{said} {reason}")
        # Before any DNS: a name on a refused port is never resolved.
        if not allow_listed and port not in DEFAULT_PORTS and port not in self.allow_ports:
            raise SsrfBlocked(f"port {port} is not allowed ({PORT_POLICY})")
        return parsed, host, port, literal, allow_listed


def _parse(url: str | httpx.URL) -> httpx.URL:
    raw = str(url)
    if len(raw) > MAX_URL_LENGTH:
        raise SsrfBlocked(f"URL is {len(raw)} characters long, over the limit of {MAX_URL_LENGTH}")
    if "\\" in raw:
        raise SsrfBlocked("URL contains a backslash")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise SsrfBlocked("URL contains whitespace or control characters")
    try:
        netloc = urlsplit(raw).netloc  # first: its message for a broken IPv6 literal is the clearer one
        parsed = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as exc:
        raise SsrfBlocked(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise SsrfBlocked(f"scheme {parsed.scheme or '(none)'!r} is not allowed (http or https only)")
    if parsed.userinfo or "@" in netloc:
        raise SsrfBlocked("URL must not carry credentials (user:password@)")
    if not parsed.raw_host:
        raise SsrfBlocked("URL has no host")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise SsrfBlocked(f"port {parsed.port} is out of range (1 to 65535)")
    return parsed


def _literal(host: str) -> tuple[IPAddress | None, bool]:
    """(address, spelled oddly) when the host is an IP literal; (None, False) for a domain name."""
    if ":" in host:
        if "%" in host:
            raise SsrfBlocked(f"[{host}] has an IPv6 zone identifier")
        try:
            return ipaddress.IPv6Address(host), False  # reported as written: ::ffff:127.0.0.1, not ::ffff:7f00:1
        except ValueError:
            raise SsrfBlocked(f"[{host}] is not a valid IPv6 address") from None
    v4 = parse_ipv4(host)
    if v4 is not None:
        return v4, host != str(v4)
    if not _DOMAIN.match(host):
        raise SsrfBlocked(f"host {host!r} contains characters not allowed in a host name")
    return None, False


def allow_list_host(host: str) -> str:
    """An entry for a private-host allow-list, normalised (see ``_normal_host``); raises SsrfBlocked if it is
    not a host name or an IP address (a URL, a port, spaces, NUL...)."""
    bare = host.strip()
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    if not bare or len(bare) > 253:
        raise SsrfBlocked(f"{host!r} is not a host name or an IP address")
    normal = _normal_host(bare)
    if ":" in normal:
        try:
            ipaddress.IPv6Address(normal)
        except ValueError:
            raise SsrfBlocked(f"{host!r} is not a valid IPv6 address") from None
        return normal
    if not _DOMAIN.match(normal) or ".." in normal or normal.startswith("."):
        raise SsrfBlocked(f"{host!r} is not a host name or an IP address")
    parse_ipv4(normal)  # a numeric-looking name must be a valid address
    return normal


def _normal_host(host: str) -> str:
    """How hosts compare for the allow-list: lower case, no trailing dot, IPv4 spellings as dotted quads."""
    host = host.strip().lower().strip("[]").rstrip(".")
    try:
        if ":" in host:
            return str(ipaddress.IPv6Address(host))
        v4 = parse_ipv4(host)
    except (SsrfBlocked, ValueError):
        return host
    return str(v4) if v4 is not None else host


# --- the transport: connect only where the guard looked ----------------------------------------------------

_PINNED: contextvars.ContextVar[Target | None] = contextvars.ContextVar("insane_ssrf_pinned", default=None)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the vetted addresses of the request in progress; never resolves a name itself."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, address_map: Mapping[str, str]) -> None:
        self._inner = inner
        self._address_map = dict(address_map)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = _PINNED.get()
        if target is None or target.host != host.lower() or target.port != port:
            raise httpcore.ConnectError(f"no vetted address for {host}:{port}; refusing to connect")
        failure: Exception | None = None
        for address in target.addresses:
            address = self._address_map.get(address, address)
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                log.debug("connect to %s (%s) port %s failed: %s", host, address, port, exc)
                failure = exc
        assert failure is not None  # a Target always holds at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable through the SSRF guard")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncHTTPTransport`` that connects only to addresses an :class:`SsrfGuard` vetted.

    A request carrying ``extensions={PIN_EXTENSION: target}`` (from ``guard.check``) for its own host and port
    uses that target, so a name is resolved once per fetch; any other request is checked here by ``guard``.
    Host header, TLS server name and certificate check stay those of the URL. ``test_address_map`` is for
    tests only: it rewrites a vetted address to the one actually dialled (e.g. a public-looking address to a
    loopback test server), so the whole path can run on loopback.
    """

    def __init__(
        self,
        guard: SsrfGuard,
        *,
        verify: Any = True,
        limits: httpx.Limits | None = None,
        test_address_map: Mapping[str, str] | None = None,
    ) -> None:
        self._guard = guard
        kwargs: dict[str, Any] = {"verify": verify, "trust_env": False, "retries": 0}
        if limits is not None:
            kwargs["limits"] = limits
        self._inner = httpx.AsyncHTTPTransport(**kwargs)
        # httpx does not take a network backend; httpcore's pool does. Swap it in, and fail loudly (never
        # fall back to unpinned connections) if a new httpcore moves it.
        pool = getattr(self._inner, "_pool", None)
        if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
            raise RuntimeError("this httpcore version does not expose its network backend; cannot pin addresses")
        pool._network_backend = _PinnedBackend(pool._network_backend, test_address_map or {})

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii").lower()
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        target = request.extensions.get(PIN_EXTENSION)
        if not (isinstance(target, Target) and target.host == host and target.port == port):
            # No pin, or a pin for another host (httpx copies extensions onto a redirect): vet it here.
            try:
                target = await self._guard.check(request.url)
            except ResolveError as exc:
                raise httpx.ConnectError(str(exc), request=request) from exc
        token = _PINNED.set(target)
        try:
            return await self._inner.handle_async_request(request)
        finally:
            _PINNED.reset(token)

    async def aclose(self) -> None:
        await self._inner.aclose()
