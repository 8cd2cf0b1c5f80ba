"""One tray app per user: the first start holds a lock and listens; a later one asks it to show itself.

    instance = SingleInstance()            # name derived from the user and the config folder
    if not instance.acquire():             # another one runs: it was asked to show its dashboard
        return 0
    instance.activated.connect(dashboard.bring_forward)
    ...
    instance.release()

The lock file (QLockFile, removed if its owner died) decides who is first, so two starts at the same
moment cannot both win; the local socket (a Unix socket or a Windows named pipe) carries the request.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from pathlib import Path

import platformdirs
from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from core.settings import APP_NAME, default_config_file

log = logging.getLogger(__name__)

SHOW = b"show\n"


def instance_name(config_file: Path | None = None) -> str:
    """Per user and per config folder, so a test run never talks to the user's own tray app."""
    where = str((config_file or default_config_file()).parent)
    digest = hashlib.sha256(f"{getpass.getuser()}\0{where}".encode()).hexdigest()[:16]
    return f"{APP_NAME}-tray-{digest}"


class SingleInstance(QObject):
    activated = Signal()  # a second start asked this instance to show itself

    def __init__(self, name: str | None = None, lock_dir: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or instance_name()
        lock_dir = lock_dir or platformdirs.user_runtime_path(APP_NAME, ensure_exists=True)
        self.lock = QLockFile(str(Path(lock_dir) / f"{self.name}.lock"))
        self.lock.setStaleLockTime(0)  # only a dead owner makes it stale, never its age
        self.server: QLocalServer | None = None

    def acquire(self, timeout_ms: int = 2000) -> bool:
        """True: this is the first instance and now listens. False: another runs and was told to show."""
        if not self.lock.tryLock(0):
            self._signal_other(timeout_ms)
            return False
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        # We hold the lock, so a socket file left at this name is a dead instance's: remove it.
        QLocalServer.removeServer(self.name)
        if not server.listen(self.name):
            log.warning("single instance: cannot listen on %s: %s", self.name, server.errorString())
        server.newConnection.connect(self._on_connection)
        self.server = server
        return True

    def _signal_other(self, timeout_ms: int) -> None:
        socket = QLocalSocket(self)
        try:
            socket.connectToServer(self.name)
            if not socket.waitForConnected(timeout_ms):
                log.warning("another instance holds the lock but does not answer: %s", socket.errorString())
                return
            socket.write(SHOW)
            socket.waitForBytesWritten(timeout_ms)
            socket.disconnectFromServer()
            log.info("another instance is running; asked it to show its dashboard")
        finally:
            socket.abort()
            socket.deleteLater()

    def _on_connection(self) -> None:
        assert self.server is not None
        while (socket := self.server.nextPendingConnection()) is not None:
            # The request is one short line written right after connecting: read it here, briefly.
            arrived = socket.bytesAvailable() or socket.waitForReadyRead(1000)
            if arrived and bytes(socket.readAll().data()).startswith(SHOW.strip()):
                self.activated.emit()
            socket.abort()
            socket.deleteLater()

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.lock.isLocked():
            self.lock.unlock()
