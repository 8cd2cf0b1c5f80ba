"""The desktop bundle's platform choices, as data: pyinstaller.spec builds from them, tests hold them.

    for exe in executables(sys.platform):      # the program, and on Windows its console companion
        EXE(..., name=exe.name, console=exe.console)
    BUNDLE(..., version=version, info_plist=info_plist(version))
    problems = check_info_plist(plistlib.loads(data), version)   # after the .app is written

Standard library only: the spec imports it inside PyInstaller, the tests without it.

Why these choices (each checked against PyInstaller 6's own code, building/osx.py and building/api.py):
- macOS: BUNDLE copies EXE(console=...) and writes ``LSBackgroundOnly = True`` into Info.plist when it is
  true. Such an app may not create windows or be activated, so Settings (where the enrollment code goes)
  and the dashboard would never appear; ``LSUIElement`` (no Dock icon) does not undo it. The executable is
  therefore built windowed, and :func:`check_info_plist` fails the build if the key shows up anyway.
- macOS: BUNDLE writes ``CFBundleShortVersionString`` from its ``version=`` argument, 0.0.0 by default.
- Windows: a windowed (GUI subsystem) executable has no standard streams, so ``--self-test``, ``--help``
  and the logs print nowhere; the console companion ``insane-desktop-cli.exe`` beside it, built from the
  same code, is the one to run from a terminal or a build script.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NAME = "insane-desktop"
CONSOLE_NAME = "insane-desktop-cli"  # Windows only: the same program with a console
APP_TITLE = "Insane AI Security"
BUNDLE_NAME = f"{APP_TITLE}.app"
BUNDLE_ID = "ai.insane.desktop"
PUBLISHER = "Insane AI Security"
DESCRIPTION = "Insane AI Security: AI review of security-camera events on this PC"
# The oldest macOS the bundle's wheels run on: onnxruntime, numpy and PySide6 are built for macOS 14
# (their wheels are tagged macosx_14_0; installer/wheels.py reads the tags and CI holds this to them).
MACOS_MINIMUM = "14.0"


@dataclass(frozen=True)
class Executable:
    name: str
    console: bool


def executables(platform: str) -> list[Executable]:
    """The executables of the bundle for a ``sys.platform`` value, the main one first."""
    if platform == "win32":
        return [Executable(NAME, console=False), Executable(CONSOLE_NAME, console=True)]
    if platform == "darwin":
        return [Executable(NAME, console=False)]  # console=True would make BUNDLE write LSBackgroundOnly
    return [Executable(NAME, console=True)]


def project_version(root: Path = ROOT) -> str:
    """The version in pyproject.toml: the one the app reports, the installers carry and the files are named with."""
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def version_tuple(version: str) -> tuple[int, int, int, int]:
    """``1.2.3`` → (1, 2, 3, 0): the four numbers of a Windows version resource (a suffix such as rc1 is dropped)."""
    match = re.match(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        raise ValueError(f"version {version!r} does not start with a number")
    parts = tuple(int(p or 0) for p in match.groups())
    if any(p > 0xFFFF for p in parts):
        raise ValueError(f"version {version!r}: each part of a Windows version is at most 65535")
    return parts  # type: ignore[return-value]


def info_plist(version: str) -> dict[str, Any]:
    """The keys the .app's Info.plist gets on top of PyInstaller's own."""
    return {
        "CFBundleName": APP_TITLE,
        "CFBundleDisplayName": APP_TITLE,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "LSMinimumSystemVersion": MACOS_MINIMUM,
        "LSUIElement": True,  # a menu-bar app: no Dock icon, but it may show windows
        "NSHighResolutionCapable": True,
        "NSHumanReadableCopyright": f"{PUBLISHER}, AGPL-3.0-or-later",
    }


def check_info_plist(plist: dict[str, Any], version: str) -> list[str]:
    """Problems with a built .app's Info.plist; empty when it can show windows and says what it is."""
    problems = []
    if plist.get("LSBackgroundOnly"):
        problems.append("Info.plist has LSBackgroundOnly: the app could not show Settings or the dashboard")
    if plist.get("LSUIElement") is not True:
        problems.append("Info.plist lacks LSUIElement: the menu-bar app would show a Dock icon")
    if plist.get("LSMinimumSystemVersion") != MACOS_MINIMUM:
        problems.append(
            f"Info.plist's LSMinimumSystemVersion is {plist.get('LSMinimumSystemVersion')!r}, not {MACOS_MINIMUM!r}"
        )
    for key in ("CFBundleShortVersionString", "CFBundleVersion"):
        if plist.get(key) != version:
            problems.append(f"Info.plist's {key} is {plist.get(key)!r}, not {version!r}")
    if plist.get("CFBundleIdentifier") != BUNDLE_ID:
        problems.append(f"Info.plist's CFBundleIdentifier is {plist.get('CFBundleIdentifier')!r}, not {BUNDLE_ID!r}")
    return problems


def windows_version_strings(version: str, exe_name: str) -> dict[str, str]:
    """The StringFileInfo of an executable's version resource (what Explorer's Details tab shows)."""
    return {
        "CompanyName": PUBLISHER,
        "FileDescription": DESCRIPTION,
        "FileVersion": version,
        "InternalName": exe_name,
        "LegalCopyright": f"{PUBLISHER}, AGPL-3.0-or-later",
        "OriginalFilename": f"{exe_name}.exe",
        "ProductName": APP_TITLE,
        "ProductVersion": version,
    }


def windows_version_info(version: str, exe_name: str) -> Any:
    """PyInstaller's ``VSVersionInfo`` for ``EXE(version=...)`` (needs PyInstaller, and pefile that it imports)."""
    from PyInstaller.utils.win32 import versioninfo as vi

    numbers = version_tuple(version)
    strings = [vi.StringStruct(k, v) for k, v in windows_version_strings(version, exe_name).items()]
    return vi.VSVersionInfo(
        ffi=vi.FixedFileInfo(filevers=numbers, prodvers=numbers, mask=0x3F, flags=0, OS=0x40004, fileType=1),
        kids=[
            vi.StringFileInfo([vi.StringTable("040904B0", strings)]),  # US English, Unicode
            vi.VarFileInfo([vi.VarStruct("Translation", [0x0409, 0x04B0])]),
        ],
    )
