"""How an event looks to its tenant: the body of GET /v1/events/{id}, SSE messages and webhooks."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

EVENT_SQL = """
SELECT e.id, e.camera, e.occurred_at, e.hint, e.status, e.lane, e.error, e.created_at, e.done_at, e.n_moments,
       r.k, r.moments AS result_moments, r.verdict, r.timings_ms, r.model, r.provider
FROM events e LEFT JOIN results r ON r.event_id = e.id
WHERE e.id = $1 AND e.tenant_id = $2
"""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "camera": row["camera"],
        "time": _iso(row["occurred_at"]),
        "hint": row["hint"],
        "status": row["status"],
        "lane": row["lane"],
        "n_moments": row["n_moments"],
        "error": row["error"],
        "created_at": _iso(row["created_at"]),
        "done_at": _iso(row["done_at"]),
        "verdict": row["verdict"],
    }


async def event_view(conn: asyncpg.Connection, tenant_id: uuid.UUID, event_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(EVENT_SQL, event_id, tenant_id)
    if row is None:
        return None
    refs = await conn.fetch(
        "SELECT idx, url, blob FROM moments WHERE event_id = $1 AND tenant_id = $2 ORDER BY idx", event_id, tenant_id
    )
    reviewed = {m["index"]: m for m in (row["result_moments"] or [])}
    moments = []
    for ref in refs:
        got = reviewed.get(ref["idx"])
        moments.append(
            {
                "index": ref["idx"],
                "url": ref["url"],
                "uploaded": ref["blob"] is not None,
                "reviewed": got is not None,
                "detections": got.get("detections", []) if got else [],
                "width": got.get("width") if got else None,
                "height": got.get("height") if got else None,
                "error": got.get("error") if got else None,
            }
        )
    view = summary(row)
    view.update(moments=moments, k=row["k"], timings_ms=row["timings_ms"], model=row["model"], provider=row["provider"])
    return view
