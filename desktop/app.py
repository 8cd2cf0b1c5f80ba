"""Run the tray app: one QApplication, one asyncio loop (qasync), one Controller.

exit_code = run(settings)            # blocks until Quit
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import PySide6  # noqa: F401  # before qasync, so qasync binds to PySide6 and not another Qt binding
import qasync
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from core.settings import Settings
from desktop.appmutex import AppMutex
from desktop.controller import Controller
from desktop.gcpolicy import collect_on_gui_thread
from desktop.icons import app_icon
from desktop.single import SingleInstance
from desktop.status import APP_TITLE

log = logging.getLogger(__name__)


def make_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    if not isinstance(app, QApplication):  # a QCoreApplication made before: it cannot show widgets
        raise TypeError("a QCoreApplication already exists; the tray app needs a QApplication")
    app.setApplicationName("insane-ai-security")
    app.setApplicationDisplayName(APP_TITLE)
    app.setDesktopFileName("insane-ai-security")
    app.setWindowIcon(app_icon())
    # With a tray, closing the dashboard keeps the app running; Quit is explicit.
    app.setQuitOnLastWindowClosed(False)
    return app


def run(settings: Settings, force_window: bool = False) -> int:
    app = make_application()
    instance = SingleInstance()
    if not instance.acquire():
        print("insane tray: already running; its dashboard was brought forward")
        return 0
    running = AppMutex()  # Windows: Setup and Uninstall see it and ask the user to quit the app first
    running.acquire()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    use_tray = QSystemTrayIcon.isSystemTrayAvailable() and not force_window
    controller = Controller(settings, use_tray=use_tray)
    instance.activated.connect(controller.open_dashboard)

    # Ctrl+C or a TERM from the session: the same orderly Quit as the menu's.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: QTimer.singleShot(0, controller.request_quit))
    # Python only runs signal handlers between bytecodes; a slow timer lets them in while Qt waits.
    wake = QTimer()
    wake.start(500)
    wake.timeout.connect(lambda: None)

    async def main() -> None:
        controller.show()
        await controller.start()
        await controller.finished()

    # Worker threads allocate far more than the GUI; left to itself Python would free Qt objects there.
    with collect_on_gui_thread():
        try:
            loop.run_until_complete(main())
        finally:
            wake.stop()
            running.release()
            instance.release()
            loop.close()
            asyncio.set_event_loop(None)
    return 0
