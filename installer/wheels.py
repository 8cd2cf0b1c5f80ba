"""Every desktop bundle target has a wheel for every pinned package, checked from Linux without installing.

    python installer/wheels.py                       # all targets; exit 1 and one line per problem
    python installer/wheels.py --target windows-x64-cuda --target macos-arm64

For each target (platform and flavour) pip resolves the desktop extra and PyInstaller with the pins of
installer/linux/constraints.txt as if installing there (``pip install --dry-run --report -
--only-binary=:all: --python-version 3.11 --platform ...``), and the check fails when pip finds no wheel,
when a package that would be installed is not pinned, or when a macOS wheel needs a newer macOS than
the .app declares (installer/specinfo.py: LSMinimumSystemVersion).

pip evaluates environment markers for the machine it runs on, not for ``--platform``: a dependency that
only Windows needs (keyring's pywin32-ctypes) is left out, one that only Linux needs is put in. So the
report's dependency metadata is walked again with the target's markers; what the target needs and pip
left out is added as a requirement and resolved again.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "installer"))
import specinfo  # noqa: E402

CONSTRAINTS = ROOT / "installer" / "linux" / "constraints.txt"
PYTHON = "3.11"
BUILD_TOOLS = ("pyinstaller>=6.10,<7",)
RUNTIMES = {"cpu": "onnxruntime", "gpu": "onnxruntime-gpu", "directml": "onnxruntime-directml"}


@dataclass(frozen=True)
class Target:
    name: str
    platforms: tuple[str, ...]  # pip --platform values
    markers: dict[str, str]  # environment markers on that platform
    runtime: str  # the onnxruntime package of the flavour


def _markers(sys_platform: str, system: str, os_name: str, machine: str) -> dict[str, str]:
    env = dict(default_environment())
    env.update(
        sys_platform=sys_platform,
        platform_system=system,
        os_name=os_name,
        platform_machine=machine,
        python_version=PYTHON,
        python_full_version=f"{PYTHON}.9",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        platform_release="",
        platform_version="",
    )
    return env


# glibc 2.34 (PySide6 6.12's manylinux_2_34): Debian 12, Ubuntu 22.04, Fedora 35 and later. pip takes
# each tag as given, so the older ones other wheels carry are listed too.
LINUX = (*(f"manylinux_2_{v}_x86_64" for v in (34, 28, 27, 17)), "manylinux2014_x86_64")
WINDOWS = ("win_amd64",)
MACOS = (f"macosx_{specinfo.MACOS_MINIMUM.replace('.', '_')}_arm64",)
TARGETS = {
    t.name: t
    for t in (
        Target("linux-x86_64", LINUX, _markers("linux", "Linux", "posix", "x86_64"), RUNTIMES["cpu"]),
        Target("linux-x86_64-gpu", LINUX, _markers("linux", "Linux", "posix", "x86_64"), RUNTIMES["gpu"]),
        Target("windows-x64", WINDOWS, _markers("win32", "Windows", "nt", "AMD64"), RUNTIMES["cpu"]),
        Target("windows-x64-gpu", WINDOWS, _markers("win32", "Windows", "nt", "AMD64"), RUNTIMES["directml"]),
        Target("windows-x64-cuda", WINDOWS, _markers("win32", "Windows", "nt", "AMD64"), RUNTIMES["gpu"]),
        # Apple silicon only: onnxruntime's last x86_64 macOS wheel is 1.23, far behind the pinned one.
        Target("macos-arm64", MACOS, _markers("darwin", "Darwin", "posix", "arm64"), RUNTIMES["cpu"]),
    )
}


@dataclass
class Result:
    target: Target
    wheels: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (version, file name)
    problems: list[str] = field(default_factory=list)
    macos_minimum: str | None = None


def desktop_requirements(runtime: str) -> list[str]:
    """The project's own dependencies and its desktop extra, with the flavour's onnxruntime."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["desktop"], *BUILD_TOOLS]
    return [runtime if canonicalize_name(Requirement(r).name) == "onnxruntime" else r for r in reqs]


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def pip_report(target: Target, requirements: list[str], constraints: Path, pip_args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-"]
    cmd += ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"]
    for platform in target.platforms:
        cmd += ["--platform", platform]
    cmd += ["--disable-pip-version-check", "-c", str(constraints), *pip_args, *requirements]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        lines = [x for x in done.stderr.splitlines() if x.startswith("ERROR")] or done.stderr.splitlines()[-3:]
        raise LookupError(" / ".join(lines))
    return json.loads(done.stdout)


def needed_on_target(report: dict[str, Any], roots: list[str], markers: dict[str, str]) -> tuple[set[str], set[str]]:
    """(names the target installs that the report has, names it needs that pip left out)."""
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    have, missing = set(), set()
    queue = [Requirement(r) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req = queue.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        item = items.get(name)
        if item is None:
            missing.add(str(req).split(";")[0])
            continue
        have.add(name)
        for text in item["metadata"].get("requires_dist", []):
            dep = Requirement(text)
            extras = req.extras or {""}
            if dep.marker is None or any(dep.marker.evaluate({**markers, "extra": e}) for e in extras):
                queue.append(dep)
    return have, missing


def check(
    target: Target,
    constraints: Path = CONSTRAINTS,
    pip_args: list[str] | None = None,
    requirements: list[str] | None = None,
) -> Result:
    """What ``target`` would install (default: the desktop extra and PyInstaller), and its problems."""
    result = Result(target)
    pins = read_pins(constraints)
    roots = requirements or desktop_requirements(target.runtime)
    extra: list[str] = []
    for _ in range(5):  # each round adds what the target's markers need and pip left out
        try:
            report = pip_report(target, roots + extra, constraints, pip_args or [])
        except LookupError as exc:
            why = f"{target.name}: no installable set of wheels: {exc}"
            if any(p.startswith("macosx_") for p in target.platforms):
                why += (
                    f" (wheels for a macOS newer than {specinfo.MACOS_MINIMUM}, the app's LSMinimumSystemVersion,"
                    " do not count)"
                )
            result.problems.append(why)
            return result
        have, missing = needed_on_target(report, roots + extra, target.markers)
        if not missing:
            break
        extra += sorted(missing)
    else:
        result.problems.append(f"{target.name}: dependencies still missing after 5 rounds: {sorted(missing)}")
        return result
    for item in report["install"]:
        name = canonicalize_name(item["metadata"]["name"])
        if name not in have:
            continue  # pip took it for this machine's markers; the target does not install it
        version = item["metadata"]["version"]
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        result.wheels[name] = (version, filename)
        if name not in pins:
            result.problems.append(f"{target.name}: {name} {version} is not pinned in {constraints.name}")
    result.macos_minimum = macos_minimum(f for _v, f in result.wheels.values())
    if result.macos_minimum and _vt(result.macos_minimum) > _vt(specinfo.MACOS_MINIMUM):
        needs = [n for n, (_v, f) in result.wheels.items() if macos_of(f) == result.macos_minimum]
        result.problems.append(
            f"{target.name}: {', '.join(needs)} need macOS {result.macos_minimum}, but the app declares "
            f"LSMinimumSystemVersion {specinfo.MACOS_MINIMUM} (installer/specinfo.py)"
        )
    return result


def macos_of(filename: str) -> str | None:
    """The oldest macOS a wheel runs on, from its platform tag (``macosx_14_0_arm64`` → ``14.0``)."""
    found = re.findall(r"macosx_(\d+)_(\d+)_", filename)
    return ".".join(min(found, key=lambda t: (int(t[0]), int(t[1])))) if found else None


def macos_minimum(filenames: Any) -> str | None:
    versions = [v for v in map(macos_of, filenames) if v]
    return max(versions, key=_vt) if versions else None


def _vt(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: all")
    parser.add_argument("--constraints", type=Path, default=CONSTRAINTS)
    parser.add_argument("--pip-arg", action="append", default=[], help="passed to pip (e.g. --no-index)")
    args = parser.parse_args(argv)
    problems = []
    for name in args.target or list(TARGETS):
        result = check(TARGETS[name], args.constraints, args.pip_arg)
        runtime = canonicalize_name(result.target.runtime)
        got = result.wheels.get(runtime)
        line = f"wheels: {name}: {len(result.wheels)} packages"
        if got:
            line += f", {got[1]}"
        if result.macos_minimum:
            line += f", needs macOS {result.macos_minimum}"
        print(line)
        problems += result.problems
    for problem in problems:
        print(f"wheels: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
