"""The worker against a real relay, PostgreSQL, Redis and onnxruntime: events in, verdicts out."""

from __future__ import annotations

import asyncio

import pytest

from core.detect import providers
from core.worker import WorkerState
from core.worker.http_source import HttpLeaseSource
from insane.devkit.client import enroll_worker, post_event, wait_done
from insane.devkit.worker import make_worker

pytestmark = pytest.mark.timeout(240)


async def test_uploads_and_urls_get_verdicts(relay, tenant, image_server, sample_images, fall_model_onnx):
    creds = enroll_worker(relay.url, tenant=tenant.id)
    worker = make_worker(relay.url, creds.secret, fall_model_onnx, dedicated=tenant.id)
    seen: list[WorkerState] = []
    worker.subscribe(lambda snap: seen.append(snap.state))
    task = asyncio.create_task(worker.run())
    try:
        urls = [f"{image_server}/bus.jpg", f"{image_server}/zidane.jpg", f"{image_server}/missing.jpg"]
        by_url = post_event(relay.url, tenant, urls=urls)
        by_upload = post_event(relay.url, tenant, uploads=[sample_images["bus.jpg"], sample_images["frame1080.jpg"]])
        views = await wait_done(relay.url, tenant, [by_url, by_upload])
    finally:
        await worker.stop()
        await task
    url_view, upload_view = views[by_url], views[by_upload]
    assert url_view["status"] == "done" and url_view["k"] == 3
    m = {x["index"]: x for x in url_view["moments"]}
    assert (m[0]["width"], m[0]["height"]) == (810, 1080) and (m[1]["width"], m[1]["height"]) == (1280, 720)
    assert m[0]["detections"] and m[1]["detections"]  # people on the bus and on the pitch
    assert "404" in m[2]["error"] and not m[2]["detections"]  # one bad moment; the rest reviewed
    person = {v["label"]: v for v in url_view["verdict"]}
    assert sum(v["moments"] for v in person.values()) >= 2
    assert all(0 < v["median"] <= v["best"] <= 1 for v in url_view["verdict"])
    assert upload_view["k"] == 2 and all(x["detections"] for x in upload_view["moments"])
    assert {x["width"] for x in upload_view["moments"]} == {810, 1920}
    snap = worker.snapshot()
    assert snap.events_total == 2 and snap.images_total == 4 and snap.errors_total == 1
    assert snap.latency_ms["infer"]["p50"] > 0 and snap.model
    assert WorkerState.RUNNING in seen and seen[-1] == WorkerState.STOPPED
    assert {r.event_id.hex for r in snap.recent} == {by_url.replace("-", ""), by_upload.replace("-", "")}


async def test_pause_resume_and_provider_switch(relay, tenant, sample_images, yolov8n_onnx, monkeypatch):
    # A second name for the CPU provider, so switching is exercised on a machine without a GPU.
    monkeypatch.setitem(providers.PROVIDERS, "AltCPU", ("CPUExecutionProvider", {}))
    creds = enroll_worker(relay.url)
    worker = make_worker(relay.url, creds.secret, yolov8n_onnx)
    task = asyncio.create_task(worker.run())
    try:
        worker.pause()
        assert worker.state == WorkerState.PAUSED
        paused_event = post_event(relay.url, tenant, uploads=[sample_images["bus.jpg"]] * 2)
        await asyncio.sleep(2.5)  # several lease rounds' worth: a paused worker must not take it
        assert worker.snapshot().events_total == 0
        assert "AltCPU" in worker.available_providers()
        worker.set_provider("AltCPU")
        with pytest.raises(ValueError, match="not available"):
            worker.set_provider("NoSuchExecutionProvider")
        worker.resume()
        views = await wait_done(relay.url, tenant, [paused_event])
    finally:
        await worker.stop()
        await task
    assert views[paused_event]["provider"] == "AltCPU" and views[paused_event]["k"] == 2
    assert worker.snapshot().provider == "AltCPU"


class CuttableSource(HttpLeaseSource):
    """Posts its first results to a closed port: a relay that is down until ``up`` is set."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token, attempts=1)
        self.real = url
        self.up = asyncio.Event()
        self.failed_posts = 0

    async def post_results(self, results):
        if not self.up.is_set():
            self.failed_posts += 1
            self.base_url = "http://127.0.0.1:9"  # discard port: connection refused
            try:
                return await super().post_results(results)
            finally:
                self.base_url = self.real
        return await super().post_results(results)


async def test_results_kept_while_relay_is_down_and_delivered_once_back(relay, tenant, sample_images, yolov8n_onnx):
    creds = enroll_worker(relay.url)
    source = CuttableSource(relay.url, creds.secret)
    worker = make_worker(relay.url, creds.secret, yolov8n_onnx, source=source)
    states: list[tuple[WorkerState, str]] = []
    worker.subscribe(lambda s: states.append((s.state, s.state_detail)))
    task = asyncio.create_task(worker.run())
    try:
        event_id = post_event(relay.url, tenant, uploads=[sample_images["zidane.jpg"]])
        for _ in range(300):
            if source.failed_posts >= 3:
                break
            await asyncio.sleep(0.05)
        assert worker.state == WorkerState.ERROR and "relay unreachable" in worker.snapshot().state_detail
        source.up.set()
        views = await wait_done(relay.url, tenant, [event_id])
    finally:
        await worker.stop()
        await task
    assert views[event_id]["k"] == 1
    assert any(s == WorkerState.ERROR for s, _ in states)
    assert worker.snapshot().events_total == 1
