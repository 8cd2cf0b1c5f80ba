"""A tenant's lanes on Redis Streams: add, take, renew, ack, dead-letter.

Every tenant has its own two lane streams (``insane:{t:<id>}:pro`` and ``:standard``, consumer group
``workers``) and its own dead-letter stream; all of a tenant's keys share one hash tag (core/keys.py),
so each Lua step below touches one Redis Cluster slot. Which worker may take from which tenant is
decided by the caller: a dedicated worker takes only from its own tenant (``pool=False``); the shared
pool (core/pool.py) takes one turn at a time from the tenants its fair share picks (``pool=True``),
and a tenant's routing key says whether and after how long the pool may take its events.

    streams = Streams(redis)
    entry_id, position = await streams.add(tenant, "pro", event_id, event_json, routing_ms=0)
    turn = await streams.take(tenant, "worker-1", 8, min_idle_ms=60000)           # its own worker
    turn = await streams.take(tenant, "worker-2", 1, 60000, lanes=("pro",), pool=True)
    await streams.renew("worker-1", [e.lease_id for e in turn.entries])           # still working on them
    await streams.ack(turn.entries[0].lease_id, "worker-1", event_id)             # the relay only

A lease id is ``<tenant id>:<lane>:<entry id>``: opaque to workers, parsed only here.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core import keys
from core.protocol import LANES, Lane, LeasedEvent

log = logging.getLogger(__name__)

GROUP = keys.GROUP


class StreamError(Exception):
    """A lease id or stream entry that does not have the expected form."""


def lease_id(tenant_id: str, lane: str, entry_id: str) -> str:
    return f"{tenant_id}:{lane}:{entry_id}"


def parse_lease_id(value: str) -> tuple[str, Lane, str]:
    """``"<tenant uuid>:pro:1700000000000-0"`` -> (tenant, "pro", entry id); raises StreamError otherwise."""
    tenant, _, rest = value.partition(":")
    lane, _, entry_id = rest.partition(":")
    ms, _, seq = entry_id.partition("-")
    try:
        canonical = str(uuid.UUID(tenant)) == tenant
    except ValueError:
        canonical = False
    if (
        not canonical
        or lane not in LANES
        or not ms.isascii()
        or not ms.isdigit()
        or not seq.isascii()
        or not seq.isdigit()
        or int(ms) >= 2**64
        or int(seq) >= 2**64
    ):  # what Redis takes as a stream id, no more
        raise StreamError(f"not a lease id: {value[:80]!r}")
    return tenant, lane, entry_id


def is_legacy_lease_id(value: str) -> bool:
    """``"pro:1700000000000-0"``: a lease of the global lanes that relays used before per-tenant routing."""
    lane, _, entry_id = value.partition(":")
    ms, _, seq = entry_id.partition("-")
    return lane in LANES and ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit() and len(value) < 60


def entry_ms(entry_id: str) -> int:
    """When Redis added the entry (Unix ms): the first half of its id."""
    return int(entry_id.partition("-")[0])


def text(value: object) -> str:
    """A stream id or field as redis-py answers it: bytes (these clients do not decode responses), or str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise StreamError(f"not a stream id or field: {value!r}")


@dataclass(frozen=True)
class Entry:
    """One delivery of one stream entry."""

    tenant_id: str
    lane: Lane
    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1

    @property
    def lease_id(self) -> str:
        return lease_id(self.tenant_id, self.lane, self.entry_id)

    @property
    def event_id(self) -> str:
        return self.fields.get("id", "")

    def leased(self) -> LeasedEvent:
        """The entry as the worker API's LeasedEvent; raises StreamError for a malformed entry."""
        try:
            data = json.loads(self.fields["event"])
            event = LeasedEvent(lease_id=self.lease_id, deliveries=self.deliveries, **data)
        except (KeyError, ValueError, TypeError) as exc:
            raise StreamError(f"malformed entry {self.lease_id}: {exc}") from exc
        if str(event.tenant_id) != self.tenant_id:
            raise StreamError(f"malformed entry {self.lease_id}: it names another tenant")
        return event


@dataclass(frozen=True)
class Turn:
    """What one take found: entries, the tenant's lane lengths, and when it may next have work
    (Unix ms; None: nothing waiting or in flight)."""

    entries: list[Entry]
    depth: dict[Lane, int] = field(default_factory=dict)
    next_due_ms: int | None = None


def _fields(flat: Sequence[Any]) -> dict[str, str]:
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


