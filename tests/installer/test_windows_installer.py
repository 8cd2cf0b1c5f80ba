"""installer/windows/insane.iss and build.ps1, read against the app's code and the README.

The script is also compiled and run under Wine (test_inno_wine.py); these checks need neither.
"""

from __future__ import annotations

import re
import subprocess

from desktop import autostart
from insane.devkit import ROOT

ISS = (ROOT / "installer" / "windows" / "insane.iss").read_text()
PS1 = (ROOT / "installer" / "windows" / "build.ps1").read_text()
README = (ROOT / "README.md").read_text()


def define(name: str) -> str:
    (value,) = re.findall(rf'^#define {name} "(.*)"$', ISS, re.M)
    return value


def test_the_registry_names_are_the_apps() -> None:
    assert define("RunKey") == autostart.RUN_KEY
    assert define("RunValue") == autostart.RUN_VALUE
    assert define("ChoiceKey") == autostart.CHOICE_KEY
    assert define("ChoiceValue") == autostart.CHOICE_VALUE


def test_autostart_value_is_the_one_the_app_manages() -> None:
    (data,) = re.findall(r'ValueName: "\{#RunValue\}"; ValueData: "(.*?)"; Flags', ISS)
    # Inno doubles quotes inside strings; the app compares against list2cmdline([exe, "tray"]).
    exe = r"C:\Users\a b\AppData\Local\Programs\Insane AI Security\insane-desktop.exe"
    rendered = data.replace('""', '"').replace("{app}\\{#AppExe}", exe)
    assert rendered == subprocess.list2cmdline([exe, "tray"])


def test_start_at_login_is_offered_and_written_only_for_a_per_user_install() -> None:
    task = next(line for line in ISS.splitlines() if line.startswith('Name: "autostart"'))
    assert "Check: not IsAdminInstallMode" in task
    for line in ISS.splitlines():
        if line.startswith("Root: HKCU"):
            assert "Check: not IsAdminInstallMode" in line, line


def test_upgrades_replace_the_same_installation() -> None:
    assert re.search(r"^AppId=\{\{[0-9A-F-]{36}\}$", ISS, re.M)  # fixed: an upgrade finds the old install
    guid = re.search(r"^AppId=\{\{([0-9A-F-]{36})\}$", ISS, re.M).group(1)
    assert define("UninstallKey") == f"{{{guid}}}_is1"
    assert 'Type: filesandordirs; Name: "{app}\\_internal"' in ISS
    assert '#define AppExe "insane-desktop.exe"' in ISS


def test_the_readme_section_the_uninstaller_points_at_exists() -> None:
    (message,) = re.findall(r"^UninstalledAll=(.*)$", ISS, re.M)
    (section,) = re.findall(r'README\'s "([^"]+)" section', message)
    assert re.search(rf"^#+ {re.escape(section)}$", README, re.M), section


def test_build_ps1_requires_what_the_script_needs() -> None:
    # x64compatible is Inno Setup 6.3's; build.ps1 refuses an older ISCC rather than fail obscurely.
    assert "ArchitecturesAllowed=x64compatible" in ISS
    assert re.search(r"\[version\]\"6\.3\"", PS1)
    # Native commands' exit codes: $ErrorActionPreference does not cover them.
    assert "$LASTEXITCODE" in PS1
    assert "-ExecutionPolicy Bypass" in PS1 and "-ExecutionPolicy Bypass" in README
    # The self-test runs from the console companion, with a time limit.
    assert "insane-desktop-cli.exe" in PS1 and "WaitForExit(" in PS1
