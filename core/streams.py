"""The Redis Streams transport shared by the relay and by workers on the operator's own network.

Keys (one hash tag, so every lane lives in one Redis Cluster slot and one XREADGROUP reads both):

    insane:{lane}:pro, insane:{lane}:standard   one stream per lane, consumer group "workers"
    insane:{lane}:dead                          the dead-letter stream
    insane:blob:<id>                            an uploaded JPEG, with a TTL

Each entry carries ``event`` (a LeasedEvent as JSON, without lease_id/deliveries) and ``id`` (the
event id, so the reconciler can scan a lane without parsing JSON).

    streams = Streams(redis)
    await streams.ensure_groups()
    entry_id, depth = await streams.add("pro", event_json)
    entries = await streams.lease("worker-1", count=8, block_ms=5000, min_idle_ms=60000)
    await streams.renew("worker-1", [e.lease_id for e in entries])   # still working on them: not idle
    await streams.ack(entries[0].lease_id, "worker-1", event_id)     # the relay only, after the result
                                                                     # is durable; only its holder's

A LAN worker uses :meth:`Streams.lease` and :meth:`Streams.get_blob` under the ACL user that
:func:`acl_rules` describes; it posts results over the relay's HTTP API, so only the relay acks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core import keys
from core.protocol import LANES, Lane, LeasedEvent

log = logging.getLogger(__name__)

GROUP = "workers"


class StreamError(Exception):
    """A lease id or stream entry that does not have the expected form."""


stream_key = keys.stream
DEAD_KEY = keys.DEAD
blob_key = keys.blob


def parse_lease_id(lease_id: str) -> tuple[Lane, str]:
    """``"pro:1700000000000-0"`` -> ("pro", "1700000000000-0"); raises StreamError otherwise."""
    lane, _, entry_id = lease_id.partition(":")
    ms, _, seq = entry_id.partition("-")
    if (
        lane not in LANES
        or not ms.isascii()
        or not ms.isdigit()
        or not seq.isascii()
        or not seq.isdigit()
        or int(ms) >= 2**64
        or int(seq) >= 2**64
    ):  # what Redis takes as a stream id, no more
        raise StreamError(f"not a lease id: {lease_id[:80]!r}")
    return lane, entry_id  # type: ignore[return-value]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Entry:
    """One delivery of one stream entry."""

    lane: Lane
    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1

    @property
    def lease_id(self) -> str:
        return f"{self.lane}:{self.entry_id}"

    @property
    def event_id(self) -> str:
        return self.fields.get("id", "")

    def leased(self) -> LeasedEvent:
        """The entry as the worker API's LeasedEvent; raises StreamError for a malformed entry."""
        try:
            data = json.loads(self.fields["event"])
            return LeasedEvent(lease_id=self.lease_id, deliveries=self.deliveries, **data)
        except (KeyError, ValueError, TypeError) as exc:
            raise StreamError(f"malformed entry {self.lease_id}: {exc}") from exc


def _entries(lane: Lane, raw: list[Any], deliveries: int = 1) -> list[Entry]:
    out = []
    for entry_id, fields in raw:
        if fields is None:  # deleted while pending
            continue
        out.append(Entry(lane, _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}, deliveries))
    return out


# Renew the leases a consumer still holds: XCLAIM with JUSTID resets the idle time without counting a
# delivery. Only entries pending under that consumer are touched, so an entry reclaimed by another
# worker stays with it. KEYS: the lane streams in LANES order; ARGV: group, consumer, then pairs of
# (lane position from 1, entry id). Returns the event id of each renewed entry.
_RENEW = """
local group, consumer = ARGV[1], ARGV[2]
local renewed = {}
for i = 3, #ARGV, 2 do
  local key, id = KEYS[tonumber(ARGV[i])], ARGV[i + 1]
  local p = redis.call('XPENDING', key, group, id, id, 1)
  if p[1] and p[1][2] == consumer then
    redis.call('XCLAIM', key, group, consumer, 0, id, 'JUSTID')
    local event = ''
    local rows = redis.call('XRANGE', key, id, id)
    if rows[1] then
      local f = rows[1][2]
      for j = 1, #f, 2 do
        if f[j] == 'id' then event = f[j + 1] end
      end
    end
    table.insert(renewed, event)
  end
end
return renewed
"""