# Add one event: create the group on first use, append the entry, and write the tenant's routing as the
# pool reads it unless the key is there (admin changes overwrite it). KEYS: lane stream, routing key;
# ARGV: group, event id, event JSON, routing ms. Returns {entry id, lane length}.
_ADD = """
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
local id = redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'event', ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'NX')
return {id, redis.call('XLEN', KEYS[1])}
"""

# One turn on one tenant's lanes (KEYS: the lane streams to read, in order, then the routing key).
# ARGV: group, consumer, count, min idle ms (reclaim), pool ('1': the shared pool, which takes nothing
# when the routing key is missing or -1, and only entries older than its delay; '0': the tenant's own
# worker). Reclaims an idle entry first (the oldest), then reads new ones. Returns
# {entries, lengths, next due ms or -1}; an entry is {lane position, id, fields, deliveries}.
# One reclaim per lane and turn: an entry whose worker died may be the poison that killed it, and
# reclaimed together, its batch-mates would die with it on every delivery until they too were
# dead-lettered. Alone, a poison takes only itself to the dead-letter stream.
_TAKE = """
local group, consumer = ARGV[1], ARGV[2]
local count, idle, pool = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local lanes = #KEYS - 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay = 0
if pool then
  local r = redis.call('GET', KEYS[#KEYS])
  if not r or tonumber(r) < 0 then return {{}, {}, -1} end
  delay = tonumber(r)
end
local out, lengths, due = {}, {}, -1
local function earlier(ms) if due < 0 or ms < due then due = ms end end
for li = 1, lanes do
  local key = KEYS[li]
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', key)
  local last = nil
  if ok then
    for _, g in ipairs(groups) do
      local info = {}
      for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
      if info['name'] == group then last = info['last-delivered-id'] end
    end
  end
  lengths[li] = redis.call('XLEN', key)
  if not last and lengths[li] > 0 and redis.pcall('XGROUP', 'CREATE', key, group, '0')['ok'] then
    last = '0-0'  -- Redis came back without the group (restarted without AOF): recreate it
  end
  if last then
    if #out < count then
      local claimed = redis.call('XAUTOCLAIM', key, group, consumer, idle, '0-0', 'COUNT', 1)
      for _, e in ipairs(claimed[2]) do
        if e[2] then
          local p = redis.call('XPENDING', key, group, e[1], e[1], 1)
          table.insert(out, {li, e[1], e[2], p[1] and p[1][4] or 1})
        end
      end
    end
    local want = count - #out
    if want > 0 and delay > 0 then
      -- The pool takes only what waited past the delay for the tenant's own workers.
      local ripe = 0
      for _, row in ipairs(redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', want)) do
        if tonumber(string.match(row[1], '^(%d+)')) + delay <= now then ripe = ripe + 1 else break end
      end
      want = ripe
    end
    if want > 0 then
      local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', key, '>')
      if got and got[1] then
        for _, e in ipairs(got[1][2]) do
          table.insert(out, {li, e[1], e[2], 1})
          last = e[1]
        end
      end
    end
    local nxt = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
    if nxt[1] then
      earlier(math.max(now, tonumber(string.match(nxt[1][1], '^(%d+)')) + delay))
    else
      -- Nothing new: the next chance is when an entry in flight could be reclaimed.
      local inflight = redis.call('XPENDING', key, group, '-', '+', 100)
      local oldest = 0
      for _, p in ipairs(inflight) do
        if p[3] > oldest then oldest = p[3] end
      end
      if #inflight > 0 then earlier(now + math.max(0, idle - oldest)) end
    end
  end
end
return {out, lengths, due}
"""

# Renew the leases a consumer still holds: XCLAIM with JUSTID resets the idle time without counting a
# delivery. Only entries pending under that consumer are touched, so an entry reclaimed by another
# worker stays with it. KEYS: one tenant's lane streams in LANES order; ARGV: group, consumer, then
# pairs of (lane position from 1, entry id). Returns the event id of each renewed entry.
_RENEW = """
local group, consumer = ARGV[1], ARGV[2]
local renewed = {}
for i = 3, #ARGV, 2 do
  local key, id = KEYS[tonumber(ARGV[i])], ARGV[i + 1]
  local ok, p = pcall(redis.call, 'XPENDING', key, group, id, id, 1)
  if ok and p[1] and p[1][2] == consumer then
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
local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], group, id, id, 1)
if not ok or not p[1] or p[1][2] ~= consumer then
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

# Move one entry to the tenant's dead-letter stream if (and only if) it is still pending under
# ``consumer`` and was delivered at least ``min deliveries`` times, in one step: of several relays and
# reconcilers, exactly one moves it. KEYS: lane stream, dead-letter stream; ARGV: group, consumer,
# entry id, min deliveries, lane, reason. Returns the delivery count, or 0 when nothing was moved.
_MOVE_DEAD = """
local group, consumer, id = ARGV[1], ARGV[2], ARGV[3]
local ok, p = pcall(redis.call, 'XPENDING', KEYS[1], group, id, id, 1)
if not ok or not p[1] or p[1][2] ~= consumer or p[1][4] < tonumber(ARGV[4]) then
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


