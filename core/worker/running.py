"""What exists only while :meth:`Worker.run` runs: the pipeline's parts, its wake-ups, the reviews in flight.

    run = Running(batcher, decode_pool, poster, preloader)   # built by Worker.run() once the preloader is open
    run.reviews[event_id] = Review(job, task)                 # one record per event under review
    await run.close()                                         # the batcher and the decode pool

``Worker.run()`` builds one and hands it to its loops; nothing in it is ever None, so no loop has to ask
whether the pipeline is up. Before ``run()`` and after it the worker holds none (or the last one, closed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from uuid import UUID

from core.worker.batcher import Batcher
from core.worker.jobs import Job
from core.worker.ports import PreloaderPort
from core.worker.poster import Poster


@dataclass(eq=False)
class Review:
    """One event under review: what is reviewed (its moments, timings, back-fill state) and the task doing it."""

    job: Job
    task: asyncio.Task[None]


@dataclass(eq=False)
class Running:
    batcher: Batcher
    decode: concurrent.futures.ThreadPoolExecutor
    poster: Poster
    preloader: PreloaderPort
    reviews: dict[UUID, Review] = field(default_factory=dict)
    inflight_images: int = 0  # moments leased and not yet through inference (the lease-ahead bound)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # run()'s wait: stop() was called
    room: asyncio.Event = field(default_factory=asyncio.Event)  # the lease loop's wait: a review ended, pause/resume
    introduced: asyncio.Event = field(default_factory=asyncio.Event)  # the first heartbeat was answered (or failed)
    alone: asyncio.Lock = field(default_factory=asyncio.Lock)  # held by the suspect under review (see engine)

    def suspects(self) -> int:
        """Reviews of events delivered before without a result: each may be the poison that killed a worker."""
        return sum(1 for r in self.reviews.values() if r.job.suspect)

    def others_in_flight(self) -> bool:
        """Reviews that are not suspects, or results not yet stored: what a crash would cost another delivery."""
        return any(not r.job.suspect for r in self.reviews.values()) or bool(self.poster.lease_ids())

    def held_leases(self) -> list[str]:
        """Leases under review (a back-fill holds none) and those of results not yet stored."""
        held = [r.job.event.lease_id for r in self.reviews.values() if not r.job.backfill]
        return held + self.poster.lease_ids()

    async def close(self) -> None:
        await self.batcher.close()
        self.decode.shutdown(wait=False, cancel_futures=True)
