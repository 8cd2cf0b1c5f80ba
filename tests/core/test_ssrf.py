"""The SSRF guard: address rules, URL rules, pinning, and >= 500 hostile payloads against canary listeners.

Every payload goes through three doors: ``SsrfGuard.check`` (a precise refusal), an httpx client on
``GuardedTransport`` (the relay's webhook path, redirects followed by httpx) and ``Preloader.get`` (the
worker's path, redirects followed and re-checked by the preloader). Canary listeners on loopback addresses
and ports that the payloads point at must record no contact at all.
"""

from __future__ import annotations

import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpcore
import httpx
import pytest

from core.preload import FetchError, Preloader
from core.protocol import LeasedEvent, MomentRef
from core.ssrf import (
    PIN_EXTENSION,
    GuardedTransport,
    ResolveError,
    SsrfBlocked,
    SsrfGuard,
    Target,
    _PinnedBackend,
    parse_ipv4,
    refusal,
)
from tests.core.ssrf_payloads import (
    PUBLIC_V4,
    PUBLIC_V6,
    TEST_HOST,
    Canaries,
    ImageServer,
    Payload,
    ScriptedResolver,
    generate,
    jpeg,
)

# The count and order of payloads do not depend on the port numbers, so ids can be fixed at collection.
_COLLECTED = generate({"127.0.0.1": 1, "127.0.0.2": 2, "127.1.2.3": 3, "::1": 4})
IMAGE = jpeg(320, 240, 3000)


class _NoBlobs:
    async def fetch_blob(self, blob: str, event: LeasedEvent) -> bytes:
        raise FetchError("no blobs in this test")


def _event(url: str, tenant: uuid.UUID | None = None, allow: list[str] | None = None) -> LeasedEvent:
    return LeasedEvent(
        lease_id="l",
        event_id=uuid.uuid4(),
        tenant_id=tenant or uuid.uuid4(),
        lane="standard",
        camera="c",
        created_at=datetime.now(UTC),
        moments=[MomentRef(index=0, url=url)],
        allow_private_hosts=allow or [],
    )


class Kit:
    """Everything the payload tests share: listeners, the test server, the resolver and both fetch paths."""

    canaries: Canaries
    server: ImageServer
    resolver: ScriptedResolver
    guard: SsrfGuard
    client: httpx.AsyncClient
    preloader: Preloader
    payloads: list[Payload]


@pytest.fixture(scope="module")
async def kit() -> AsyncIterator[Kit]:
    k = Kit()
    k.canaries = await Canaries.start()
    k.server = await ImageServer.start()
    k.server.routes["/ok.jpg"] = IMAGE
    k.resolver = ScriptedResolver()
    k.resolver.set(TEST_HOST, [PUBLIC_V4])
    k.resolver.set(f"private.{TEST_HOST}", ["10.0.0.1"])
    # The listeners sit on ephemeral ports: allow them, so the payloads meet the address rules, not the port rule.
    k.guard = SsrfGuard(resolver=k.resolver, allow_ports={k.server.port, *k.canaries.ports.values()})
    # The public-looking test address is dialled as the loopback test server: the only way in to loopback.
    transport = GuardedTransport(k.guard, test_address_map={PUBLIC_V4: "127.0.0.1"})
    k.client = httpx.AsyncClient(transport=transport, follow_redirects=True, timeout=5)
    k.preloader = Preloader(blobs=_NoBlobs(), client=k.client, guard=k.guard, deadline_s=5)
    k.payloads = generate(k.canaries.ports)
    assert len(k.payloads) == len(_COLLECTED)
    async with k.preloader:
        yield k
    await k.client.aclose()
    await k.server.close()
    await k.canaries.close()


# --- address and URL rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("8.8.8.8.", "8.8.8.8"),
        ("4294967295", "255.255.255.255"),
    ],
)
def test_numeric_hosts_read_like_inet_aton(host: str, address: str) -> None:
    assert parse_ipv4(host) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize("host", ["example.com", "cams.example.invalid", "a1.b2", "0x7f.example", "localhost"])
