"""The OpenAPI 3.1 document served at /openapi.json, built from the same models the handlers use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

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
from relay.intake import EventIn

REF = "#/components/schemas/{model}"

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}
NULLABLE_STR = {"type": ["string", "null"]}
SUMMARY_PROPS = {
    "id": {"type": "string", "format": "uuid"},
    "camera": {"type": "string"},
    "time": {"type": "string"},
    "hint": NULLABLE_STR,
    "status": {"enum": ["queued", "done", "failed"]},
    "lane": {"enum": ["pro", "standard"]},
    "n_moments": {"type": "integer"},
    "error": NULLABLE_STR,
    "created_at": {"type": "string"},
    "done_at": NULLABLE_STR,
    "verdict": {"type": ["array", "null"]},
}
EVENT_SUMMARY = {"type": "object", "required": list(SUMMARY_PROPS), "properties": SUMMARY_PROPS}
EVENT_VIEW = {
    "type": "object",
    "required": [*SUMMARY_PROPS, "moments", "k", "timings_ms", "model", "provider"],
    "properties": {
        **SUMMARY_PROPS,
        "moments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "url": NULLABLE_STR,
                    "uploaded": {"type": "boolean"},
                    "reviewed": {"type": "boolean"},
                    "detections": {"type": "array"},
                    "width": {"type": ["integer", "null"]},
                    "height": {"type": ["integer", "null"]},
                    "error": NULLABLE_STR,
                },
            },
        },
        "k": {"type": ["integer", "null"]},
        "timings_ms": {"type": ["object", "null"]},
        "model": NULLABLE_STR,
        "provider": NULLABLE_STR,
    },
}
ACCEPTED = {
    "type": "object",
    "required": ["id", "status", "lane", "queue_position", "replayed"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string"},
        "lane": {"enum": ["pro", "standard"]},
        "queue_position": {"type": ["integer", "null"]},
        "replayed": {"type": "boolean"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


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
        str(c): {"description": text[c], "content": {"application/problem+json": {"schema": _ref("Problem")}}}
        for c in codes
    }


def _json_body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _ok(name: str, code: int = 200, desc: str = "OK") -> dict[str, Any]:
    return {str(code): {"description": desc, "content": {"application/json": {"schema": _ref(name)}}}}


BEARER = [{"apiKey": []}]
WORKER = [{"workerToken": []}]
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
        str(c): {"description": "an error", "content": {"application/json": {"schema": _ref("ErrorResponse")}}}
        for c in codes
    }


def _vision_paths() -> dict[str, Any]:
    detect = {
        "summary": "DeepStack / CodeProject.AI object detection of one JPEG (a 1-moment Pro-lane event)",
        "security": BEARER,
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": VISION_FORM}}},
        "responses": {**_ok("DetectionResponse"), **_vision_errors(400, 401, 413, 429, 500, 503, 504)},
    }
    model = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
    listing = {
        "summary": "The models the online workers run",
        "security": BEARER,
        "responses": {**_ok("ModelList"), **_vision_errors(401, 503)},
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
    schemas: dict[str, Any] = {
        "Problem": PROBLEM,
        "EventSummary": EVENT_SUMMARY,
        "EventView": EVENT_VIEW,
        "EventAccepted": ACCEPTED,
    }
    models: list[type[BaseModel]] = [
        EventIn,
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
        DetectionResponse,
        ErrorResponse,
        ModelList,
    ]
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["EventList"] = {
        "type": "object",
        "required": ["events", "next_cursor"],
        "properties": {"events": {"type": "array", "items": _ref("EventSummary")}, "next_cursor": NULLABLE_STR},
    }
    event_id = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
    q = [
        {"name": n, "in": "query", "required": False, "schema": s}
        for n, s in (
            ("camera", {"type": "string"}),
            ("status", {"enum": ["queued", "done", "failed"]}),
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
                        "application/json": {"schema": _ref("EventIn")},
                        "multipart/form-data": {"schema": multipart},
                    },
                },
                "responses": {
                    **_ok("EventAccepted", 202, "Stored and queued"),
                    **_ok("EventAccepted", 200, "A retry of an event already stored"),
                    **_problems(400, 401, 413, 415, 422, 429, 503),
                },
            },
            "get": {
                "summary": "List events",
                "security": BEARER,
                "parameters": q,
                "responses": {**_ok("EventList"), **_problems(400, 401, 503)},
            },
        },
        "/v1/events/stream": {
            "get": {
                "summary": "Server-Sent Events of results as they land",
                "security": BEARER,
                "responses": {
                    "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                    **_problems(401, 503),
                },
            }
        },
        "/v1/events/{event_id}": {
            "get": {
                "summary": "One event with its result",
                "security": BEARER,
                "parameters": [event_id],
                "responses": {**_ok("EventView"), **_problems(401, 404, 503)},
            }
        },
        "/v1/workers/enroll": {
            "post": {
                "summary": "Exchange a one-time code for a worker token",
                "requestBody": _json_body("EnrollRequest"),
                "responses": {**_ok("EnrollResponse"), **_problems(403, 413, 422, 503)},
            }
        },
        "/v1/worker/lease": {
            "post": {
                "summary": "Long-poll for work",
                "security": WORKER,
                "requestBody": _json_body("LeaseRequest"),
                "responses": {**_ok("LeaseResponse"), **_problems(401, 413, 422, 503)},
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
                "requestBody": _json_body("ResultsPost"),
                "responses": {**_ok("ResultsResponse"), **_problems(401, 413, 422, 503)},
            }
        },
        "/v1/worker/heartbeat": {
            "post": {
                "summary": "Report the worker's state and metrics",
                "security": WORKER,
                "requestBody": _json_body("Heartbeat"),
                "responses": {**_ok("HeartbeatResponse"), **_problems(401, 413, 422, 503)},
            }
        },
        "/v1/worker/dead-letter": {
            "post": {
                "summary": "Dead-letter held entries past the delivery limit, or malformed (LAN workers)",
                "security": WORKER,
                "requestBody": _json_body("DeadLetterRequest"),
                "responses": {**_ok("DeadLetterResponse"), **_problems(401, 413, 422, 503)},
            }
        },
    }
    paths.update(_vision_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Insane AI Security relay", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a tenant API key ik_<id>_<secret>"},
                "workerToken": {"type": "http", "scheme": "bearer", "description": "a worker token iw_<id>_<secret>"},
            },
        },
    }
