"""``insane tray``: the desktop app (tray icon, dashboard, settings), or its self-test.

Qt is imported only when the command runs, so ``insane --help`` and ``insane tray --help`` stay quick.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tray",
        help="run the desktop app: a tray icon over the worker, with a live dashboard and settings",
        description="Run the worker with a system tray icon (Pause/Resume, Use GPU, dashboard, settings). "
        "Where the desktop has no tray, the dashboard window is shown instead. One instance per user: a "
        "second start brings the first one's dashboard forward.",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="load the model, run one inference on the bundled sample image, print it and exit",
    )
    p.add_argument("--window", action="store_true", help="show the dashboard window even where a tray exists")
    p.add_argument("--model", help="a model name or .onnx path (INSANE_MODEL)")
    p.add_argument("--relay-url", help="the relay's base URL (INSANE_RELAY_URL)")
    p.set_defaults(func=tray_command, settings_overrides=lambda a: {"model": a.model, "relay_url": a.relay_url})


def telemetry_off() -> None:
    """onnxruntime's own telemetry (Windows ETW events) is on by default; this is its off switch.

    ORT_DISABLE_TELEMETRY, which the bundle sets, only keeps the Python package from writing a device id.
    """
    import onnxruntime

    onnxruntime.disable_telemetry_events()


def tray_command(args: argparse.Namespace, settings) -> int:
    telemetry_off()
    if args.self_test:
        from desktop.selftest import self_test

        return self_test(settings)
    from desktop.app import run

    return run(settings, force_window=args.window)
