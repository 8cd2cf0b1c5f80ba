"""The worker engine: lease → preload → decode → batch → detect → verdict → result.

    worker = build_worker(settings)             # or Worker(WorkerConfig(...), source, detector)
    unsubscribe = worker.subscribe(on_snapshot) # called on the loop thread ~1/s and on state changes
    task = asyncio.create_task(worker.run())    # runs until stop(); relay outages are state ERROR, retried
    worker.pause(); worker.resume()
    worker.set_provider("CUDAExecutionProvider")
    worker.moment_picture(event_id)             # a recent event's best moment and its boxes (or None)
    await worker.stop()                         # finish what it holds, post it, stop every task and thread

The tray app and ``insane worker`` use only the names exported here.
"""

from core.worker.build import WorkerSetupError, build_source, build_worker, worker_config
from core.worker.config import WorkerConfig
from core.worker.engine import Worker
from core.worker.pictures import MomentPicture, PicturePolicy
from core.worker.ports import (
    DetectorPort,
    LeaseSource,
    PreloaderPort,
    RelayUnavailable,
    RequestRejected,
    SourceError,
    TokenRejected,
)
from core.worker.state import EventSummary, MetricsSnapshot, WorkerState

__all__ = [
    "DetectorPort",
    "EventSummary",
    "LeaseSource",
    "MetricsSnapshot",
    "MomentPicture",
    "PicturePolicy",
    "PreloaderPort",
    "RelayUnavailable",
    "RequestRejected",
    "SourceError",
    "TokenRejected",
    "Worker",
    "WorkerConfig",
    "WorkerSetupError",
    "WorkerState",
    "build_source",
    "build_worker",
    "worker_config",
]
