"""The OpenAPI 3.1 document served at /openapi.json: the routes written out, every JSON body's schema generated
from the pydantic models the handlers read and answer with (pydantic's models_json_schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from core.lan.wire import DetectionResponse, ErrorResponse, ModelList
from core.protocol import (
    DeadLetterRequest,
    DeadLetterResponse,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatResponse,
    LeaseRequest,
    LeaseResponse,
    ResultsPost,
    ResultsResponse,
)
from relay import admin
from relay.intake import EventIn
from relay.problems import ProblemDetails
from relay.views import EventAccepted, EventList, EventStatus, EventView, OwnWorkers

REF = "#/components/schemas/{model}"

# Every JSON body the document names, requests and answers: their schemas are generated from these models
# (tests/relay/test_openapi.py holds every $ref to them). Only the multipart forms below are written out.
MODELS: list[type[BaseModel]] = [
    ProblemDetails,
    EventIn,
    EventAccepted,
    EventList,
    EventView,
    OwnWorkers,
    EnrollRequest,
    EnrollResponse,
    LeaseRequest,
    LeaseResponse,
    ResultsPost,
    ResultsResponse,
    Heartbeat,
    HeartbeatResponse,
    DeadLetterRequest,
    DeadLetterResponse,
    *admin.BODIES,
    DetectionResponse,
    ErrorResponse,
    ModelList,
]


def schemas() -> dict[str, Any]:
    """The components' schemas: each of :data:`MODELS` and every model they use, from pydantic."""
    _, top = models_json_schema([(model, "validation") for model in MODELS], ref_template=REF)
    return top["$defs"]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _problems(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request",
        401: "Missing or invalid credentials",
        403: "Refused",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported media type",
        422: "Invalid body",
        429: "Quota or rate limit (Retry-After)",
        503: "Overloaded or a dependency is down (Retry-After)",
    }
    return {
        str(c): {"description": text[c], "content": {"application/problem+json": {"schema": _ref(ProblemDetails)}}}
        for c in codes
    }


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _ok(model: type[BaseModel], code: int = 200, desc: str = "OK") -> dict[str, Any]:
    return {str(code): {"description": desc, "content": {"application/json": {"schema": _ref(model)}}}}


ENROLL = {
    "summary": "Exchange a one-time code for a worker token",
    "requestBody": _json_body(EnrollRequest),
    "responses": {**_ok(EnrollResponse), **_problems(403, 413, 422, 503)},
}
BEARER: list[dict[str, list[str]]] = [{"apiKey": []}]
WORKER: list[dict[str, list[str]]] = [{"workerToken": []}]
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]

VISION_FORM = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "contentMediaType": "image/jpeg", "description": "the JPEG to review"},
        "min_confidence": {"type": "string", "description": "0 to 1, default 0.4"},
        "api_key": {"type": "string", "description": "the tenant's API key (or Authorization: Bearer/Basic)"},
        "max_predictions": {"type": "string", "description": "1 to 1000, default 20"},
    },
}


def _vision_errors(*codes: int) -> dict[str, Any]:
    """The DeepStack API answers errors in its own form ({success: false, error}), not problem+json."""
    return {
        str(c): {"description": "an error", "content": {"application/json": {"schema": _ref(ErrorResponse)}}}
        for c in codes
    }


def _vision_paths() -> dict[str, Any]:
    detect = {
        "summary": "DeepStack / CodeProject.AI object detection of one JPEG (a 1-moment Pro-lane event)",
        "security": BEARER,
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": VISION_FORM}}},
        "responses": {**_ok(DetectionResponse), **_vision_errors(400, 401, 413, 429, 500, 503, 504)},
    }
    model = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
    listing = {
        "summary": "The models the online workers run",
        "security": BEARER,
        "responses": {**_ok(ModelList), **_vision_errors(401, 503)},
    }
    return {
        "/v1/vision/detection": {"post": detect},
        "/v1/vision/custom/list": {"post": listing, "get": listing},
        "/v1/vision/custom/{model}": {"post": {**detect, "parameters": [model]}},
        "/v1/server/status/ping": {
            "get": {"summary": "CodeProject.AI's liveness check", "responses": {"200": {"description": "alive"}}}
        },
    }