def test_names_are_not_addresses(host: str) -> None:
    assert parse_ipv4(host) is None


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("1.2.3.4.5", "more than four parts"),
        ("256.1.1.1", "out of range"),
        ("1.2.3.256", "out of range"),
        ("4294967296", "out of range"),
        ("09.1", "not a valid number"),
        ("a.1", "'a' is not a number"),
    ],
)
def test_ambiguous_numeric_hosts_are_refused(host: str, words: str) -> None:
    with pytest.raises(SsrfBlocked, match=words):
        parse_ipv4(host)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        PUBLIC_V4,
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.167.255.255",
        "198.17.255.255",
        "223.255.255.255",
        PUBLIC_V6,
        "2a00:1450:4001:81b::200e",
        "2002:808:808::1",
        "64:ff9b::808:808",
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
    ],
)
def test_global_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_messages_say_exactly_why() -> None:
    assert refusal(ipaddress.ip_address("169.254.169.254")) == "is link-local"
    assert refusal(ipaddress.ip_address("2002:a9fe:a9fe::")) == (
        "is a 6to4 address embedding 169.254.169.254, which is link-local"
    )


async def test_a_name_is_refused_if_any_address_is_private() -> None:
    resolver = ScriptedResolver()
    resolver.set("mixed.example", [PUBLIC_V4, PUBLIC_V6, "10.1.2.3"])
    with pytest.raises(SsrfBlocked, match=r"^mixed\.example resolves to 10\.1\.2\.3, which is private$"):
        await SsrfGuard(resolver=resolver).check("https://mixed.example/a.jpg")


async def test_a_public_name_is_vetted_once_with_all_its_addresses() -> None:
    resolver = ScriptedResolver()
    resolver.set("cam.example", [PUBLIC_V4, PUBLIC_V6])
    target = await SsrfGuard(resolver=resolver).check("https://CAM.example:8443/a.jpg?x=1")
    assert (target.host, target.port, target.addresses) == ("cam.example", 8443, (PUBLIC_V4, PUBLIC_V6))
    assert resolver.calls == {"cam.example": 1}


async def test_the_system_resolver_refuses_localhost() -> None:
    with pytest.raises(SsrfBlocked, match=r"^localhost resolves to (127\.0\.0\.1|::1), which is loopback$"):
        await SsrfGuard().check("http://localhost/")
    with pytest.raises(ResolveError, match="does not resolve"):
        await SsrfGuard().check(f"http://{TEST_HOST}/")


async def test_allow_list_applies_only_on_the_dedicated_tenants_worker() -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    resolver = ScriptedResolver()
    resolver.set("nvr.lan", ["192.168.1.20"])
    url = "http://nvr.lan/snap.jpg"
    dedicated = SsrfGuard(resolver=resolver, dedicated_tenant=tenant)
    shared = SsrfGuard(resolver=resolver)

    assert (await dedicated.for_event(_event(url, tenant, ["NVR.lan."])).check(url)).addresses == ("192.168.1.20",)
    for guard, event in [
        (dedicated, _event(url, other, ["nvr.lan"])),
        (shared, _event(url, tenant, ["nvr.lan"])),
        (dedicated, _event(url, tenant, [])),
    ]:
        with pytest.raises(SsrfBlocked, match=r"nvr\.lan resolves to 192\.168\.1\.20, which is private"):
            await guard.for_event(event).check(url)
    # The list names hosts, not ranges: another private host stays refused.
    resolver.set("printer.lan", ["192.168.1.30"])
    with pytest.raises(SsrfBlocked, match="which is private"):
        await dedicated.for_event(_event(url, tenant, ["nvr.lan"])).check("http://printer.lan/")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("224.0.0.251", "multicast"),
        ("::ffff:192.168.1.20", "IPv4-mapped"),
        ("0.0.0.0", "unspecified"),
        ("192.0.2.10", "documentation"),
        ("2002:c0a8:114::", "6to4 address embedding 192.168.1.20"),
    ],
)
async def test_allow_list_never_opens_non_host_ranges(answer: str, words: str) -> None:
    resolver = ScriptedResolver()
    resolver.set("nvr.lan", [answer])
    guard = SsrfGuard(frozenset({"nvr.lan"}), resolver=resolver)
    with pytest.raises(SsrfBlocked, match=words):
        await guard.check("http://nvr.lan/")


