"""Entry point of the desktop bundle (``insane-desktop``): the ``insane tray`` command and nothing else.

PyInstaller starts here (see pyinstaller.spec). ``insane-desktop --self-test`` is ``insane tray --self-test``
(``insane-desktop tray ...`` too: that is how desktop/autostart.py starts a bundle).
The bundle carries the tray app only, so the other subcommands are not registered: their modules
(the relay's Starlette, asyncpg, uvicorn) are not in it.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
from pathlib import Path


def seed_models() -> None:
    """Copy the models the bundle carries into the model folder once, where the model registry looks.

    The bundle's own folder may be read-only (Program Files, a mounted .dmg); the model folder is the
    user's. A model already there (downloaded or imported) is never replaced.
    """
    bundled = Path(getattr(sys, "_MEIPASS", "")) / "models"
    if not getattr(sys, "frozen", False) or not bundled.is_dir():
        return
    from core.settings import SettingsError, load_settings

    try:
        model_dir = load_settings().model_dir
    except SettingsError:
        return  # the command itself reports the bad setting
    for source in bundled.glob("*.onnx"):
        target = model_dir / source.name
        if target.exists():
            continue
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            shutil.copyfile(source, partial)
            os.replace(partial, target)  # atomic: a crash mid-copy leaves no half model behind
        except OSError as exc:
            print(f"insane-desktop: could not copy the bundled model to {target}: {exc}", file=sys.stderr)


def main() -> int:
    multiprocessing.freeze_support()  # a frozen child process must not start a second tray
    # onnxruntime writes a device id under ~/.cache/Microsoft on import unless told not to.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    seed_models()
    from insane import cli

    cli.COMMANDS[:] = [("tray", "desktop.cli")]
    args = sys.argv[1:]
    if args[:1] == ["tray"]:
        args = args[1:]  # the autostart entries start the bundle as `insane-desktop tray`
    return cli.main(["tray", *args])


if __name__ == "__main__":
    sys.exit(main())
