"""installer/windows/insane.iss: built on Windows only; here, its agreement with the app is checked."""

from __future__ import annotations

import re
import subprocess

from insane.devkit import ROOT

ISS = (ROOT / "installer" / "windows" / "insane.iss").read_text()


def test_autostart_value_is_the_one_the_app_manages() -> None:
    from desktop.autostart import RUN_KEY, RUN_VALUE

    line = next(line for line in ISS.splitlines() if "CurrentVersion\\Run" in line)
    assert RUN_KEY in line
    value = re.search(r'ValueName: "([^"]+)"; ValueData: "(.*)"; Flags', ISS).groups()
    assert value[0] == RUN_VALUE
    # Inno doubles quotes inside strings; the app compares against list2cmdline([exe, "tray"]).
    exe = r"C:\Users\a b\AppData\Local\Programs\Insane AI Security\insane-desktop.exe"
    rendered = value[1].replace('""', '"').replace("{app}\\{#AppExe}", exe)
    assert rendered == subprocess.list2cmdline([exe, "tray"])


def test_upgrades_replace_the_same_installation() -> None:
    assert re.search(r"^AppId=\{\{[0-9A-F-]{36}\}$", ISS, re.M)  # fixed: an upgrade finds the old install
    assert 'Type: filesandordirs; Name: "{app}\\_internal"' in ISS
    assert '#define AppExe "insane-desktop.exe"' in ISS