async def test_allow_listed_literals_match_any_spelling() -> None:
    guard = SsrfGuard(frozenset({"192.168.1.20", "[FD00::1]"}))
    assert (await guard.check("http://3232235796/")).addresses == ("192.168.1.20",)
    assert (await guard.check("http://[fd00:0::1]/")).addresses == ("fd00::1",)
    with pytest.raises(SsrfBlocked, match=r"192\.168\.1\.21 is private"):
        await guard.check("http://192.168.1.21/")


# --- pinning -----------------------------------------------------------------------------------------------------


async def test_the_backend_never_dials_without_a_vetted_target() -> None:
    backend = _PinnedBackend(httpcore.AnyIOBackend(), {})
    with pytest.raises(httpcore.ConnectError, match="no vetted address"):
        await backend.connect_tcp("127.0.0.1", 80)


async def test_dns_rebinding_uses_the_first_answer(kit: Kit) -> None:
    """The resolver answers public, then private: the fetch connects to the vetted first answer only."""
    host = f"rebind.{TEST_HOST}"
    canary = kit.canaries.ports["127.0.0.1"]
    kit.resolver.set(host, [PUBLIC_V4], ["127.0.0.1"])
    before = len(kit.server.requests)
    response = await kit.client.get(f"http://{host}:{kit.server.port}/ok.jpg")
    assert response.content == IMAGE
    assert kit.resolver.calls[host] == 1
    assert kit.server.requests[before][1]["host"] == f"{host}:{kit.server.port}"
    # The next fetch resolves again, sees the private answer, and is refused before any connection.
    with pytest.raises(SsrfBlocked, match=f"{host} resolves to 127.0.0.1, which is loopback"):
        await kit.client.get(f"http://{host}:{canary}/ok.jpg")

    kit.resolver.set(host, [PUBLIC_V4], ["127.0.0.1"])
    event = _event(f"http://{host}:{kit.server.port}/ok.jpg")
    assert await kit.preloader.get(event, event.moments[0]) == IMAGE
    assert kit.resolver.calls[host] == 1
    assert kit.canaries.hits == []


async def test_a_pin_for_another_host_is_not_trusted(kit: Kit) -> None:
    """A target vetted for one host cannot carry a request to another: the transport checks it again."""
    good = await kit.guard.check(f"http://{TEST_HOST}:{kit.server.port}/ok.jpg")
    with pytest.raises(SsrfBlocked, match=r"127\.0\.0\.2 is loopback"):
        await kit.client.get(f"http://127.0.0.2:{kit.canaries.ports['127.0.0.2']}/", extensions={PIN_EXTENSION: good})
    forged = Target(httpx.URL("http://x/"), "evil.example", 80, ("127.0.0.1",))
    kit.resolver.set("evil.example", ["10.9.8.7"])
    with pytest.raises(SsrfBlocked, match=r"evil\.example resolves to 10\.9\.8\.7"):
        await kit.client.get(f"http://evil.example:{kit.server.port}/", extensions={PIN_EXTENSION: forged})
    assert kit.canaries.hits == []


