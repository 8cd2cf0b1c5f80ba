"""installer/specinfo.py: the bundle's platform choices, and what PyInstaller's own code makes of them.

The .app's Info.plist is written by PyInstaller's real BUNDLE (building/osx.py), told it runs on macOS:
it is plain Python until it signs, which fails here with a warning. That is where console=True turns
into LSBackgroundOnly, the key that keeps the app from showing any window.
"""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from insane.devkit import ROOT
from installer import specinfo


def test_macos_builds_a_windowed_executable() -> None:
    assert specinfo.executables("darwin") == [specinfo.Executable("insane-desktop", console=False)]


def test_windows_ships_a_console_companion_beside_the_windowed_app() -> None:
    assert specinfo.executables("win32") == [
        specinfo.Executable("insane-desktop", console=False),
        specinfo.Executable("insane-desktop-cli", console=True),
    ]


def test_linux_keeps_one_console_executable() -> None:
    assert specinfo.executables("linux") == [specinfo.Executable("insane-desktop", console=True)]


def test_the_version_is_the_projects() -> None:
    import tomllib

    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert specinfo.project_version() == expected != "0.0.0"


@pytest.mark.parametrize(
    ("version", "numbers"),
    [("0.1.0", (0, 1, 0, 0)), ("1.2", (1, 2, 0, 0)), ("2.0.1rc1", (2, 0, 1, 0)), ("1.2.3.4", (1, 2, 3, 4))],
)
def test_windows_version_numbers(version: str, numbers: tuple[int, ...]) -> None:
    assert specinfo.version_tuple(version) == numbers


@pytest.mark.parametrize("version", ["v1.0", "", "70000.1"])
def test_a_version_windows_cannot_hold_is_refused(version: str) -> None:
    with pytest.raises(ValueError, match="version"):
        specinfo.version_tuple(version)


def test_info_plist_keys() -> None:
    plist = specinfo.info_plist("0.1.0")
    assert "LSBackgroundOnly" not in plist
    assert plist["LSUIElement"] is True
    assert plist["LSMinimumSystemVersion"] == "14.0"
    assert plist["CFBundleShortVersionString"] == plist["CFBundleVersion"] == "0.1.0"


def test_check_info_plist_names_each_problem() -> None:
    bad = {"LSBackgroundOnly": True, "CFBundleShortVersionString": "0.0.0", "CFBundleIdentifier": "x"}
    problems = specinfo.check_info_plist(bad, "0.1.0")
    assert problems == [
        "Info.plist has LSBackgroundOnly: the app could not show Settings or the dashboard",
        "Info.plist lacks LSUIElement: the menu-bar app would show a Dock icon",
        "Info.plist's LSMinimumSystemVersion is None, not '14.0'",
        "Info.plist's CFBundleShortVersionString is '0.0.0', not '0.1.0'",
        "Info.plist's CFBundleVersion is None, not '0.1.0'",
        "Info.plist's CFBundleIdentifier is 'x', not 'ai.insane.desktop'",
    ]


def build_app_plist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: bool, info: dict) -> dict:
    """Info.plist as PyInstaller 6's BUNDLE writes it for an executable built with ``console``."""
    pytest.importorskip("PyInstaller")
    from PyInstaller import config
    from PyInstaller.building import osx
    from PyInstaller.building.api import EXE

    work, dist = tmp_path / "work", tmp_path / "dist"
    work.mkdir()
    dist.mkdir()
    for key, value in {"workpath": work, "distpath": dist, "specpath": tmp_path, "spec": tmp_path / "x.spec"}.items():
        monkeypatch.setitem(config.CONF, key, str(value))
    monkeypatch.setitem(config.CONF, "specnm", "x")
    monkeypatch.setattr(osx, "is_darwin", True)
    (work / "insane-desktop").write_text("the bootloader")
    (tmp_path / "insane.icns").write_bytes(b"icns")
    exe = EXE.__new__(EXE)  # what BUNDLE reads of an EXE, without building one
    exe.__dict__.update(
        name=str(work / "insane-desktop"),
        dependencies=[],
        exclude_binaries=True,
        strip=False,
        upx=False,
        upx_exclude=[],
        console=console,
        target_arch=None,
        codesign_identity=None,
        entitlements_file=None,
    )
    osx.BUNDLE(
        exe,
        name=specinfo.BUNDLE_NAME,
        icon=str(tmp_path / "insane.icns"),
        bundle_identifier=specinfo.BUNDLE_ID,
        version="0.1.0",
        info_plist=info,
    )
    return plistlib.loads((dist / specinfo.BUNDLE_NAME / "Contents" / "Info.plist").read_bytes())


def test_a_console_executable_made_pyinstaller_write_lsbackgroundonly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old spec: console=True on macOS, LSUIElement in info_plist. LSBackgroundOnly wins, and the check sees it.
    plist = build_app_plist(tmp_path, monkeypatch, True, {"LSUIElement": True, "NSHighResolutionCapable": True})
    assert plist["LSBackgroundOnly"] is True
    assert specinfo.check_info_plist(plist, "0.1.0")[0].startswith("Info.plist has LSBackgroundOnly")


def test_the_specs_choices_give_an_app_that_can_show_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (choice,) = specinfo.executables("darwin")
    plist = build_app_plist(tmp_path, monkeypatch, choice.console, specinfo.info_plist("0.1.0"))
    assert "LSBackgroundOnly" not in plist
    assert specinfo.check_info_plist(plist, "0.1.0") == []
    assert plist["CFBundleExecutable"] == "insane-desktop"


def test_windows_version_resource_parses_as_pyinstaller_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pefile")
    pytest.importorskip("PyInstaller")
    from PyInstaller import compat

    # versioninfo imports win32api for writing into an .exe, which only a Windows build does; reading needs none.
    monkeypatch.setattr(compat, "win32api", None, raising=False)
    from PyInstaller.utils.win32 import versioninfo

    info = specinfo.windows_version_info("0.1.0", "insane-desktop-cli")
    # EXE(version=...) takes the object, or its text form from a file: both must read back the same.
    text = tmp_path / "version.txt"
    text.write_text(str(info), encoding="utf-8")
    again = versioninfo.load_version_info_from_text_file(str(text))
    assert again.ffi.fileVersionMS == (0 << 16) | 1 and again.ffi.fileVersionLS == 0
    strings = {s.name: s.val for s in again.kids[0].kids[0].kids}
    assert strings["CompanyName"] == "Insane AI Security"
    assert strings["ProductVersion"] == strings["FileVersion"] == "0.1.0"
    assert strings["OriginalFilename"] == "insane-desktop-cli.exe"
    assert len(info.toRaw()) > 200  # serialises into the resource PyInstaller embeds


def test_the_spec_takes_its_platform_choices_from_specinfo() -> None:
    spec = (ROOT / "pyinstaller.spec").read_text()
    assert "specinfo.executables(sys.platform)" in spec
    assert "console=choice.console" in spec
    assert "info_plist=specinfo.info_plist(VERSION)" in spec
    assert "specinfo.check_info_plist(" in spec
    assert "version=VERSION" in spec and "specinfo.windows_version_info(VERSION" in spec
