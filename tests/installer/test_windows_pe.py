"""The Windows executables' subsystems, read with pefile from PyInstaller's own Windows bootloaders.

PyInstaller builds an executable from ``run.exe`` when console=True and ``runw.exe`` when not
(building/api.py, ``_bootloader_file``). A GUI-subsystem program starts without standard streams, which
is why the tray app (windowed) has a console companion for --self-test and the command line.
Needs PyInstaller's win_amd64 wheel in .cache/pyinstaller-win (``./dev.sh inno`` downloads it).
"""

from __future__ import annotations

import zipfile

import pytest

from insane.devkit import ROOT
from installer import specinfo

WHEELS = sorted((ROOT / ".cache" / "pyinstaller-win").glob("pyinstaller-*-win_amd64.whl"))
CONSOLE, GUI = 3, 2  # IMAGE_SUBSYSTEM_WINDOWS_CUI, IMAGE_SUBSYSTEM_WINDOWS_GUI
AMD64 = 0x8664

pytestmark = pytest.mark.skipif(not WHEELS, reason="needs PyInstaller's Windows wheel: ./dev.sh inno")


def bootloader(console: bool) -> bytes:
    with zipfile.ZipFile(WHEELS[-1]) as wheel:
        return wheel.read(f"PyInstaller/bootloader/Windows-64bit-intel/{'run' if console else 'runw'}.exe")


def test_the_tray_app_is_a_gui_program_and_its_companion_a_console_one() -> None:
    pefile = pytest.importorskip("pefile")
    main, companion = specinfo.executables("win32")
    for exe, subsystem in ((main, GUI), (companion, CONSOLE)):
        pe = pefile.PE(data=bootloader(exe.console))
        assert pe.FILE_HEADER.Machine == AMD64, exe.name
        assert pe.OPTIONAL_HEADER.Subsystem == subsystem, exe.name