# Ack an entry only for the consumer that holds it, and only with the result of the event it carries:
# XACK and XDEL (so XLEN stays the backlog). A worker naming another worker's lease, or its own lease
# with another event's result, acks nothing. KEYS: the lane stream; ARGV: group, consumer, entry id,
# event id. Returns 1 when acked, else 0.
_ACK = """
local group, consumer, id, event = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
if not p[1] or p[1][2] ~= consumer then
  return 0
end
local rows = redis.call('XRANGE', KEYS[1], id, id)
if rows[1] then
  local f = rows[1][2]
  for j = 1, #f, 2 do
    if f[j] == 'id' and f[j + 1] ~= event then return 0 end
  end
end
redis.call('XACK', KEYS[1], group, id)
redis.call('XDEL', KEYS[1], id)
return 1
"""

# Move one entry to the dead-letter stream if (and only if) it is still pending under ``consumer`` and
# was delivered at least ``min deliveries`` times, in one step: of several relays and reconcilers,
# exactly one moves it. KEYS: lane stream, dead-letter stream; ARGV: group, consumer, entry id,
# min deliveries, lane, reason. Returns the delivery count, or 0 when nothing was moved.
_MOVE_DEAD = """
local group, consumer, id = ARGV[1], ARGV[2], ARGV[3]
local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
if not p[1] or p[1][2] ~= consumer or p[1][4] < tonumber(ARGV[4]) then
  return 0
end
local fields = {}
local rows = redis.call('XRANGE', KEYS[1], id, id)
if rows[1] then fields = rows[1][2] end
table.insert(fields, 'lane') table.insert(fields, ARGV[5])
table.insert(fields, 'entry_id') table.insert(fields, id)
table.insert(fields, 'deliveries') table.insert(fields, tostring(p[1][4]))
table.insert(fields, 'reason') table.insert(fields, ARGV[6])
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], group, id)
redis.call('XDEL', KEYS[1], id)
return p[1][4]
"""


