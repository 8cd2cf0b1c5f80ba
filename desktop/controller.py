"""The tray app's one controller: it owns the worker and connects it to the tray, dashboard and settings.

    controller = Controller(settings, use_tray=QSystemTrayIcon.isSystemTrayAvailable())
    controller.show()                     # the tray icon, or the dashboard where no tray exists
    await controller.start()              # builds the worker off the GUI thread and runs it
    await controller.finished()           # until Quit: the worker drained, every task done

All slots that do I/O are coroutines on the qasync loop; their UI state is restored in ``finally``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from PySide6.QtCore import QObject, Signal

from core.detect import DetectorError
from core.detect.int8 import Int8Trial, load_trial, source_name, try_int8
from core.detect.providers import load_problems
from core.detect.registry import ModelRegistry
from core.enroll import EnrollError, enroll
from core.settings import Settings, SettingsError, load_settings
from core.worker import EventSummary, MetricsSnapshot, MomentPicture, Worker, WorkerState, build_worker
from core.worker.build import WorkerSetupError
from desktop import autostart
from desktop.alerts import AlertPolicy
from desktop.configfile import ConfigWriteError, save_settings
from desktop.dashboard import Dashboard
from desktop.logfile import active_log_file
from desktop.picture import decode_picture, no_picture_text
from desktop.settings_dialog import EDITABLE, SettingsDialog
from desktop.status import APP_TITLE, gpu_choice, is_on_gpu, lan_line
from desktop.tokens import TokenStore, TokenStoreError
from desktop.tray import Tray

log = logging.getLogger(__name__)

WorkerFactory = Callable[[Settings, str | None], Worker]
# Changing these needs a new worker (a new model session, thread pool or relay connection).
RESTART_KEYS = ("relay_url", "model", "worker_threads", "worker_dedicated_tenant")
# Changing these restarts only the DeepStack API server (core/lan), not the worker.
LAN_KEYS = ("serve_deepstack", "deepstack_api_key")


def plain(value: Any) -> Any:
    """A setting's value as the dialog shows it (a secret's text)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def default_worker_factory(settings: Settings, token: str | None) -> Worker:
    return build_worker(settings, token=token, pictures=True)  # the dashboard shows them


def placeholder(state: WorkerState, detail: str, settings: Settings) -> MetricsSnapshot:
    """What the UI shows while no worker runs (building, not enrolled, model missing)."""
    return MetricsSnapshot(
        at=time.time(),
        state=state,
        state_detail=detail,
        images_per_s=0.0,
        events_per_s=0.0,
        latency_ms={},
        queue_depth={},
        batch_size=0,
        k={},
        provider="",
        model=settings.model,
        threads=settings.worker_threads,
        images_total=0,
        events_total=0,
        errors_total=0,
    )