def _lane_keys(tenant_id: str) -> list[str]:
    return [keys.stream(tenant_id, lane) for lane in LANES]


class Streams:
    """A tenant's lanes, dead-letter stream and blobs over one ``redis.asyncio`` client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._add = redis.register_script(_ADD)
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._ack = redis.register_script(_ACK)
        self._move_dead = redis.register_script(_MOVE_DEAD)

    # ----- producing -------------------------------------------------------------------------------

    async def add_to(
        self, pipe: Any, tenant_id: str, lane: Lane, event_id: str, event_json: str, routing_ms: int
    ) -> None:
        """Queue the add on ``pipe`` (its reply: [entry id, lane length]), so an enqueue with its blobs,
        the pool's ready set and the wake-up is one round trip (core/queue.py: Queue.enqueue)."""
        await self._add(  # with a pipeline this only queues the call
            keys=[keys.stream(tenant_id, lane), keys.routing(tenant_id)],
            args=[GROUP, event_id, event_json, routing_ms],
            client=pipe,
        )

    async def add(
        self, tenant_id: str, lane: Lane, event_id: str, event_json: str, routing_ms: int = 0
    ) -> tuple[str, int]:
        """Append one entry; returns (entry id, lane length after it)."""
        entry_id, length = await self._add(
            keys=[keys.stream(tenant_id, lane), keys.routing(tenant_id)], args=[GROUP, event_id, event_json, routing_ms]
        )
        return text(entry_id), int(length)

    async def set_routing(self, tenant_id: str, routing_ms: int) -> None:
        """The tenant's routing as the pool reads it (-1: never; 0: at once; n: after n ms)."""
        await self.redis.set(keys.routing(tenant_id), routing_ms)

    # ----- taking ----------------------------------------------------------------------------------

    async def take_on(
        self,
        pipe: Any,
        tenant_id: str,
        consumer: str,
        count: int,
        min_idle_ms: int,
        lanes: Sequence[Lane] = LANES,
        pool: bool = False,
    ) -> None:
        """Queue a take on ``pipe``; :meth:`turn` reads its reply."""
        await self._take(
            keys=[keys.stream(tenant_id, lane) for lane in lanes] + [keys.routing(tenant_id)],
            args=[GROUP, consumer, count, min_idle_ms, "1" if pool else "0"],
            client=pipe,
        )

    async def take(
        self,
        tenant_id: str,
        consumer: str,
        count: int,
        min_idle_ms: int,
        lanes: Sequence[Lane] = LANES,
        pool: bool = False,
    ) -> Turn:
        """Idle entries of the tenant's lanes (their worker died), then new ones, up to ``count``."""
        reply = await self._take(
            keys=[keys.stream(tenant_id, lane) for lane in lanes] + [keys.routing(tenant_id)],
            args=[GROUP, consumer, count, min_idle_ms, "1" if pool else "0"],
        )
        return self.turn(tenant_id, lanes, reply)

    @staticmethod
    def turn(tenant_id: str, lanes: Sequence[Lane], reply: Sequence[Any]) -> Turn:
        raw, lengths, due = reply
        entries = [
            Entry(tenant_id, lanes[int(pos) - 1], text(entry_id), _fields(flat), int(deliveries))
            for pos, entry_id, flat, deliveries in raw
        ]
        depth = {lane: int(n) for lane, n in zip(lanes, lengths, strict=False)}
        return Turn(entries, depth, int(due) if int(due) >= 0 else None)

    async def depth(self, tenant_id: str) -> dict[Lane, int]:
        """Entries of the tenant not yet acked, per lane (acked entries are deleted, so this is XLEN)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in _lane_keys(tenant_id):
            pipe.xlen(key)
        return dict(zip(LANES, map(int, await pipe.execute()), strict=True))

    # ----- holding and finishing -------------------------------------------------------------------

    async def renew(self, consumer: str, lease_ids: Iterable[str]) -> list[str]:
        """Reset the idle time of the leases ``consumer`` still holds, so they are not reclaimed while it
        works on them; returns the event ids of those it still held. Malformed lease ids are skipped."""
        per_tenant: dict[str, list[str | int]] = {}
        for value in lease_ids:
            try:
                tenant, lane, entry_id = parse_lease_id(value)
            except StreamError:
                continue
            per_tenant.setdefault(tenant, []).extend([LANES.index(lane) + 1, entry_id])
        if not per_tenant:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for tenant, pairs in per_tenant.items():
            await self._renew(keys=_lane_keys(tenant), args=[GROUP, consumer, *pairs], client=pipe)
        return [text(e) for renewed in await pipe.execute() for e in renewed]

    async def held_events(self, consumer: str, lease_ids: Sequence[str]) -> dict[str, str]:
        """{lease id: event id} of the listed leases that are pending under ``consumer``."""
        parsed = [(value, *parse_lease_id(value)) for value in lease_ids]
        pipe = self.redis.pipeline(transaction=False)
        for _, tenant, lane, entry_id in parsed:
            pipe.xpending_range(keys.stream(tenant, lane), GROUP, min=entry_id, max=entry_id, count=1)
            pipe.xrange(keys.stream(tenant, lane), min=entry_id, max=entry_id, count=1)
        replies = await pipe.execute(raise_on_error=False)
        held = {}
        for n, (value, *_) in enumerate(parsed):
            pending, rows = replies[2 * n], replies[2 * n + 1]
            if isinstance(pending, Exception) or isinstance(rows, Exception):
                continue  # NOGROUP: nothing is pending there
            if pending and text(pending[0]["consumer"]) == consumer and rows:
                held[value] = _fields(_flat(rows[0][1])).get("id", "")
        return held

    async def ack(self, value: str, consumer: str, event_id: str) -> int:
        """XACK and XDEL the entry if ``consumer`` holds it and it carries ``event_id``; 1 if acked, else 0."""
        tenant, lane, entry_id = parse_lease_id(value)
        return int(await self._ack(keys=[keys.stream(tenant, lane)], args=[GROUP, consumer, entry_id, event_id]))

    async def pending(self, tenant_id: str, lane: Lane, count: int = 100, min_idle_ms: int = 0) -> list[dict]:
        """Pending entries of a tenant's lane: message_id, consumer, time_since_delivered, times_delivered."""
        try:
            rows = await self.redis.xpending_range(
                keys.stream(tenant_id, lane), GROUP, min="-", max="+", count=count, idle=min_idle_ms or None
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        return [{**r, "message_id": text(r["message_id"]), "consumer": text(r["consumer"])} for r in rows]

    async def claim(self, tenant_id: str, lane: Lane, entry_id: str, consumer: str, min_idle_ms: int) -> Entry | None:
        """Take one entry if it is still idle past ``min_idle_ms`` (so exactly one claimer wins)."""
        key = keys.stream(tenant_id, lane)
        raw = await self.redis.xclaim(key, GROUP, consumer, min_idle_ms, [entry_id])
        # Without JUSTID, XCLAIM answers (id, fields) pairs; fields are None for an entry deleted meanwhile.
        found = [flds for item in raw if isinstance(item, tuple) and (flds := item[1]) is not None]
        if not found:
            return None
        rows = await self.redis.xpending_range(key, GROUP, min=entry_id, max=entry_id, count=1)
        deliveries = int(rows[0]["times_delivered"]) if rows else 1
        return Entry(tenant_id, lane, entry_id, _fields(_flat(found[0])), deliveries)

    async def holder(self, value: str) -> tuple[str, int] | None:
        """(consumer, deliveries) of a pending entry, or None when it is not pending."""
        tenant, lane, entry_id = parse_lease_id(value)
        try:
            rows = await self.redis.xpending_range(
                keys.stream(tenant, lane), GROUP, min=entry_id, max=entry_id, count=1
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return None
        if not rows:
            return None
        return text(rows[0]["consumer"]), int(rows[0]["times_delivered"])

    async def entry(self, value: str) -> Entry | None:
        """The entry behind a lease id (with its delivery count), or None when it is gone."""
        tenant, lane, entry_id = parse_lease_id(value)
        rows = await self.redis.xrange(keys.stream(tenant, lane), min=entry_id, max=entry_id, count=1)
        if not rows or (flds := rows[0][1]) is None:
            return None
        held = await self.holder(value)
        return Entry(tenant, lane, entry_id, _fields(_flat(flds)), held[1] if held else 1)

    async def dead_letter(self, entry: Entry, reason: str, consumer: str, min_deliveries: int = 0) -> bool:
        """Move an entry to its tenant's dead-letter stream if it is still pending under ``consumer`` (and
        was delivered at least ``min_deliveries`` times); one atomic step, so it lands there at most once.
        Returns whether this call moved it."""
        moved = await self._move_dead(
            keys=[keys.stream(entry.tenant_id, entry.lane), keys.dead(entry.tenant_id)],
            args=[GROUP, consumer, entry.entry_id, min_deliveries, entry.lane, reason[:500]],
        )
        if not int(moved):
            return False
        log.warning("event %s dead-lettered after %d deliveries: %s", entry.event_id, int(moved), reason)
        return True

    async def queued_event_ids(self, tenant_id: str, lane: Lane, batch: int = 1000, limit: int = 100_000) -> set[str]:
        """Event ids of every entry still in a tenant's lane (waiting or pending), read in pages."""
        ids: set[str] = set()
        start = "-"
        for _ in range(limit // batch + 1):
            rows = await self.redis.xrange(keys.stream(tenant_id, lane), min=start, max="+", count=batch) or []
            for _entry_id, flds in rows:
                if flds is not None:
                    ids.add(text(flds.get(b"id", flds.get("id", b""))))
            if len(rows) < batch:
                break
            start = "(" + text(rows[-1][0])
        return ids

    # ----- blobs -----------------------------------------------------------------------------------

    def put_blobs_on(self, pipe: Any, tenant_id: str, blobs: dict[str, bytes], ttl_s: int, nx: bool = False) -> None:
        for blob_id, data in blobs.items():
            pipe.set(keys.blob(tenant_id, blob_id), data, ex=ttl_s, nx=nx)

    async def get_blob(self, tenant_id: str, blob_id: str) -> bytes | None:
        data = await self.redis.get(keys.blob(tenant_id, blob_id))
        if isinstance(data, str):  # a client made with decode_responses=True: never one of ours
            raise StreamError("blobs need a Redis client that does not decode responses")
        return data


def _flat(fields: dict | Sequence[Any]) -> list[Any]:
    """redis-py answers XRANGE fields as a dict; scripts as a flat list."""
    if isinstance(fields, dict):
        return [x for pair in fields.items() for x in pair]
    return list(fields)


def acl_rules(name: str, password: str, tenant_id: str | None = None) -> list[str]:
    """``ACL SETUSER`` arguments for a LAN worker that leases from Redis itself.

    With ``tenant_id`` (a worker dedicated to that tenant): only that tenant's keys. Without it (the
    operator's own pool): the tenants' lanes and the pool's ready sets; which tenants' events it takes is
    the routing's decision, not the ACL's (the operator runs Redis and can read all of it anyway). Never
    XACK (only the relay acks, after the result is durable), XADD, XDEL, XTRIM, XGROUP, EVAL of a body,
    KEYS, FLUSH*, CONFIG. The take runs as a Lua script under this user's own key permissions.
    """
    if tenant_id is not None:
        patterns = [f"~{keys.tenant_tag(tenant_id)}:*"]
        pool_cmds: list[str] = []
    else:
        patterns = [f"~{keys.tenant_tag('*')}:*", f"~{keys.POOL}:*"]
        pool_cmds = ["+zrangebyscore", "+zrange", "+zrem", "+zadd", "+hgetall"]
    return [
        name,
        "reset",
        "on",
        f">{password}",
        *patterns,
        "resetchannels",
        f"&{keys.WORK_CHANNEL}",
        "-@all",
        "+evalsha",
        "+script|load",
        "+script|exists",
        "+xreadgroup",
        "+xautoclaim",
        "+xpending",
        "+xinfo|groups",
        "+xrange",
        "+xlen",
        "+get",
        "+time",
        "+subscribe",
        "+unsubscribe",
        "+ping",
        "+select",
        *pool_cmds,
    ]


def acl_command(name: str, password: str, tenant_id: str | None = None) -> str:
    """The same rules as one ``redis-cli`` line."""
    return "ACL SETUSER " + " ".join(_quote(a) for a in acl_rules(name, password, tenant_id))


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(c in arg for c in " {}'\"") else arg
