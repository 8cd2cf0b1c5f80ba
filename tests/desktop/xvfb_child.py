"""Run inside an X display with a tray host: show the real tray icon, open its menu, take screenshots.

python -m tests.desktop.xvfb_child ARTIFACTS_DIR      (DISPLAY set; prints one JSON line)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtWidgets import QSystemTrayIcon

from core.settings import load_settings
from desktop.app import make_application
from desktop.controller import Controller


def pump(app, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def main(artifacts: Path) -> int:
    app = make_application()
    out: dict[str, object] = {"platform": app.platformName(), "tray_available": False}
    out["tray_available"] = pump(app, QSystemTrayIcon.isSystemTrayAvailable, 10)
    controller = Controller(load_settings(), use_tray=out["tray_available"])
    controller.show()  # the worker is not started here: the tray shows its starting state
    tray = controller.tray
    if tray is not None:
        out["icon_visible"] = pump(app, lambda: tray.icon.isVisible() and tray.icon.geometry().width() > 0, 10)
        geometry = tray.icon.geometry()
        out["icon_geometry"] = [geometry.x(), geometry.y(), geometry.width(), geometry.height()]
        out["tooltip"] = tray.icon.toolTip()
        tray.menu.popup(geometry.bottomLeft())
        out["menu_visible"] = pump(app, tray.menu.isVisible, 5)
        pump(app, lambda: False, 0.5)  # let the menu paint before the screenshot
        subprocess.run(["import", "-window", "root", str(artifacts / "tray-menu-xvfb.png")], check=True, timeout=30)
        out["menu_items"] = [a.text() for a in tray.menu.actions() if a.text()]
        tray.menu.hide()
    controller.open_dashboard()
    pump(app, lambda: controller.dashboard.isVisible(), 5)
    pump(app, lambda: False, 0.3)
    out["dashboard_saved"] = controller.dashboard.grab().save(str(artifacts / "dashboard-xvfb.png"))
    subprocess.run(["import", "-window", "root", str(artifacts / "desktop-xvfb.png")], check=True, timeout=30)
    if tray is not None:
        tray.hide()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
