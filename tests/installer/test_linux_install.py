"""installer/linux/install.sh and the .desktop entry: per-user install, upgrade and uninstall of the bundle."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from insane.devkit import ROOT

LINUX = ROOT / "installer" / "linux"


def fake_unpacked_archive(folder: Path, marker: str) -> Path:
    """The archive's layout, with a shell script standing in for the frozen executable."""
    folder.mkdir(parents=True)
    exe = folder / "insane-desktop"
    exe.write_text(f"#!/bin/sh\necho {marker}\n")
    exe.chmod(0o755)
    (folder / "_internal").mkdir()
    (folder / "_internal" / marker).write_text("x")
    for size in ("48x48", "256x256"):
        icons = folder / "icons" / "hicolor" / size / "apps"
        icons.mkdir(parents=True)
        (icons / "insane-desktop.png").write_bytes(b"\x89PNG")
    shutil.copy(LINUX / "install.sh", folder)
    shutil.copy(LINUX / "insane-desktop.desktop", folder)
    return folder


def run_install(folder: Path, prefix: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(prefix.parent), "PREFIX": str(prefix)}
    return subprocess.run(
        ["bash", str(folder / "install.sh"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_install_upgrade_and_uninstall(tmp_path: Path) -> None:
    prefix = tmp_path / "local"
    old = fake_unpacked_archive(tmp_path / "v1", "v1-only")
    assert run_install(old, prefix).returncode == 0
    app = prefix / "opt" / "insane-desktop"
    launcher = prefix / "bin" / "insane-desktop"
    assert subprocess.run([str(launcher)], capture_output=True, text=True).stdout.strip() == "v1-only"
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(prefix / "share" / "applications" / "insane-desktop.desktop")
    assert entry["Desktop Entry"]["Exec"] == f"{app}/insane-desktop"
    assert (prefix / "share" / "icons" / "hicolor" / "256x256" / "apps" / "insane-desktop.png").is_file()

    new = fake_unpacked_archive(tmp_path / "v2", "v2-only")
    assert run_install(new, prefix).returncode == 0
    assert subprocess.run([str(launcher)], capture_output=True, text=True).stdout.strip() == "v2-only"
    assert not (app / "_internal" / "v1-only").exists()  # an upgrade leaves no file of the old version

    done = run_install(new, prefix, "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not app.exists() and not launcher.exists()
    assert not (prefix / "share" / "applications" / "insane-desktop.desktop").exists()


def test_desktop_entry_is_valid() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(LINUX / "insane-desktop.desktop")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application" and section["Icon"] == "insane-desktop"
    assert section["Exec"] == "insane-desktop" and section["Terminal"] == "false"
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("no desktop-file-validate here (Debian: apt-get install desktop-file-utils)")
    done = subprocess.run([tool, str(LINUX / "insane-desktop.desktop")], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout
