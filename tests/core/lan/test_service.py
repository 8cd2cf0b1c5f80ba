"""The LAN's share of the detector: the gate's policy on exact states, then with a real worker whose
batcher also holds relay moments (a real engine and a real batcher; the detector records its batches)."""

from __future__ import annotations

import asyncio

import pytest

from core.lan.service import LanService, ShareGate
from core.lan.wire import WireError
from core.protocol import Detection
from core.worker.batcher import Batcher


class Load:
    """What the gate reads from the worker: its batch size and whether it holds relay work."""

    def __init__(self, batch_size: int, relay_busy: bool) -> None:
        self.batch_size, self.relay_busy = batch_size, relay_busy


@pytest.mark.parametrize(
    ("batch", "busy", "cap"), [(8, True, 4), (8, False, 8), (5, True, 3), (1, True, 1), (1, False, 1), (0, True, 1)]
)
def test_the_lan_gets_half_of_a_batch_while_the_relay_has_work(batch, busy, cap) -> None:
    assert ShareGate(Load(batch, busy)).cap() == cap


async def test_the_gate_admits_in_arrival_order_up_to_its_cap() -> None:
    gate = ShareGate(Load(4, True))
    order: list[int] = []
    release = asyncio.Event()

    async def one(i: int) -> None:
        async with gate:
            order.append(i)
            await release.wait()

    tasks = [asyncio.create_task(one(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert order == [0, 1] and gate.inside == 2
    tasks[3].cancel()  # a waiter that gives up leaves no hole
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 2, 4] and gate.inside == 0


class Tagged(str):
    """A prepared image that is only its name (and a size, as a real Prepared has)."""

    width = height = 640


class RecordingDetector:
    """A detector that records which images each batch held (the Detector port; no model needed here)."""

    max_batch = 4
    model_name = "recorder"
    provider = "CPUExecutionProvider"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def prepare(self, data: bytes) -> Tagged:
        return Tagged(data.decode())

    def detect(self, batch: list[str]) -> list[list[Detection]]:
        import time

        time.sleep(0.02)
        self.batches.append(list(batch))
        return [[] for _ in batch]

    def set_provider(self, name: str) -> None: ...

    def available_providers(self) -> list[str]:
        return [self.provider]

    def close(self) -> None: ...


class BatcherWorker:
    """The two engine members LanService uses, over a real Batcher, with relay moments queued in it."""

    def __init__(self, detector: RecordingDetector) -> None:
        self.detector = detector
        self.batcher = Batcher(detector, max_batch=4, max_wait_s=0.005, latency_target_s=10)
        self.relay_busy = True

    @property
    def batch_size(self) -> int:
        return self.batcher.batch_size

    async def prepare_image(self, data: bytes) -> Tagged:
        return self.detector.prepare(data)

    async def infer_prepared(self, prepared: str, priority: tuple):
        return await self.batcher.submit(prepared, priority)


async def test_neither_side_starves_the_other() -> None:
    detector = RecordingDetector()
    worker = BatcherWorker(detector)
    worker.batcher.start()
    try:
        # 40 relay moments already queued (Pro, in order), then 24 LAN requests at once.
        relay = [worker.batcher.submit(Tagged(f"relay-{i}"), (0, 1.0, i)) for i in range(40)]
        service = LanService(worker, max_concurrent=24)
        lan = [asyncio.create_task(service.review(f"lan-{i}".encode())) for i in range(24)]
        await asyncio.gather(*relay, *lan)
    finally:
        await worker.batcher.close()
    for batch in detector.batches:
        n_lan = sum(1 for item in batch if item.startswith("lan"))
        assert n_lan <= 2, batch  # at most half of a batch of 4 while relay work waits
    # Relay work kept moving while the LAN flooded: until its last moment, every batch was at least half relay.
    last_relay = max(n for n, b in enumerate(detector.batches) if any(i.startswith("relay") for i in b))
    for batch in detector.batches[:last_relay]:
        assert sum(1 for i in batch if i.startswith("relay")) >= 2, detector.batches
    # And the LAN did not wait behind the relay backlog: its first answer came in the first batches.
    first_lan = next(n for n, b in enumerate(detector.batches) if any(i.startswith("lan") for i in b))
    assert first_lan <= 1


async def test_past_the_waiting_room_the_answer_is_503_at_once() -> None:
    detector = RecordingDetector()
    worker = BatcherWorker(detector)
    worker.batcher.start()
    try:
        service = LanService(worker, max_concurrent=1)  # 1 in review, 4 waiting
        tasks = [asyncio.create_task(service.review(b"lan")) for _ in range(5)]
        await asyncio.sleep(0)
        with pytest.raises(WireError) as caught:
            await service.review(b"one too many")
        assert caught.value.status == 503 and caught.value.retry_after == 1
        await asyncio.gather(*tasks)
    finally:
        await worker.batcher.close()
