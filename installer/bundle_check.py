"""What must never be in the desktop bundle, and how big it may be.

Used by pyinstaller.spec on the analysis (module names and files), and from the command line on a
finished bundle folder:

    python installer/bundle_check.py dist/insane-desktop --max-mb 250

Exit status 1 and one line per problem when something is wrong. Standard library only, so that the
spec can import it inside PyInstaller.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

# Top-level Python packages that belong to the relay or to model export, never to the tray app. Starlette
# and uvicorn may be in it: they serve the DeepStack API on the LAN (core/lan); asyncpg and relay/ never.
FORBIDDEN_PACKAGES = frozenset(
    {
        "torch",
        "torchvision",
        "torchaudio",
        "ultralytics",
        "asyncpg",
        "relay",
        # uvicorn's optional fast paths and reloader: the LAN API runs on plain h11 and asyncio.
        "uvloop",
        "httptools",
        "watchfiles",
        "websockets",
        "tkinter",
        "matplotlib",
        "IPython",
        "pytest",
        # OpenCV with its FFmpeg and OpenBLAS is 150 MB; simplejpeg and Pillow decode for the tray app
        # (core/detect/decode.py).
        "cv2",
    }
)
# Packages inside our own that the tray app never runs: the dev kit (throwaway servers, test models, faults).
FORBIDDEN_SUBPACKAGES = frozenset({"insane.devkit"})
# Shared libraries of the same stacks, and the Qt modules the app does not use.
FORBIDDEN_LIBRARIES = (
    "libtorch",
    "libc10",
    "libQt6WebEngine",
    "libQt6Quick",
    "libQt63D",
    "libQt6Qml",
    "libQt6Pdf",
    "libQt6Multimedia",
    "libQt6Designer",
    "libQt6Charts",
    "libQt6Sql",
    "libQt6Test",
)
DEFAULT_MAX_MB = 250


def forbidden_modules(names: Iterable[str]) -> list[str]:
    """The forbidden packages among dotted module names: top-level ones, and the forbidden subpackages."""
    names = set(names)
    found = {n.split(".")[0] for n in names} & FORBIDDEN_PACKAGES
    found |= {p for p in FORBIDDEN_SUBPACKAGES for n in names if n == p or n.startswith(p + ".")}
    return sorted(found)


def forbidden_files(paths: Iterable[str]) -> list[str]:
    """Paths (relative to the bundle) of forbidden packages' folders and libraries."""
    bad = []
    for path in paths:
        parts = Path(path).parts
        if parts and parts[0] == "_internal":
            parts = parts[1:]
        if not parts:
            continue
        name = parts[-1]
        if parts[0] in FORBIDDEN_PACKAGES or any(name.startswith(lib) for lib in FORBIDDEN_LIBRARIES):
            bad.append(str(path))
    return sorted(bad)


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links are not counted twice)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def bundled_modules(executable: Path) -> list[str]:
    """Names of the Python modules inside a PyInstaller executable's archive (needs PyInstaller)."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(executable))
    return list(archive.open_embedded_archive("PYZ.pyz").toc)


def check_folder(folder: Path, executable: str, max_mb: float) -> list[str]:
    problems = []
    files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    problems += [f"forbidden file in the bundle: {p}" for p in forbidden_files(files)]
    exe = folder / executable
    if exe.is_file():
        problems += [f"forbidden package in the bundle: {m}" for m in forbidden_modules(bundled_modules(exe))]
    else:
        problems.append(f"no executable {exe}")
    size_mb = folder_bytes(folder) / 1e6
    if size_mb > max_mb:
        problems.append(f"the bundle is {size_mb:.1f} MB, over the {max_mb:g} MB limit")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the one-folder bundle, e.g. dist/insane-desktop")
    parser.add_argument("--executable", default="insane-desktop", help="its executable's name")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB, help="size limit in MB (10^6 bytes)")
    args = parser.parse_args(argv)
    problems = check_folder(args.folder, args.executable, args.max_mb)
    print(f"bundle: {args.folder} {folder_bytes(args.folder) / 1e6:.1f} MB")
    for line in problems:
        print(f"bundle check: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