async def test_tls_keeps_the_server_name_and_checks_the_certificate(kit: Kit) -> None:
    """Connect to the pinned address while SNI, certificate check and Host stay the URL's name."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TEST_HOST)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TEST_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_file, key_file = _write_tmp(pem), _write_tmp(key_pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    seen: list[str | None] = []
    server_ctx.sni_callback = lambda sock, server_name, ctx: seen.append(server_name)
    server = await ImageServer.start(ssl_context=server_ctx)
    server.routes["/ok.jpg"] = IMAGE
    client_ctx = ssl.create_default_context(cadata=pem.decode())
    guard = kit.guard.with_lists(ports=[server.port])
    transport = GuardedTransport(guard, verify=client_ctx, test_address_map={PUBLIC_V4: "127.0.0.1"})
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(f"https://{TEST_HOST}:{server.port}/ok.jpg")
            assert response.content == IMAGE
            # The same certificate is wrong for another name on the same address: verification still applies.
            kit.resolver.set(f"other.{TEST_HOST}", [PUBLIC_V4])
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await client.get(f"https://other.{TEST_HOST}:{server.port}/ok.jpg")
    finally:
        await server.close()
    assert seen[0] == TEST_HOST and seen[1] == f"other.{TEST_HOST}"
    assert server.requests[0][1]["host"] == f"{TEST_HOST}:{server.port}"


def _write_tmp(data: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(delete=False, suffix=".pem") as handle:
        handle.write(data)
    return handle.name


# --- the payload suite ---------------------------------------------------------------------------------------------


def test_the_suite_has_at_least_500_payloads() -> None:
    assert len(_COLLECTED) >= 500
    assert sum(p.via == "redirect" for p in _COLLECTED) >= 50
    assert sum(bool(p.answers) for p in _COLLECTED) >= 100


@pytest.mark.parametrize("index", range(len(_COLLECTED)), ids=[p.id for p in _COLLECTED])
async def test_payload_is_refused_without_contact(kit: Kit, index: int) -> None:
    payload = kit.payloads[index]
    url = payload.url
    if payload.answers:
        kit.resolver.set(httpx.URL(url).host, *(list(a) for a in payload.answers))

    if payload.via == "redirect":
        path = f"/redirect/{index}"
        kit.server.routes[path] = (302, {"Location": payload.url}, b"")
        url = f"http://{TEST_HOST}:{kit.server.port}{path}"
        try:
            hop = httpx.URL(url).join(payload.url)
            await kit.guard.check(hop)
        except httpx.InvalidURL as exc:
            # httpx itself refuses to build the next request (it does so even when not following).
            expected = f"{TEST_HOST}: RemoteProtocolError: Invalid URL in location header: {exc}."
        except SsrfBlocked as exc:
            expected = f"refused redirect: {exc}"
        else:
            pytest.fail(f"the redirect target {hop} passed the guard")
    else:
        with pytest.raises((SsrfBlocked, ResolveError)) as refused:
            await kit.guard.check(url)
        message = str(refused.value)
        assert all(words in message for words in payload.expect), message

    # The relay's webhook path: httpx follows redirects, the transport vets every hop.
    refusals = (SsrfBlocked, httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.ConnectError, httpx.RemoteProtocolError)
    with pytest.raises(refusals):
        await kit.client.get(url)

    # The worker's path.
    event = _event(url)
    with pytest.raises(FetchError) as failed:
        await kit.preloader.get(event, event.moments[0])
    kit.preloader.forget(event.event_id)
    if payload.via == "redirect":
        assert str(failed.value) == expected
    else:
        assert all(words in str(failed.value) for words in payload.expect), str(failed.value)
    assert kit.canaries.hits == []


async def test_no_canary_was_ever_contacted(kit: Kit) -> None:
    assert kit.canaries.hits == []
    # The canaries do record contact: a direct connection shows up.
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", kit.canaries.ports["127.0.0.1"])
    writer.write(b"ping")
    await writer.drain()
    await reader.read()
    writer.close()
    assert [hit[0] for hit in kit.canaries.hits] == ["127.0.0.1"]
    kit.canaries.hits.clear()


async def test_a_tenant_url_on_a_public_address_is_fetched(kit: Kit) -> None:
    before = len(kit.server.requests)
    event = _event(f"http://{TEST_HOST}:{kit.server.port}/ok.jpg?cam=3")
    assert await kit.preloader.get(event, event.moments[0]) == IMAGE
    path, headers = kit.server.requests[before]
    assert path == "/ok.jpg?cam=3" and headers["host"] == f"{TEST_HOST}:{kit.server.port}"


async def test_redirect_hops_are_limited(kit: Kit) -> None:
    for i in range(8):
        kit.server.routes[f"/hop/{i}"] = (302, {"Location": f"/hop/{i + 1}"}, b"")
    kit.server.routes["/hop/8"] = IMAGE
    event = _event(f"http://{TEST_HOST}:{kit.server.port}/hop/0")
    with pytest.raises(FetchError, match="more than 5 redirects"):
        await kit.preloader.get(event, event.moments[0])
    event = _event(f"http://{TEST_HOST}:{kit.server.port}/hop/4")
    assert await kit.preloader.get(event, event.moments[0]) == IMAGE


async def test_redirect_to_a_private_name_is_refused_mid_chain(kit: Kit) -> None:
    kit.server.routes["/to-private"] = (
        301,
        {"Location": f"http://private.{TEST_HOST}:{kit.server.port}/ok.jpg"},
        b"",
    )
    event = _event(f"http://{TEST_HOST}:{kit.server.port}/to-private")
    with pytest.raises(FetchError, match=rf"^refused redirect: private\.{TEST_HOST} resolves to 10\.0\.0\.1"):
        await kit.preloader.get(event, event.moments[0])
