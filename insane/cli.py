"""``insane``: one command, a subcommand per job.

Each subcommand lives in a module with ``register(subparsers)``; modules are imported lazily so that
``insane relay --help`` needs no Qt and ``insane tray --help`` needs no Starlette.
"""

from __future__ import annotations

import argparse
import importlib
import logging.config
import sys
from typing import Any

from core.logs import log_config
from core.settings import SettingsError, load_settings

# (subcommand, module that registers it). Order is the order of --help.
COMMANDS = [
    ("relay", "relay.cli"),
    ("tenant", "relay.tenant_cli"),
    ("demo", "insane.commands.demo"),
    ("worker", "insane.commands.worker"),
    ("tray", "desktop.cli"),
    ("bridge", "insane.commands.bridge"),
    ("mqtt", "insane.commands.mqtt"),
    ("services", "insane.commands.services"),
    ("detect", "insane.commands.detect"),
    ("model", "insane.commands.model"),
    ("bench", "insane.commands.bench"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insane",
        description="Insane AI Security: self-hosted AI review for security cameras. "
        "Settings come from INSANE_* environment variables and config.toml; see the README.",
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override INSANE_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS:
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"core", "relay", "desktop", "insane"}:
                raise
            # A side that is not installed (e.g. the relay extra on a desktop install) keeps its name
            # in --help and says what to install.
            missing = exc.name or module
            p = sub.add_parser(name, help=f"(unavailable: {missing} is not installed)")
            p.set_defaults(func=_unavailable(name, missing))
    return parser


def _unavailable(name: str, missing: str):
    def run(args: argparse.Namespace, settings) -> int:
        print(f"insane {name}: needs {missing}, which is not installed in this environment", file=sys.stderr)
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = getattr(args, "settings_overrides", lambda a: {})(args)
    try:
        settings = load_settings(log_level=args.log_level, **overrides)
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"insane: invalid setting: {line}", file=sys.stderr)
        return 2
    logging.config.dictConfig(log_config(settings.log_level))
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