class Streams:
    """Lanes, consumer group, blobs and the dead-letter stream over one ``redis.asyncio`` client."""

    def __init__(self, redis: aioredis.Redis, group: str = GROUP) -> None:
        self.redis = redis
        self.group = group
        self._renew = redis.register_script(_RENEW)
        self._ack = redis.register_script(_ACK)
        self._move_dead = redis.register_script(_MOVE_DEAD)

    async def ensure_groups(self) -> None:
        for lane in LANES:
            try:
                await self.redis.xgroup_create(stream_key(lane), self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def add(
        self, lane: Lane, event_id: str, event_json: str, blobs: dict[str, bytes] | None = None, blob_ttl_s: int = 3600
    ) -> tuple[str, int]:
        """Store the blobs, then append the entry; returns (entry id, lane length after it)."""
        pipe = self.redis.pipeline(transaction=False)
        for blob_id, data in (blobs or {}).items():
            pipe.set(blob_key(blob_id), data, ex=blob_ttl_s)
        pipe.xadd(stream_key(lane), {"id": event_id, "event": event_json})
        pipe.xlen(stream_key(lane))
        *_, entry_id, depth = await pipe.execute()
        return _text(entry_id), int(depth)

    async def put_blobs(self, blobs: dict[str, bytes], ttl_s: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for blob_id, data in blobs.items():
            pipe.set(blob_key(blob_id), data, ex=ttl_s)
        await pipe.execute()

    async def get_blob(self, blob_id: str) -> bytes | None:
        return await self.redis.get(blob_key(blob_id))

    async def depth(self) -> dict[Lane, int]:
        """Entries per lane not yet acked (acked entries are deleted, so this is XLEN)."""
        pipe = self.redis.pipeline(transaction=False)
        for lane in LANES:
            pipe.xlen(stream_key(lane))
        return dict(zip(LANES, map(int, await pipe.execute()), strict=True))

    async def read(self, consumer: str, count: int, block_ms: int | None = None) -> list[Entry]:
        """New entries for ``consumer``: Pro first, then standard; blocks on both when both are empty."""
        got: list[Entry] = []
        for lane in LANES:
            if len(got) >= count:
                break
            got += await self._readgroup(consumer, {stream_key(lane): ">"}, count - len(got), None)
        if got or not block_ms:
            return got
        return await self._readgroup(consumer, {stream_key(lane): ">" for lane in LANES}, count, block_ms)

    async def _readgroup(self, consumer: str, streams: dict[str, str], count: int, block: int | None) -> list[Entry]:
        try:
            reply = await self.redis.xreadgroup(self.group, consumer, streams, count=count, block=block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis came back without our group (restarted without AOF): recreate, let the next call read.
            await self.ensure_groups()
            return []
        out: list[Entry] = []
        for key, raw in reply or []:
            lane = _text(key).rsplit(":", 1)[1]
            out += _entries(lane, raw)
        return out

    async def autoclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Entries idle past ``min_idle_ms`` (their worker died), Pro first, with their delivery counts."""
        got: list[Entry] = []
        for lane in LANES:
            if len(got) >= count:
                break
            try:
                reply = await self.redis.xautoclaim(
                    stream_key(lane), self.group, consumer, min_idle_ms, start_id="0-0", count=count - len(got)
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_groups()
                continue
            got += _entries(lane, reply[1])
        if not got:
            return got
        counts = await self._deliveries(got)
        return [Entry(e.lane, e.entry_id, e.fields, counts.get(e.lease_id, 1)) for e in got]

    async def _deliveries(self, entries: list[Entry]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for e in entries:
            pipe.xpending_range(stream_key(e.lane), self.group, min=e.entry_id, max=e.entry_id, count=1)
        out = {}
        for e, rows in zip(entries, await pipe.execute(), strict=True):
            if rows:
                out[e.lease_id] = int(rows[0]["times_delivered"])
        return out

    async def lease(self, consumer: str, count: int, block_ms: int | None, min_idle_ms: int) -> list[Entry]:
        """Reclaimed entries first (they are the oldest), then new ones."""
        got = await self.autoclaim(consumer, min_idle_ms, count)
        if len(got) < count:
            got += await self.read(consumer, count - len(got), None if got else block_ms)
        return got

    async def ack(self, lease_id: str, consumer: str, event_id: str) -> int:
        """XACK and XDEL the entry if ``consumer`` holds it and it carries ``event_id``; 1 if acked, else 0."""
        lane, entry_id = parse_lease_id(lease_id)
        try:
            return int(await self._ack(keys=[stream_key(lane)], args=[self.group, consumer, entry_id, event_id]))
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return 0  # Redis came back without the group: nothing is pending, nothing to ack

    async def pending(self, lane: Lane, count: int = 100, min_idle_ms: int = 0) -> list[dict[str, Any]]:
        """Pending entries of a lane: message_id, consumer, time_since_delivered, times_delivered."""
        rows = await self.redis.xpending_range(
            stream_key(lane), self.group, min="-", max="+", count=count, idle=min_idle_ms or None
        )
        return [{**r, "message_id": _text(r["message_id"]), "consumer": _text(r["consumer"])} for r in rows]

    async def claim(self, lane: Lane, entry_id: str, consumer: str, min_idle_ms: int) -> Entry | None:
        """Take one entry if it is still idle past ``min_idle_ms`` (so exactly one claimer wins)."""
        raw = await self.redis.xclaim(stream_key(lane), self.group, consumer, min_idle_ms, [entry_id])
        found = _entries(lane, raw)
        if not found:
            return None
        counts = await self._deliveries(found)
        return Entry(lane, entry_id, found[0].fields, counts.get(found[0].lease_id, 1))

    async def renew(self, consumer: str, lease_ids: list[str]) -> list[str]:
        """Reset the idle time of the leases ``consumer`` still holds, so they are not reclaimed while
        it works on them; returns the event ids of those it still held. Unknown or malformed lease ids
        are skipped."""
        args: list[str | int] = [self.group, consumer]
        for lease_id in lease_ids:
            try:
                lane, entry_id = parse_lease_id(lease_id)
            except StreamError:
                continue
            args += [LANES.index(lane) + 1, entry_id]
        if len(args) == 2:
            return []
        try:
            renewed = await self._renew(keys=[stream_key(lane) for lane in LANES], args=args)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []  # Redis came back without the group: nothing is pending, nothing to renew
        return [_text(event_id) for event_id in renewed]

    async def holder(self, lease_id: str) -> tuple[str, int] | None:
        """(consumer, deliveries) of a pending entry, or None when it is not pending."""
        lane, entry_id = parse_lease_id(lease_id)
        rows = await self.redis.xpending_range(stream_key(lane), self.group, min=entry_id, max=entry_id, count=1)
        if not rows:
            return None
        return _text(rows[0]["consumer"]), int(rows[0]["times_delivered"])

    async def held_events(self, consumer: str, lease_ids: list[str]) -> dict[str, str]:
        """{lease id: event id} of the listed leases that are pending under ``consumer``."""
        parsed = [(lease_id, *parse_lease_id(lease_id)) for lease_id in lease_ids]
        pipe = self.redis.pipeline(transaction=False)
        for _, lane, entry_id in parsed:
            pipe.xpending_range(stream_key(lane), self.group, min=entry_id, max=entry_id, count=1)
            pipe.xrange(stream_key(lane), min=entry_id, max=entry_id, count=1)
        try:
            replies = await pipe.execute()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return {}
        held = {}
        for n, (lease_id, lane, _) in enumerate(parsed):
            pending, rows = replies[2 * n], replies[2 * n + 1]
            if pending and _text(pending[0]["consumer"]) == consumer and rows:
                held[lease_id] = _entries(lane, rows)[0].event_id
        return held

    async def entry(self, lease_id: str) -> Entry | None:
        """The entry behind a lease id (with its delivery count), or None when it is gone."""
        lane, entry_id = parse_lease_id(lease_id)
        found = _entries(lane, await self.redis.xrange(stream_key(lane), min=entry_id, max=entry_id, count=1))
        if not found:
            return None
        held = await self.holder(lease_id)
        return Entry(lane, entry_id, found[0].fields, held[1] if held else found[0].deliveries)

    async def dead_letter(self, entry: Entry, reason: str, consumer: str, min_deliveries: int = 0) -> bool:
        """Move an entry to the dead-letter stream if it is still pending under ``consumer`` (and was
        delivered at least ``min_deliveries`` times); one atomic step, so it lands there at most once.
        Returns whether this call moved it."""
        moved = await self._move_dead(
            keys=[stream_key(entry.lane), DEAD_KEY],
            args=[self.group, consumer, entry.entry_id, min_deliveries, entry.lane, reason[:500]],
        )
        if not int(moved):
            return False
        log.warning("event %s dead-lettered after %d deliveries: %s", entry.event_id, int(moved), reason)
        return True

    async def queued_event_ids(self, lane: Lane, batch: int = 1000, limit: int = 1_000_000) -> set[str]:
        """Event ids of every entry still in the lane (waiting or pending), read in pages."""
        ids: set[str] = set()
        start = "-"
        for _ in range(limit // batch + 1):
            rows = await self.redis.xrange(stream_key(lane), min=start, max="+", count=batch)
            for _entry_id, fields in rows:
                ids.add(_text(fields.get(b"id", fields.get("id", b""))))
            if len(rows) < batch:
                break
            last = _text(rows[-1][0])
            start = "(" + last
        return ids


def acl_rules(name: str, password: str) -> list[str]:
    """``ACL SETUSER`` arguments for a LAN worker: lease from the lanes and read blobs, nothing else.

    No XACK (only the relay acks, after the result is durable), no XADD, XDEL, XTRIM, XGROUP, EVAL,
    KEYS, FLUSH*, CONFIG.
    """
    return [
        name,
        "reset",
        "on",
        f">{password}",
        *(f"~{stream_key(lane)}" for lane in LANES),
        f"~{blob_key('*')}",
        "resetchannels",
        "-@all",
        "+xreadgroup",
        "+xautoclaim",
        "+xpending",
        "+xlen",
        "+get",
        "+ping",
        "+select",
    ]


def acl_command(name: str, password: str) -> str:
    """The same rules as one ``redis-cli`` line."""
    return "ACL SETUSER " + " ".join(_quote(a) for a in acl_rules(name, password))


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(c in arg for c in " {}'\"") else arg
