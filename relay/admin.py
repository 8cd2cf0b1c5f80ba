"""The admin HTTP API (``Authorization: Bearer $INSANE_ADMIN_TOKEN``): what `insane tenant` does, over HTTP.

GET    /admin/tenants                         list
POST   /admin/tenants              {name, tier?}    -> tenant with its first api_key (shown once)
POST   /admin/tenants/{tenant}/keys                 -> {api_key}
DELETE /admin/keys/{key_id}                         revoke
PUT    /admin/tenants/{tenant}/tier  {tier}
PUT    /admin/tenants/{tenant}/webhook {url|null}   -> {secret}   (the URL must pass the SSRF policy)
PUT    /admin/tenants/{tenant}/private-hosts {hosts}
PUT    /admin/tenants/{tenant}/routing {routing: own|shared|own-then-shared|null, shared_after_s?}


PUT    /admin/tenants/{tenant}/ports {ports}        ports besides 80, 443 and 8080-8999
POST   /admin/enroll-codes         {tenant?, ttl_s?} -> {code, ...}
GET    /admin/workers

Bodies are the pydantic models below (also in /openapi.json); the token is checked before a body is read.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse

from relay import tenants
from relay.auth import check_admin
from relay.db import system_tx
from relay.params import parse_body
from relay.problems import Problem
from relay.routing import push_routing
from relay.state import state

BODY_LIMIT = 65536
B = TypeVar("B", bound=BaseModel)
Text = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TenantCreate(_Body):
    name: Text = Field(description="unique tenant name")
    tier: Text = Field("guardian", description="a tier in the database: guardian or pro by default")


class TierSet(_Body):
    tier: Text


class WebhookSet(_Body):
    url: str | None = Field(
        None,
        max_length=2048,
        description="http(s) URL under the SSRF policy (public host; port 80, 443, 8080-8999 or an allowed one); "
        "null removes the webhook",
        json_schema_extra={"format": "uri"},
    )


class PrivateHostsSet(_Body):
    hosts: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        max_length=tenants.MAX_LIST, description="host names or IP addresses; honoured on the tenant's own workers"
    )


class PortsSet(_Body):
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        max_length=tenants.MAX_LIST, description="ports the tenant's URLs may use besides 80, 443 and 8080-8999"
    )


class RoutingSet(_Body):
    routing: tenants.Routing | None = Field(
        description="own: only the tenant's dedicated workers; shared: the operator's pool; own-then-shared: its "
        "own first, the pool after shared_after_s; null: automatic (own once it has a dedicated worker)"
    )
    shared_after_s: float | None = Field(
        None, ge=0, le=86400, allow_inf_nan=False, description="own-then-shared: seconds (null: the relay's default)"
    )


class EnrollCodeCreate(_Body):
    tenant: Text | None = Field(None, description="dedicate the worker to this tenant (id or name)")
    ttl_s: int = Field(3600, ge=60, le=30 * 86400, description="seconds the code stays valid")


BODIES: list[type[BaseModel]] = [
    TenantCreate,
    TierSet,
    WebhookSet,
    PrivateHostsSet,
    PortsSet,
    RoutingSet,
    EnrollCodeCreate,
]


def _check(request: Request) -> None:
    token = state(request).settings.admin_token
    check_admin(request.headers.get("authorization"), token.get_secret_value() if token else None)


async def _body(request: Request, model: type[B]) -> B:
    _check(request)  # before reading the body
    return await parse_body(request, model, BODY_LIMIT)


async def _run(request: Request, op, *args: Any) -> Any:
    relay = state(request)
    _check(request)
    try:
        async with system_tx(relay.pool) as conn:
            result = await op(conn, *args)
    except tenants.NotFound as exc:
        raise Problem(404, "not-found", str(exc)) from None
    except tenants.Invalid as exc:
        raise Problem(422, "invalid-body", str(exc)) from None
    except tenants.TenantError as exc:
        raise Problem(409, "conflict", str(exc)) from None
    relay.forget_credentials()
    return result


async def list_tenants(request: Request) -> JSONResponse:
    return JSONResponse({"tenants": await _run(request, tenants.list_tenants)})


async def create_tenant(request: Request) -> JSONResponse:
    body = await _body(request, TenantCreate)
    return JSONResponse(await _run(request, tenants.create_tenant, body.name, body.tier), status_code=201)


async def add_key(request: Request) -> JSONResponse:
    key = await _run(request, tenants.add_key, request.path_params["tenant"])
    return JSONResponse({"api_key": key}, status_code=201)


async def revoke_key(request: Request) -> JSONResponse:
    key_id = await _run(request, tenants.revoke_key, request.path_params["key_id"])
    return JSONResponse({"revoked": key_id})


async def set_tier(request: Request) -> JSONResponse:
    body = await _body(request, TierSet)
    await _run(request, tenants.set_tier, request.path_params["tenant"], body.tier)
    return JSONResponse({"tier": body.tier})


async def set_webhook(request: Request) -> JSONResponse:
    body = await _body(request, WebhookSet)
    guard = getattr(request.app.state, "webhook_guard", None)  # the rules this relay delivers under
    secret = await _run(request, tenants.set_webhook, request.path_params["tenant"], body.url, guard)
    return JSONResponse({"url": body.url, "secret": secret})


async def set_private_hosts(request: Request) -> JSONResponse:
    body = await _body(request, PrivateHostsSet)
    hosts = await _run(request, tenants.set_private_hosts, request.path_params["tenant"], body.hosts)
    return JSONResponse({"hosts": hosts})


async def set_routing(request: Request) -> JSONResponse:
    body = await _body(request, RoutingSet)
    tenant_id = await _run(
        request, tenants.set_routing, request.path_params["tenant"], body.routing, body.shared_after_s
    )
    effective = await push_routing(state(request), [tenant_id])
    chosen, after_s = effective[tenant_id]
    return JSONResponse({"routing": chosen, "automatic": body.routing is None, "shared_after_s": after_s})


async def set_ports(request: Request) -> JSONResponse:
    body = await _body(request, PortsSet)
    ports = await _run(request, tenants.set_ports, request.path_params["tenant"], body.ports)
    return JSONResponse({"ports": ports})


async def enroll_code(request: Request) -> JSONResponse:
    body = await _body(request, EnrollCodeCreate)
    return JSONResponse(await _run(request, tenants.make_enroll_code, body.tenant, body.ttl_s), status_code=201)


async def list_workers(request: Request) -> JSONResponse:
    return JSONResponse({"workers": await _run(request, tenants.list_workers)})
