"""Entry point of the desktop bundle (``insane-desktop``): the ``insane tray`` command and nothing else.

PyInstaller starts here (see pyinstaller.spec). ``insane-desktop --self-test`` is ``insane tray --self-test``
(``insane-desktop tray ...`` too: that is how desktop/autostart.py starts a bundle).
The bundle carries the tray app only, so the other subcommands are not registered: their modules
(the relay, asyncpg) are not in it; Starlette and uvicorn are, for the LAN API (core/lan).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys


def pick_model(args: list[str]) -> None:
    """Point INSANE_MODEL at the model to run when the configured one is not on this PC.

    A fresh install runs the model the bundle carries, or fetches one once, with progress: the configured
    model when the registry can download it, else COCO YOLOv8n (desktop/firstrun.py), and says what it
    installed. ``--model`` is left alone; an INSANE_MODEL the registry can download is fetched, any other
    is left alone, and if it is missing the app says so.
    """
    if any(a == "--model" or a.startswith("--model=") for a in args):
        return
    explicit = "INSANE_MODEL" in os.environ
    from core.detect.base import DetectorError
    from core.detect.download import DownloadError
    from core.detect.registry import ModelRegistry
    from core.settings import SettingsError, load_settings
    from desktop.firstrun import fetch_in_console, fetch_in_dialog, model_choice, present_instead

    try:
        settings = load_settings()
    except SettingsError:
        return  # the command itself reports the bad setting
    try:
        registry = ModelRegistry.from_settings(settings)
        choice = model_choice(settings, registry)
    except DetectorError as exc:  # a corrupt file where the model should be, or an unusable catalogue
        print(f"insane-desktop: {exc}", file=sys.stderr)
        return
    if choice.how == "configured" or (explicit and not (choice.how == "download" and choice.name == settings.model)):
        return
    if choice.how == "carried":
        print(f"insane-desktop: model {settings.model} is not on this PC; running {choice.name}, which the app carries")
    elif choice.how == "present":
        print(f"insane-desktop: model {settings.model} is not on this PC; running {choice.name} instead")
    else:
        print(
            f"insane-desktop: no model on this PC yet; downloading {choice.name} once into {settings.model_dir}",
            flush=True,  # before the progress line, which goes to stderr
        )
        headless = "--self-test" in args or (
            sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        )
        try:
            if headless:
                installed = fetch_in_console(registry, choice.name)
            else:
                from desktop.app import make_application

                make_application()
                installed = fetch_in_dialog(registry, choice.name)
        except (DownloadError, DetectorError) as exc:
            print(f"insane-desktop: {exc}", file=sys.stderr)
            instead = None if explicit else present_instead(registry, choice.name)
            if instead is None:
                return  # the app starts anyway and shows the missing model as its problem
            print(f"insane-desktop: running {instead} instead until {choice.name} can be fetched")
            os.environ["INSANE_MODEL"] = instead
            return
        print(f"insane-desktop: {installed.summary}")
    os.environ["INSANE_MODEL"] = choice.name


def main() -> int:
    multiprocessing.freeze_support()  # a frozen child process must not start a second tray
    from desktop.logfile import needs_log_file, redirect_to_log_file

    # The windowed Windows build has no stderr at all, a macOS app started from Finder writes to /dev/null:
    # the logs (and --help, and a traceback) go to a file in the platform's log folder, shown in Settings.
    # From a terminal (insane-desktop-cli.exe on Windows) they print as usual.
    if needs_log_file(sys.stderr):
        with contextlib.suppress(OSError):  # no writable log folder: the app runs, its output lost as before
            redirect_to_log_file()
    # onnxruntime writes a device id under ~/.cache/Microsoft on import unless told not to.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from insane import cli

    cli.COMMANDS[:] = [("tray", "desktop.cli")]
    args = sys.argv[1:]
    if args[:1] == ["tray"]:
        args = args[1:]  # the autostart entries start the bundle as `insane-desktop tray`
    if "--help" not in args and "-h" not in args:
        pick_model(args)
    return cli.main(["tray", *args])


if __name__ == "__main__":
    sys.exit(main())
