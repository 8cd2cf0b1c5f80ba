"""The admin HTTP API (``Authorization: Bearer $INSANE_ADMIN_TOKEN``): what `insane tenant` does, over HTTP.

GET    /admin/tenants                         list
POST   /admin/tenants              {name, tier?}    -> tenant with its first api_key (shown once)
POST   /admin/tenants/{tenant}/keys                 -> {api_key}
DELETE /admin/keys/{key_id}                         revoke
PUT    /admin/tenants/{tenant}/tier  {tier}
PUT    /admin/tenants/{tenant}/webhook {url|null}   -> {secret}
PUT    /admin/tenants/{tenant}/private-hosts {hosts}
PUT    /admin/tenants/{tenant}/routing {routing: own|shared|own-then-shared|null, shared_after_s?}
POST   /admin/enroll-codes         {tenant?, ttl_s?} -> {code, ...}
GET    /admin/workers
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from relay import tenants
from relay.auth import check_admin
from relay.db import DatabaseUnavailable, system_tx
from relay.problems import Problem, unavailable
from relay.routing import push_routing
from relay.state import state


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 65536:
        raise Problem(413, "request-too-large", "admin bodies are at most 64 KiB")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise Problem(422, "invalid-body", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Problem(422, "invalid-body", "the body is a JSON object")
    return body


def _str(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise Problem(422, "invalid-body", f"{name}: a non-empty string")
    return value


async def _run(request: Request, op, *args: Any) -> Any:
    relay = state(request)
    check_admin(request.headers.get("authorization"), _token(request))
    try:
        async with system_tx(relay.pool) as conn:
            result = await op(conn, *args)
    except tenants.TenantError as exc:
        status = 404 if str(exc).startswith("no ") else 409
        raise Problem(status, "not-found" if status == 404 else "conflict", str(exc)) from None
    except DatabaseUnavailable as exc:
        raise unavailable("the database") from exc
    relay.forget_credentials()
    return result


async def list_tenants(request: Request) -> JSONResponse:
    return JSONResponse({"tenants": await _run(request, tenants.list_tenants)})


async def create_tenant(request: Request) -> JSONResponse:
    check_admin(request.headers.get("authorization"), _token(request))  # before reading the body
    body = await _json(request)
    name, tier = _str(body, "name"), _str(body, "tier", required=False) or "guardian"
    return JSONResponse(await _run(request, tenants.create_tenant, name, tier), status_code=201)


async def add_key(request: Request) -> JSONResponse:
    key = await _run(request, tenants.add_key, request.path_params["tenant"])
    return JSONResponse({"api_key": key}, status_code=201)


async def revoke_key(request: Request) -> JSONResponse:
    key_id = await _run(request, tenants.revoke_key, request.path_params["key_id"])
    return JSONResponse({"revoked": key_id})


async def set_tier(request: Request) -> JSONResponse:
    check_admin(request.headers.get("authorization"), _token(request))
    tier = _str(await _json(request), "tier")
    await _run(request, tenants.set_tier, request.path_params["tenant"], tier)
    return JSONResponse({"tier": tier})


async def set_webhook(request: Request) -> JSONResponse:
    check_admin(request.headers.get("authorization"), _token(request))
    url = _str(await _json(request), "url", required=False)
    secret = await _run(request, tenants.set_webhook, request.path_params["tenant"], url)
    return JSONResponse({"url": url, "secret": secret})


async def set_private_hosts(request: Request) -> JSONResponse:
    check_admin(request.headers.get("authorization"), _token(request))
    hosts = (await _json(request)).get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(h, str) and 0 < len(h) <= 255 for h in hosts):
        raise Problem(422, "invalid-body", "hosts: a list of host names")
    await _run(request, tenants.set_private_hosts, request.path_params["tenant"], hosts)
    return JSONResponse({"hosts": hosts})


async def set_routing(request: Request) -> JSONResponse:
    check_admin(request.headers.get("authorization"), _token(request))
    body = await _json(request)
    routing = body.get("routing")
    if routing is not None and routing not in tenants.ROUTINGS:
        raise Problem(422, "invalid-body", f"routing: one of {', '.join(tenants.ROUTINGS)}, or null for automatic")
    after = body.get("shared_after_s")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int | float) or not 0 <= after <= 86400):
        raise Problem(422, "invalid-body", "shared_after_s: seconds from 0 to 86400, or null for the default")
    tenant_id = await _run(request, tenants.set_routing, request.path_params["tenant"], routing, after)
    effective = await push_routing(state(request), [tenant_id])
    chosen, after_s = effective[tenant_id]
    return JSONResponse({"routing": chosen, "automatic": routing is None, "shared_after_s": after_s})


async def enroll_code(request: Request) -> JSONResponse:
    check_admin(request.headers.get("authorization"), _token(request))
    body = await _json(request)
    tenant = _str(body, "tenant", required=False)
    ttl = body.get("ttl_s", 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 60 <= ttl <= 30 * 86400:
        raise Problem(422, "invalid-body", "ttl_s: whole seconds from 60 to 2592000")
    return JSONResponse(await _run(request, tenants.make_enroll_code, tenant, ttl), status_code=201)


async def list_workers(request: Request) -> JSONResponse:
    return JSONResponse({"workers": await _run(request, tenants.list_workers)})


def _token(request: Request) -> str | None:
    token = state(request).settings.admin_token
    return token.get_secret_value() if token else None
