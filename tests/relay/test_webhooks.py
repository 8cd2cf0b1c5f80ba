"""The webhook sender: one bad delivery is marked failed and the others go on; the port policy holds at delivery."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from core.ssrf import GuardedTransport, SsrfGuard
from insane.devkit.client import admin_headers, enroll_worker, make_tenant
from insane.devkit.relay import RelayServer
from relay import webhooks
from tests.relay.test_workers import _start_receiver, lease_until, result_for, results_post, submit

PUBLIC = "93.184.216.34"  # a public-looking address the test transport dials as loopback


async def _sql(state, sql: str, *args):
    async with state.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', '*', true)")
        return await conn.fetch(sql, *args)


def set_url(relay: RelayServer, tenant_id: str, url: str) -> None:
    """Straight into the table, past the checks of set_webhook: a row from before them, or a hand edit."""
    relay.call(
        _sql, "UPDATE tenants SET webhook_url = $2, webhook_secret = 's' WHERE id = $1", uuid.UUID(tenant_id), url
    )


def completed_event(relay: RelayServer, tenant, worker) -> str:
    """An event with a stored result, so its webhook delivery is due."""
    event_id = submit(relay, tenant)
    assert results_post(relay, worker, result_for(lease_until(relay, worker, event_id))).status_code == 200
    return event_id


def delivery(relay: RelayServer, event_id: str) -> tuple[str, str | None]:
    rows = relay.call(
        _sql, "SELECT status, last_error FROM webhook_deliveries WHERE event_id = $1", uuid.UUID(event_id)
    )
    return rows[0]["status"], rows[0]["last_error"]


def make_due_first(relay: RelayServer, event_id: str) -> None:
    relay.call(
        _sql,
        "UPDATE webhook_deliveries SET next_at = now() - interval '1 hour' WHERE event_id = $1",
        uuid.UUID(event_id),
    )


async def _send(state, client: httpx.AsyncClient, guard: SsrfGuard) -> int:
    async with client:
        return await webhooks.send_due(state, client, guard)


@pytest.fixture
def receiver():
    received: list = []
    hook = _start_receiver(received)
    hook.received = received
    yield hook
    hook.stop()


def test_an_unparsable_webhook_url_fails_its_delivery_and_the_others_still_go(relay: RelayServer, receiver) -> None:
    worker = enroll_worker(relay.url)
    bad, good = make_tenant(relay.url), make_tenant(relay.url)
    port = receiver.server.server_address[1]
    set_url(relay, bad.id, f"http://0177.0.0.1:{port}/hook")  # httpx raises InvalidURL, not an HTTPError
    set_url(relay, good.id, receiver.url)
    bad_event, good_event = completed_event(relay, bad, worker), completed_event(relay, good, worker)
    make_due_first(relay, bad_event)
    guard = SsrfGuard(frozenset({"127.0.0.1"}))
    sent = relay.call(_send, webhooks.guarded_client(guard), guard)
    assert sent == 1 and len(receiver.received) == 1
    status, error = delivery(relay, bad_event)
    assert status == "failed" and "not a valid URL" in error and "0177.0.0.1" in error
    assert delivery(relay, good_event) == ("sent", None)


def test_any_exception_in_one_delivery_is_recorded_and_the_loop_goes_on(relay: RelayServer) -> None:
    worker = enroll_worker(relay.url)
    broken, fine = make_tenant(relay.url), make_tenant(relay.url)
    set_url(relay, broken.id, "http://127.0.0.1:8080/boom")
    set_url(relay, fine.id, "http://127.0.0.1:8080/ok")
    first_bad, first_good = completed_event(relay, broken, worker), completed_event(relay, fine, worker)
    make_due_first(relay, first_bad)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/boom":
            raise RuntimeError("a bug somewhere below the sender")
        return httpx.Response(204)

    async def loop_for_a_while(state) -> None:
        guard = SsrfGuard(frozenset({"127.0.0.1"}))
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            task = asyncio.create_task(webhooks.run(state, client, guard, poll_s=0.05))
            await asyncio.sleep(0.5)
            assert not task.done()  # the sender survived the exception
            task.cancel()

    relay.call(loop_for_a_while)
    status, error = delivery(relay, first_bad)
    assert status == "failed" and error == "RuntimeError: a bug somewhere below the sender"
    assert delivery(relay, first_good) == ("sent", None)
    assert seen.count("/boom") == 1  # marked failed at once: not retried into the same bug


def test_webhook_ports_follow_the_policy_and_the_tenants_list(relay: RelayServer, receiver) -> None:
    worker = enroll_worker(relay.url)
    tenant = make_tenant(relay.url)
    port = receiver.server.server_address[1]  # an ephemeral port: outside 80, 443 and 8080-8999

    async def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC]

    guard = SsrfGuard(resolver=resolve)

    def send() -> int:
        client = httpx.AsyncClient(transport=GuardedTransport(guard, test_address_map={PUBLIC: "127.0.0.1"}))
        return relay.call(_send, client, guard)

    set_url(relay, tenant.id, f"http://hooks.test:{port}/hook")
    refused = completed_event(relay, tenant, worker)
    make_due_first(relay, refused)
    assert send() == 0 and receiver.received == []
    status, error = delivery(relay, refused)
    assert status == "failed" and f"port {port} is not allowed" in error
    allowed = httpx.put(f"{relay.url}/admin/tenants/{tenant.id}/ports", json={"ports": [port]}, headers=admin_headers())
    assert allowed.status_code == 200
    delivered = completed_event(relay, tenant, worker)
    make_due_first(relay, delivered)
    assert send() == 1 and len(receiver.received) == 1
    assert delivery(relay, delivered) == ("sent", None)