class Controller(QObject):
    snapshot_changed = Signal(object)  # every MetricsSnapshot shown
    worker_started = Signal()
    notified = Signal(str, str)  # title, message
    picture_ready = Signal(object, object)  # a MomentPicture, and its QImage decoded off the GUI thread
    finished_signal = Signal()

    def __init__(
        self,
        settings: Settings,
        *,
        use_tray: bool,
        tokens: TokenStore | None = None,
        worker_factory: WorkerFactory = default_worker_factory,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.tokens = tokens or TokenStore()
        self.worker_factory = worker_factory
        self.worker: Worker | None = None
        self.lan: Any = None  # core.lan.server.LanServer while the DeepStack API serves
        self.lan_problem: str | None = None
        self.last: MetricsSnapshot = placeholder(WorkerState.STARTING, "loading the model", settings)
        self.alerts = AlertPolicy(settings.tray_alert_after_s)
        self._unsubscribe: Callable[[], None] | None = None
        self._run_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._int8_task: asyncio.Task | None = None
        self._done = asyncio.Event()
        self._quitting = False
        self.gpu_problems: dict[str, str] = {}  # GPU providers onnxruntime offers but cannot load, and why
        self.http = httpx.AsyncClient(timeout=20)  # one client for the app's own calls (enrollment)

        self.dashboard = Dashboard()
        self.settings_dialog: SettingsDialog | None = None
        self.tray: Tray | None = Tray() if use_tray else None
        d = self.dashboard
        d.quit_on_close = self.tray is None
        d.pause_clicked.connect(self.toggle_pause)
        d.gpu_toggled.connect(self.set_gpu)
        d.settings_clicked.connect(self.open_settings)
        d.quit_clicked.connect(self.request_quit)
        d.event_selected.connect(self.show_event)
        self.picture_ready.connect(d.show_picture)
        if self.tray is not None:
            t = self.tray
            t.pause_triggered.connect(self.toggle_pause)
            t.gpu_toggled.connect(self.set_gpu)
            t.int8_toggled.connect(self.set_int8)
            t.dashboard_triggered.connect(self.open_dashboard)
            t.settings_triggered.connect(self.open_settings)
            t.quit_triggered.connect(self.request_quit)
        self._show(self.last)
        self._show_int8()

    # ----- lifecycle --------------------------------------------------------------------------

    def show(self) -> None:
        if self.tray is not None:
            self.tray.show()
            log.info("tray ready: icon shown")
        else:
            self.open_dashboard()
            log.info("tray ready: no system tray here, showing the dashboard")
        self._reconcile_autostart()

    async def start(self) -> bool:
        """Build and run the worker; False (and an error state shown) when it cannot start yet."""
        settings = self.settings
        token: str | None = None
        if settings.worker_token is None:  # INSANE_WORKER_TOKEN (a headless PC without a keyring) wins
            try:
                token = self.tokens.load(settings.relay_url)
            except TokenStoreError as exc:
                self._show_problem(str(exc))
                return False
        if token is None and settings.worker_token is None:
            self._show_problem("not enrolled: open Settings and paste an enrollment code")
            return False
        self._show(placeholder(WorkerState.STARTING, "loading the model", settings))
        loop = asyncio.get_running_loop()
        try:
            # Loading a model takes a while: off the GUI thread, so the tray stays responsive.
            worker = await loop.run_in_executor(None, self.worker_factory, settings, token)
        except (WorkerSetupError, DetectorError) as exc:
            self._show_problem(str(exc))
            return False
        # A CUDA or TensorRT provider whose NVIDIA libraries are missing would leave the worker on the CPU
        # without a word: say so, and why (the "Use GPU" item shows it too).
        self.gpu_problems = await loop.run_in_executor(None, load_problems)
        if self.gpu_problems and settings.use_gpu:
            self.notify("Use GPU", "; ".join(self.gpu_problems.values()))
        if self._quitting:
            await worker.stop(drain=False)
            return False
        self.worker = worker
        self._unsubscribe = worker.subscribe(self._on_snapshot)
        self._run_task = asyncio.create_task(worker.run(), name="insane-worker")
        self._run_task.add_done_callback(self._run_ended)
        await self.start_lan()
        self._show(worker.snapshot())
        self.worker_started.emit()
        log.info("worker started: model %s, provider %s", worker.detector.model_name, worker.detector.provider)
        return True

    def _run_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the worker stopped on an error", exc_info=task.exception())
            self._show_problem(f"the worker stopped: {task.exception()}")

    async def start_lan(self) -> None:
        """Serve the DeepStack API beside the worker when the settings ask; a failure is shown, not raised."""
        if self.worker is None or not self.settings.serve_deepstack or self.lan is not None:
            return
        from core.lan.server import LanConfig, LanError, LanServer  # Starlette and uvicorn: only when on

        lan = LanServer(self.worker, LanConfig.from_settings(self.settings))
        try:
            await lan.start()
        except LanError as exc:
            self.lan_problem = str(exc)
            self.notify("DeepStack API", str(exc))
            return
        self.lan, self.lan_problem = lan, None

    async def stop_lan(self) -> None:
        lan = self.lan
        if lan is not None:
            await lan.stop()  # "off" is shown once the port is closed, not before
        self.lan, self.lan_problem = None, None

    async def restart_lan(self) -> None:
        await self.stop_lan()
        await self.start_lan()
        if self.worker is not None:
            self._show(self.worker.snapshot())

    def lan_text(self) -> str:
        lan = self.lan
        return lan_line(lan.url if lan else None, lan.stats() if lan else None, self.lan_problem)

    async def stop_worker(self) -> None:
        """Stop the worker: it finishes and posts the events it holds, then closes its threads."""
        await self.stop_lan()  # first: no LAN request may reach a stopping worker
        worker, task = self.worker, self._run_task
        self.worker, self._run_task = None, None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if worker is not None:
            await worker.stop(drain=True)
        if task is not None:
            await task

    def request_quit(self) -> None:
        if not self._quitting:
            self._spawn(self.quit())

    async def quit(self) -> None:
        self._quitting = True
        if self.tray is not None:
            self.tray.status_action.setText("quitting: finishing the batch in flight…")
        try:
            await self.stop_worker()
            pending = [t for t in self._tasks if t is not asyncio.current_task()]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await self.http.aclose()
            if self.tray is not None:
                self.tray.hide()
            self.dashboard.quit_on_close = False
            self.dashboard.close()
            if self.settings_dialog is not None:
                self.settings_dialog.close()
            self._done.set()
            self.finished_signal.emit()
            log.info("tray app stopped")

    async def finished(self) -> None:
        await self._done.wait()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ----- what the worker says ----------------------------------------------------------------

    def _on_snapshot(self, snapshot: MetricsSnapshot) -> None:
        self._show(snapshot)
        alert = self.alerts.observe(snapshot.state, snapshot.state_detail, time.monotonic())
        if alert is not None:
            self.notify(alert.title, alert.message)

    def _show(self, snapshot: MetricsSnapshot) -> None:
        self.last = snapshot
        gpu = gpu_choice(self.worker.available_providers() if self.worker else [], self.gpu_problems)
        lan = self.lan_text()
        self.dashboard.show_lan(lan)
        self.dashboard.show_snapshot(snapshot, gpu)
        if self.tray is not None:
            self.tray.show_lan(lan)
            self.tray.show_snapshot(snapshot, gpu)
        self.snapshot_changed.emit(snapshot)

    def _show_problem(self, detail: str) -> None:
        log.warning("%s", detail)
        self._show(placeholder(WorkerState.ERROR, detail, self.settings))
        self.notify(APP_TITLE, detail)

    def notify(self, title: str, message: str) -> None:
        if self.tray is not None and self.tray.icon.supportsMessages():
            self.tray.notify(title, message)
        else:
            self.dashboard.statusBar().showMessage(f"{title}: {message}")
        self.notified.emit(title, message)

    # ----- what the user asks -------------------------------------------------------------------

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.worker.state == WorkerState.PAUSED:
            self.worker.resume()
        else:
            self.worker.pause()

    def set_gpu(self, on: bool) -> None:
        if self.worker is None:
            return
        choice = gpu_choice(self.worker.available_providers(), self.gpu_problems)
        target = choice.gpu if on and choice.enabled else choice.cpu
        if target is None or is_on_gpu(self.worker.detector.provider) == on:
            self._show(self.worker.snapshot())
            return
        try:
            self.worker.set_provider(target)
        except ValueError as exc:
            self.notify("Use GPU", str(exc))
        self._spawn(self._save_quietly({"use_gpu": on}))
        self._show(self.worker.snapshot())

    async def _save_quietly(self, changes: dict[str, Any]) -> None:
        try:
            save_settings(changes)
        except ConfigWriteError as exc:
            self.notify("Settings", str(exc))

    def open_dashboard(self) -> None:
        d = self.dashboard
        d.show()
        d.raise_()
        d.activateWindow()

    def open_settings(self) -> None:
        if self.settings_dialog is None:
            values = {key: getattr(self.settings, key) for key in EDITABLE}
            models = [row["name"] for row in ModelRegistry(self.settings.model_dir).entries()]
            dialog = SettingsDialog(
                values, models=models, enrolled=self._enrolled(), parent=self.dashboard, log_file=active_log_file()
            )
            dialog.save_requested.connect(lambda changes: self._spawn(self.apply_settings(changes)))
            dialog.enroll_requested.connect(lambda url, code: self._spawn(self.enroll(url, code)))
            dialog.import_requested.connect(self.import_model)
            dialog.int8_requested.connect(lambda: self.set_int8(True))
            self.settings_dialog = dialog
            self._show_int8()
        self.settings_dialog.show()
        self.settings_dialog.raise_()
        self.settings_dialog.activateWindow()

    def _enrolled(self) -> bool:
        try:
            return self.tokens.load(self.settings.relay_url) is not None
        except TokenStoreError:
            return False

    def _reconcile_autostart(self) -> None:
        # The Windows installer's "Start when I sign in" answer becomes the setting first (desktop/autostart.py).
        def save(on: bool) -> None:
            save_settings({"start_at_login": on})

        try:
            want = autostart.settle(
                self.settings.start_at_login, autostart.autostart_entry(), autostart.installer_choice(), save
            )
        except (autostart.AutostartError, ConfigWriteError) as exc:
            self.notify("Start at login", str(exc))
            return
        if want != self.settings.start_at_login:
            self.settings = self.settings.model_copy(update={"start_at_login": want})

    async def apply_settings(self, changes: dict[str, Any]) -> bool:
        """Validate, save to the config file, update the login entry; restart the worker if needed."""
        dialog = self.settings_dialog
        changed = {k: v for k, v in changes.items() if plain(getattr(self.settings, k)) != v}
        try:
            new = load_settings(**{**self._current_overrides(), **changes})
        except SettingsError as exc:
            if dialog:
                dialog.show_result(False, str(exc))
            return False
        # None turns a setting off; load_settings reads None as "not given" (the file would still have it).
        new = new.model_copy(update={k: None for k, v in changes.items() if v is None})
        try:
            save_settings(changes)  # what the dialog showed is what the user saved, flags included
            autostart.reconcile(new.start_at_login)
        except (ConfigWriteError, autostart.AutostartError) as exc:
            if dialog:
                dialog.show_result(False, str(exc))
            return False
        self.settings = new
        if self.worker is not None and "worker_pictures_other_tenants" in changed:
            self.worker.keep_other_tenants_pictures(new.worker_pictures_other_tenants)
            selected = self.dashboard.selected_event()
            if selected is not None:
                self.show_event(selected)  # a picture no longer allowed leaves the pane now
        if dialog:
            dialog.show_result(True, "saved" + (" — restarting the worker" if self._needs_restart(changed) else ""))
        if self._needs_restart(changed) or self.worker is None:
            await self.restart_worker()
        elif any(key in changed for key in LAN_KEYS):
            await self.restart_lan()
        return True

    def _current_overrides(self) -> dict[str, Any]:
        # The running settings may carry command-line overrides; a save keeps them.
        return {key: getattr(self.settings, key) for key in (*EDITABLE, "tray_alert_after_s")}

    @staticmethod
    def _needs_restart(changed: dict[str, Any]) -> bool:
        return any(key in changed for key in RESTART_KEYS)

    async def restart_worker(self) -> bool:
        await self.stop_worker()
        return await self.start()

    async def enroll(self, relay_url: str, code: str) -> bool:
        dialog = self.settings_dialog
        if dialog:
            dialog.enroll_button.setEnabled(False)
        try:
            reply = await enroll(self.http, relay_url or self.settings.relay_url, code)
            self.tokens.save(relay_url, reply.token)
        except (EnrollError, TokenStoreError) as exc:
            if dialog:
                dialog.show_result(False, str(exc))
            return False
        finally:
            if dialog:
                dialog.enroll_button.setEnabled(True)
        if dialog:
            dialog.set_enrolled(True)
            dialog.code.clear()
            dialog.show_result(True, "enrolled: the worker token is in the system keyring")
        # The tenant a dedicated worker serves (None: shared) is saved with the token: the worker honours
        # that tenant's private-host allow-list, and picture rules, only when it knows it.
        changes: dict[str, Any] = {}
        if relay_url != self.settings.relay_url:
            changes["relay_url"] = relay_url
        dedicated = str(reply.dedicated_tenant) if reply.dedicated_tenant else None
        if dedicated != (str(self.settings.worker_dedicated_tenant) if self.settings.worker_dedicated_tenant else None):
            changes["worker_dedicated_tenant"] = dedicated
        if changes:
            return await self.apply_settings(changes)
        await self.restart_worker()
        return True

    def import_model(self, path: str) -> None:
        dialog = self.settings_dialog
        try:
            target = ModelRegistry(self.settings.model_dir).import_file(path)
        except (DetectorError, OSError) as exc:
            if dialog:
                dialog.show_result(False, f"could not import {path}: {exc}")
            return
        if dialog:
            models = [row["name"] for row in ModelRegistry(self.settings.model_dir).entries()]
            dialog.set_models(models, target.stem)
            dialog.show_result(True, f"imported as {target.stem}; Save to use it")

    # ----- Faster (INT8) ----------------------------------------------------------------------------

    def set_int8(self, on: bool) -> None:
        """On: try an INT8 copy of the current model (it is used only if it pays off); off: back to fp32."""
        if self._int8_task is not None and not self._int8_task.done():
            return
        self._int8_task = self._spawn(self.try_int8() if on else self.use_fp32())

    async def try_int8(self) -> Int8Trial | None:
        """Quantise on the worker's recent moments with the worker paused, A/B here, switch if it pays off."""
        worker = self.worker
        if worker is None:
            self._show_int8("start the worker first: INT8 is calibrated on the moments it reviews")
            return None
        original = self.settings.model
        if original.endswith("-int8"):  # tried before and in use: measure again from the fp32 model it came from
            earlier = load_trial(self.settings.model_dir, source_name(original))
            original = earlier.source_model if earlier else source_name(original)
        source = original
        was_paused = worker.state == WorkerState.PAUSED
        worker.pause()  # the A/B must not share the CPU with reviews
        self._show_int8("measuring INT8 against the model on this PC; the worker is paused meanwhile", busy=True)
        try:
            model = ModelRegistry(self.settings.model_dir).resolve(source)
            await self._quiet(worker)
            run = functools.partial(
                try_int8,
                model,
                self.settings.model_dir,
                worker.recent_moments(),
                name=Path(source).stem,
                source_model=original,
                threads=self.settings.worker_threads,
            )
            trial = await asyncio.get_running_loop().run_in_executor(None, run)
        except DetectorError as exc:
            self._show_int8(f"INT8 not tried: {exc}")
            self.notify("Faster (INT8)", str(exc))
            return None
        finally:
            if not was_paused and self.worker is worker:
                worker.resume()
        self._show_int8(trial.message)
        self.notify("Faster (INT8)", trial.message)
        if trial.use:
            await self.apply_settings({"model": trial.int8})
            self._show_int8(trial.message)
        return trial

    async def use_fp32(self) -> None:
        trial = load_trial(self.settings.model_dir, source_name(Path(self.settings.model).stem))
        await self.apply_settings({"model": trial.source_model if trial else source_name(self.settings.model)})
        self._show_int8()

    @staticmethod
    async def _quiet(worker: Worker, limit_s: float = 30.0) -> None:
        # Paused: wait for the reviews in flight to be posted, so the A/B has the CPU to itself.
        quiet = asyncio.Event()

        def check(_snapshot: MetricsSnapshot) -> None:
            if not worker.held_leases():
                quiet.set()

        unsubscribe = worker.subscribe(check)  # called ~1/s and on every state change
        try:
            check(worker.snapshot())
            await asyncio.wait_for(quiet.wait(), limit_s)
        except TimeoutError:
            log.info("INT8 trial starts with reviews still in flight")
        finally:
            unsubscribe()

    def _show_int8(self, said: str | None = None, busy: bool = False) -> None:
        model = self.settings.model
        if said is None:
            trial = load_trial(self.settings.model_dir, source_name(Path(model).stem))
            said = (
                trial.message
                if trial
                else "not tried yet: an INT8 copy calibrated on your recent moments, used only if it is "
                "faster on this PC and finds the same boxes"
            )
        if self.tray is not None:
            self.tray.set_int8(model.endswith("-int8"), busy, said)
        if self.settings_dialog is not None:
            self.settings_dialog.set_int8_status(said, busy)

    def show_event(self, event: EventSummary) -> None:
        """Show the selected event's best moment: decoded off the GUI thread, drawn on it (picture_ready)."""
        worker = self.worker
        picture = worker.moment_picture(event.event_id) if worker is not None else None
        if picture is None:
            policy = worker.picture_policy if worker is not None else None
            self.dashboard.picture.clear(no_picture_text(event.tenant_id, policy))
            return
        self.dashboard.picture.clear("decoding the picture…")
        self._spawn(self._decode_picture(picture))

    async def _decode_picture(self, picture: MomentPicture) -> None:
        image = await asyncio.get_running_loop().run_in_executor(None, decode_picture, picture.image)
        self.picture_ready.emit(picture, image)  # the dashboard draws it if that event is still selected