def build() -> dict[str, Any]:
    event_id = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
    q = [
        {"name": n, "in": "query", "required": False, "schema": s}
        for n, s in (
            ("camera", {"type": "string"}),
            ("status", TypeAdapter(EventStatus).json_schema()),
            ("since", {"type": "string", "format": "date-time"}),
            ("until", {"type": "string", "format": "date-time"}),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
            ("cursor", {"type": "string"}),
        )
    ]
    multipart = {
        "type": "object",
        "required": ["event"],
        "properties": {
            "event": {"type": "string", "description": "the EventIn JSON"},
            "moment": {"type": "array", "items": {"type": "string", "contentMediaType": "image/jpeg"}},
        },
    }
    paths = {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {
            "get": {
                "summary": "PostgreSQL and Redis reachable",
                "responses": {"200": {"description": "ready"}, "503": {"description": "a dependency is unreachable"}},
            }
        },
        "/metrics": {"get": {"summary": "Prometheus text", "responses": {"200": {"description": "metrics"}}}},
        "/v1/events": {
            "post": {
                "summary": "Submit an event for review",
                "security": BEARER,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref(EventIn)},
                        "multipart/form-data": {"schema": multipart},
                    },
                },
                "responses": {
                    **_ok(EventAccepted, 202, "Stored and queued"),
                    **_ok(EventAccepted, 200, "A retry of an event already stored"),
                    **_problems(400, 401, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "List events",
                "security": BEARER,
                "parameters": q,
                "responses": {**_ok(EventList), **_problems(400, 401, 503)},
            },
        },
        "/v1/events/stream": {
            "get": {
                "summary": "Server-Sent Events of results as they land; resumable from the last message's id",
                "security": BEARER,
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "the id of the last message received: results stored since are replayed first",
                        "schema": {"type": "string", "maxLength": 200},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "the same as Last-Event-ID, for clients that cannot set headers",
                        "schema": {"type": "string", "maxLength": 200},
                    },
                ],
                "responses": {
                    "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                    **_problems(400, 401, 503),
                },
            }
        },
        "/v1/events/{event_id}": {
            "get": {
                "summary": "One event with its result",
                "security": BEARER,
                "parameters": [event_id],
                "responses": {**_ok(EventView), **_problems(401, 404, 503)},
            }
        },
        "/v1/workers": {
            "get": {
                "summary": "Your own workers (dedicated to you) and their last heartbeat",
                "security": BEARER,
                "responses": {**_ok(OwnWorkers), **_problems(401, 503)},
            }
        },
        "/v1/worker/enroll": {"post": ENROLL},
        "/v1/workers/enroll": {
            "post": {
                **ENROLL,
                "description": "The first path of POST /v1/worker/enroll, kept for workers that still use it",
                "deprecated": True,
            }
        },
        "/v1/worker/lease": {
            "post": {
                "summary": "Long-poll for work",
                "security": WORKER,
                "requestBody": _json_body(LeaseRequest),
                "responses": {**_ok(LeaseResponse), **_problems(401, 413, 422, 503)},
            }
        },
        "/v1/worker/blobs/{blob}": {
            "get": {
                "summary": "An uploaded JPEG, for the worker holding the lease",
                "security": WORKER,
                "parameters": [{"name": "blob", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "JPEG", "content": {"image/jpeg": {}}},
                    **_problems(401, 404, 503),
                },
            }
        },
        "/v1/worker/results": {
            "post": {
                "summary": "Store results, then ack their leases",
                "security": WORKER,
                "requestBody": _json_body(ResultsPost),
                "responses": {**_ok(ResultsResponse), **_problems(401, 413, 422, 503)},
            }
        },
        "/v1/worker/heartbeat": {
            "post": {
                "summary": "Report the worker's state and metrics",
                "security": WORKER,
                "requestBody": _json_body(Heartbeat),
                "responses": {**_ok(HeartbeatResponse), **_problems(401, 413, 422, 503)},
            }
        },
        "/v1/worker/dead-letter": {
            "post": {
                "summary": "Dead-letter held entries past the delivery limit, or malformed (LAN workers)",
                "security": WORKER,
                "requestBody": _json_body(DeadLetterRequest),
                "responses": {**_ok(DeadLetterResponse), **_problems(401, 413, 422, 503)},
            }
        },
    }
    paths.update(_problem_paths())
    paths.update(_admin_paths())
    paths.update(_vision_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Insane AI Security relay", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a tenant API key ik_<id>_<secret>"},
                "workerToken": {"type": "http", "scheme": "bearer", "description": "a worker token iw_<id>_<secret>"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "INSANE_ADMIN_TOKEN"},
            },
        },
    }


def _problem_paths() -> dict[str, Any]:
    page = {"200": {"description": "a short HTML page", "content": {"text/html": {}}}}
    slug = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/problems": {"get": {"summary": "The problem types this relay answers with", "responses": page}},
        "/problems/{slug}": {
            "get": {
                "summary": "What one problem type means",
                "parameters": [slug],
                "responses": {**page, **_problems(404)},
            }
        },
    }


def _admin_paths() -> dict[str, Any]:
    tenant = {"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}}
    key_id = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
    any_json = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}

    def op(summary: str, body: type[BaseModel] | None = None, params: tuple = (), code: int = 200) -> dict[str, Any]:
        out: dict[str, Any] = {
            "summary": summary,
            "security": ADMIN,
            "parameters": list(params),
            "responses": {str(code): any_json, **_problems(401, 403, 404, 409, 413, 422, 503)},
        }
        if body:
            out["requestBody"] = _json_body(body)
        return out

    return {
        "/admin/tenants": {
            "get": op("List tenants"),
            "post": op("Create a tenant and its first API key (shown once)", admin.TenantCreate, code=201),
        },
        "/admin/tenants/{tenant}/keys": {"post": op("A new API key for the tenant", params=(tenant,), code=201)},
        "/admin/tenants/{tenant}/tier": {"put": op("Move the tenant to a tier", admin.TierSet, (tenant,))},
        "/admin/tenants/{tenant}/webhook": {
            "put": op("Set or remove the completion webhook (returns its signing secret)", admin.WebhookSet, (tenant,))
        },
        "/admin/tenants/{tenant}/private-hosts": {
            "put": op("Replace the private-host allow-list", admin.PrivateHostsSet, (tenant,))
        },
        "/admin/tenants/{tenant}/ports": {
            "put": op("Replace the ports allowed besides 80, 443 and 8080-8999", admin.PortsSet, (tenant,))
        },
        "/admin/tenants/{tenant}/routing": {
            "put": op("Choose which workers may review the tenant's events", admin.RoutingSet, (tenant,))
        },
        "/admin/keys/{key_id}": {"delete": op("Revoke an API key", params=(key_id,))},
        "/admin/enroll-codes": {"post": op("A one-time worker enrollment code", admin.EnrollCodeCreate, code=201)},
        "/admin/workers": {"get": op("List workers")},
    }
