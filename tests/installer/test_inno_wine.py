"""installer/windows/insane.iss, compiled by Inno Setup's own ISCC and run under Wine.

The Windows bundle cannot be built here, so Setup is compiled over a stand-in folder of the bundle's
layout. Then, in a fresh 64-bit Wine prefix: a silent per-user install (the Run value, the installer's
answer for the app, the uninstall entry, read back with Wine's ``reg query``), Setup and Uninstall
refusing while the app's mutex exists, and a silent uninstall that leaves nothing behind, a Run value the
app wrote itself included. The setup.exe's version resource is read with pefile.

Needs ``./dev.sh inno`` (Wine with its i386 half, Xvfb, ISCC from the npm registry's innosetup package).
About a minute; most of it is Wine making its prefix.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from desktop.appmutex import mutex_names
from desktop.autostart import CHOICE_KEY, CHOICE_VALUE, RUN_KEY, RUN_VALUE
from insane.devkit import ROOT
from installer import specinfo

ISCC = Path(os.environ.get("INSANE_ISCC") or ROOT / ".cache" / "innosetup-6.4.1" / "package" / "bin" / "ISCC.exe")
UNINSTALL_KEY = r"Software\Microsoft\Windows\CurrentVersion\Uninstall\{6E2B8C1D-4F3A-4B8E-9C7D-1A2B3C4D5E6F}_is1"
VERSION = "0.1.0"
USER = pwd.getpwuid(os.getuid()).pw_name  # Wine names the Windows profile after the Unix account
INSTALLED_EXE = f"C:\\users\\{USER}\\AppData\\Local\\Programs\\Insane AI Security\\insane-desktop.exe"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("wine") is None or shutil.which("Xvfb") is None or not ISCC.is_file(),
        reason="needs Wine, Xvfb and Inno Setup's ISCC: ./dev.sh inno",
    ),
]


@dataclass
class Wine:
    env: dict[str, str]
    prefix: Path

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["wine", *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(["wine", *args], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_idle(self, timeout: float = 120) -> None:
        """Until every Windows process of the prefix has ended (an uninstaller re-runs itself from Temp)."""
        subprocess.run(["wineserver", "-w"], env=self.env, timeout=timeout, check=True)

    def reg(self, key: str, value: str | None = None) -> str | None:
        """A value's data under HKCU (or the key's listing with ``value=None``); None where it is absent."""
        args = ["reg", "query", f"HKCU\\{key}", *(["/v", value] if value else [])]
        done = self.run(*args, timeout=60)
        if done.returncode != 0:
            return None
        if value is None:
            return done.stdout
        line = next(x for x in done.stdout.splitlines() if x.strip().startswith(value))
        return line.split("REG_SZ", 1)[1].strip()

    def win(self, path: Path) -> str:
        return "Z:" + str(path).replace("/", "\\")


@pytest.fixture(scope="module")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    home = tmp_path_factory.mktemp("wine")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        display = fh.readline().strip()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "WINEPREFIX": str(home / "prefix"),
        "WINEARCH": "win64",
        "WINEDEBUG": "-all",
        "WINEDLLOVERRIDES": "mscoree,mshtml=",  # no Mono or Gecko prompts: Setup needs neither
        # Setup creates its wizard window even when silent; without a display that fails.
        "DISPLAY": f":{display}",
    }
    w = Wine(env, home / "prefix")
    try:
        assert display, "Xvfb did not start"
        subprocess.run(["wineboot", "--init"], env=env, capture_output=True, timeout=300, check=True)
        w.wait_idle(300)
        # A new prefix says Windows 7; Setup requires 10 (MinVersion), as PySide6 does.
        assert w.run("winecfg", "-v", "win10").returncode == 0
        yield w
    finally:
        subprocess.run(["wineserver", "-k"], env=env, capture_output=True, timeout=60)
        xvfb.terminate()
        try:
            xvfb.wait(10)
        except subprocess.TimeoutExpired:
            xvfb.kill()
            xvfb.wait()


@pytest.fixture(scope="module")
def setup_exe(wine: Wine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Setup compiled over a stand-in of the bundle's folder (the two executables and an _internal tree)."""
    work = tmp_path_factory.mktemp("inno")
    bundle = work / "insane-desktop"
    (bundle / "_internal" / "PySide6").mkdir(parents=True)
    for exe in specinfo.executables("win32"):
        (bundle / f"{exe.name}.exe").write_bytes(b"MZ stand-in for " + exe.name.encode())
    (bundle / "_internal" / "python311.dll").write_bytes(b"MZ stand-in")
    (bundle / "_internal" / "PySide6" / "QtCore.pyd").write_bytes(b"MZ stand-in")
    done = wine.run(
        str(ISCC),
        "/Q",
        f"/DAppVersion={VERSION}",
        f"/DSourceDir={wine.win(bundle)}",
        # Wine cannot expand {autopf} of a per-user install (see insane.iss): the same folder, spelled out.
        "/DDefaultDir={localappdata}\\Programs\\Insane AI Security",
        f"/O{wine.win(work / 'out')}",
        wine.win(ROOT / "installer" / "windows" / "insane.iss"),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (exe,) = (work / "out").glob("*.exe")
    assert exe.name == f"insane-desktop-{VERSION}-windows-x64-setup.exe"
    return exe


def app_dir(wine: Wine) -> Path:
    return wine.prefix / "drive_c" / "users" / USER / "AppData" / "Local" / "Programs" / "Insane AI Security"


def install(wine: Wine, setup_exe: Path, log: Path, *args: str) -> subprocess.CompletedProcess:
    done = wine.run(str(setup_exe), "/VERYSILENT", "/SUPPRESSMSGBOXES", "/CURRENTUSER", f"/LOG={wine.win(log)}", *args)
    wine.wait_idle()
    return done


def uninstall(wine: Wine, log: Path) -> subprocess.CompletedProcess:
    uninstaller = wine.win(app_dir(wine) / "unins000.exe")
    done = wine.run(uninstaller, "/VERYSILENT", "/SUPPRESSMSGBOXES", f"/LOG={wine.win(log)}")
    wine.wait_idle()
    return done


def hold_app_mutex(wine: Wine, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A Windows process that holds the tray app's mutexes until ``release`` appears (an Inno script too)."""
    script = tmp_path / "holder.iss"
    ready, release = tmp_path / "ready", tmp_path / "release"
    creates = "\n".join(f"  CreateMutex('{name}');" for name in mutex_names())
    script.write_text(
        "[Setup]\nAppName=holder\nAppVersion=1\nCreateAppDir=no\nUninstallable=no\nPrivilegesRequired=lowest\n"
        f"OutputDir={wine.win(tmp_path)}\nOutputBaseFilename=holder\n\n[Code]\n"
        "function InitializeSetup(): Boolean;\nbegin\n"
        f"{creates}\n"
        f"  SaveStringToFile('{wine.win(ready)}', 'held', False);\n"
        f"  while not FileExists('{wine.win(release)}') do Sleep(100);\n"
        "  Result := False;\nend;\n"
    )
    done = wine.run(str(ISCC), "/Q", wine.win(script), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    holder = wine.start(str(tmp_path / "holder.exe"), "/VERYSILENT")
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the mutex holder did not start"
        time.sleep(0.1)
    return holder, release


def test_setup_exe_carries_version_and_publisher(setup_exe: Path) -> None:
    pefile = pytest.importorskip("pefile")
    pe = pefile.PE(str(setup_exe))
    strings = {
        k.decode(): v.decode().strip()  # Inno pads the strings it fills in with spaces
        for info in pe.FileInfo[0]
        if info.Key == b"StringFileInfo"
        for table in info.StringTable
        for k, v in table.entries.items()
    }
    assert strings["CompanyName"] == "Insane AI Security"
    assert strings["ProductName"] == "Insane AI Security"
    assert strings["ProductVersion"] == VERSION
    assert strings["FileVersion"].startswith(VERSION)
    assert (pe.VS_FIXEDFILEINFO[0].FileVersionMS, pe.VS_FIXEDFILEINFO[0].FileVersionLS) == (1, 0)  # 0.1.0.0
    assert pe.OPTIONAL_HEADER.DATA_DIRECTORY[4].Size == 0  # not signed: no SIGN_CERT here


def test_silent_per_user_install_then_uninstall_leaves_nothing(wine: Wine, setup_exe: Path, tmp_path: Path) -> None:
    done = install(wine, setup_exe, tmp_path / "install.log", "/TASKS=autostart")
    assert done.returncode == 0, (tmp_path / "install.log").read_text(errors="replace")
    folder = app_dir(wine)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["_internal", "insane-desktop.exe", "insane-desktop-cli.exe", "unins000.dat", "unins000.exe"]
    )
    exe = INSTALLED_EXE
    # The value the app's own switch writes, and the answer the app takes as its setting at first start.
    assert wine.reg(RUN_KEY, RUN_VALUE) == subprocess.list2cmdline([exe, "tray"])
    assert wine.reg(CHOICE_KEY, CHOICE_VALUE) == "1"
    entry = wine.reg(UNINSTALL_KEY)
    assert entry is not None
    assert "Publisher    REG_SZ    Insane AI Security" in entry
    assert f"DisplayVersion    REG_SZ    {VERSION}" in entry
    assert "QuietUninstallString" in entry

    done = uninstall(wine, tmp_path / "uninstall.log")
    assert done.returncode == 0
    assert not folder.exists()
    assert wine.reg(RUN_KEY, RUN_VALUE) is None
    assert wine.reg(CHOICE_KEY) is None
    assert wine.reg(UNINSTALL_KEY) is None


def test_unticked_start_at_login_tells_the_app_no_and_uninstall_removes_the_apps_own_run_value(
    wine: Wine, setup_exe: Path, tmp_path: Path
) -> None:
    done = install(wine, setup_exe, tmp_path / "install.log", "/TASKS=")
    assert done.returncode == 0, (tmp_path / "install.log").read_text(errors="replace")
    assert wine.reg(RUN_KEY, RUN_VALUE) is None
    assert wine.reg(CHOICE_KEY, CHOICE_VALUE) == "0"
    # Later the user turns "Start when I log in" on in Settings: the app writes the value itself.
    exe = INSTALLED_EXE
    value = subprocess.list2cmdline([exe, "tray"])
    assert wine.run("reg", "add", f"HKCU\\{RUN_KEY}", "/v", RUN_VALUE, "/d", value, "/f").returncode == 0
    assert wine.reg(RUN_KEY, RUN_VALUE) == value

    assert uninstall(wine, tmp_path / "uninstall.log").returncode == 0
    assert wine.reg(RUN_KEY, RUN_VALUE) is None, (tmp_path / "uninstall.log").read_text(errors="replace")
    assert "Removed the Run value the app had written" in (tmp_path / "uninstall.log").read_text(errors="replace")


def test_another_installations_run_value_is_left_alone(wine: Wine, setup_exe: Path, tmp_path: Path) -> None:
    assert install(wine, setup_exe, tmp_path / "install.log", "/TASKS=").returncode == 0
    other = '"D:\\Portable\\insane-desktop.exe" tray'
    assert wine.run("reg", "add", f"HKCU\\{RUN_KEY}", "/v", RUN_VALUE, "/d", other, "/f").returncode == 0
    assert uninstall(wine, tmp_path / "uninstall.log").returncode == 0
    assert wine.reg(RUN_KEY, RUN_VALUE) == other
    assert wine.run("reg", "delete", f"HKCU\\{RUN_KEY}", "/v", RUN_VALUE, "/f").returncode == 0


def test_setup_and_uninstall_wait_for_the_running_app(wine: Wine, setup_exe: Path, tmp_path: Path) -> None:
    assert install(wine, setup_exe, tmp_path / "first.log").returncode == 0
    marker = app_dir(wine) / "_internal" / "python311.dll"
    holder, release = hold_app_mutex(wine, tmp_path)
    try:
        # Silent with message boxes suppressed, the answer to "close the app first" is Cancel.
        upgrade = wine.run(
            str(setup_exe), "/VERYSILENT", "/SUPPRESSMSGBOXES", "/CURRENTUSER", f"/LOG={wine.win(tmp_path / 'up.log')}"
        )
        assert upgrade.returncode != 0
        assert "is currently running" in (tmp_path / "up.log").read_text(errors="replace")
        assert marker.exists()
        removal = wine.run(
            wine.win(app_dir(wine) / "unins000.exe"),
            "/VERYSILENT",
            "/SUPPRESSMSGBOXES",
            f"/LOG={wine.win(tmp_path / 'un.log')}",
        )
        # The uninstaller re-runs itself from Temp: wait for that run's log to close (wineserver -w would
        # also wait for the holder).
        log = tmp_path / "un.log"
        deadline = time.monotonic() + 60
        while "Log closed" not in (log.read_text(errors="replace") if log.exists() else ""):
            assert time.monotonic() < deadline, removal.stdout
            time.sleep(0.2)
        assert "is currently running" in log.read_text(errors="replace")
        assert marker.exists()
    finally:
        release.write_text("go")
        holder.wait(60)
    wine.wait_idle()
    assert uninstall(wine, tmp_path / "uninstall.log").returncode == 0
    assert not app_dir(wine).exists()
