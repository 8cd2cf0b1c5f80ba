"""installer/wheels.py against pip itself, offline: a folder of small wheels stands in for the registry.

The real targets are checked against the registry by .ci/run (the same script, without --no-index).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from installer import wheels

MACOS = wheels.TARGETS["macos-arm64"]
WINDOWS = wheels.TARGETS["windows-x64"]
LINUX = wheels.TARGETS["linux-x86_64"]


def make_wheel(folder: Path, name: str, version: str, tag: str, requires: tuple[str, ...] = ()) -> None:
    dist = f"{name}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"{dist}-{tag}.whl", "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
        whl.writestr(f"{dist}.dist-info/METADATA", metadata)
        whl.writestr(
            f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
        )
        whl.writestr(f"{dist}.dist-info/RECORD", "")


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(
        folder,
        "alpha",
        "1.0",
        "py3-none-any",
        ('beta; sys_platform == "win32"', 'gamma; sys_platform == "linux"', 'delta; sys_platform == "darwin"'),
    )
    make_wheel(folder, "beta", "2.0", "py3-none-win_amd64")  # Windows only
    make_wheel(folder, "gamma", "1.0", "py3-none-any")
    make_wheel(folder, "delta", "1.0", "cp311-cp311-macosx_15_0_arm64")  # newer than the app's macOS 14
    make_wheel(folder, "delta", "0.9", "cp311-cp311-macosx_13_0_arm64")
    make_wheel(folder, "epsilon", "1.0", "cp311-cp311-win_amd64")  # no Linux or macOS wheel
    make_wheel(folder, "loose", "3.0", "py3-none-any")
    return folder


def run(index: Path, target: wheels.Target, pins: str, requirements: list[str]) -> wheels.Result:
    constraints = index.parent / "constraints.txt"
    constraints.write_text(pins)
    return wheels.check(target, constraints, ["--no-index", "--find-links", str(index)], requirements)


def test_a_dependency_only_the_target_needs_is_resolved_and_one_it_does_not_is_left_out(index: Path) -> None:
    # pip on Linux reads `beta; sys_platform == "win32"` as not needed, and gamma as needed: both wrong for Windows.
    result = run(index, WINDOWS, "alpha==1.0\nbeta==2.0\ngamma==1.0\n", ["alpha"])
    assert result.problems == []
    assert {name: v for name, (v, _f) in result.wheels.items()} == {"alpha": "1.0", "beta": "2.0"}
    assert result.wheels["beta"][1] == "beta-2.0-py3-none-win_amd64.whl"


def test_a_pin_without_a_wheel_for_the_target_fails(index: Path) -> None:
    result = run(index, LINUX, "alpha==1.0\ngamma==1.0\nepsilon==1.0\n", ["alpha", "epsilon"])
    assert len(result.problems) == 1
    assert result.problems[0].startswith("linux-x86_64: no installable set of wheels: ERROR:")
    assert "epsilon" in result.problems[0]


def test_a_package_installed_without_a_pin_fails(index: Path) -> None:
    result = run(index, WINDOWS, "alpha==1.0\nbeta==2.0\n", ["alpha", "loose"])
    assert result.problems == ["windows-x64: loose 3.0 is not pinned in constraints.txt"]


def test_a_macos_wheel_newer_than_the_apps_minimum_fails(index: Path) -> None:
    result = run(index, MACOS, "alpha==1.0\ndelta==1.0\n", ["alpha"])
    (problem,) = result.problems
    assert problem.startswith("macos-arm64: no installable set of wheels:") and "delta" in problem
    assert problem.endswith("(wheels for a macOS newer than 14.0, the app's LSMinimumSystemVersion, do not count)")
    older = run(index, MACOS, "alpha==1.0\ndelta==0.9\n", ["alpha"])
    assert older.problems == [] and older.macos_minimum == "13.0"


def test_a_target_allowing_newer_macos_than_the_app_declares_fails(index: Path) -> None:
    newer = wheels.Target("macos-15", ("macosx_15_0_arm64",), MACOS.markers, "onnxruntime")
    result = run(index, newer, "alpha==1.0\ndelta==1.0\n", ["alpha"])
    assert result.macos_minimum == "15.0"
    assert result.problems == [
        "macos-15: delta need macOS 15.0, but the app declares LSMinimumSystemVersion 14.0 (installer/specinfo.py)"
    ]


@pytest.mark.parametrize(
    ("filename", "version"),
    [
        ("numpy-2.4.6-cp311-cp311-macosx_14_0_arm64.whl", "14.0"),
        ("protobuf-7.36.2-cp310-abi3-macosx_10_9_universal2.whl", "10.9"),
        ("onnxruntime-1.32.0-cp311-cp311-win_amd64.whl", None),
    ],
)
def test_macos_version_of_a_wheel(filename: str, version: str | None) -> None:
    assert wheels.macos_of(filename) == version


def test_every_target_pins_its_onnxruntime_and_the_cuda_flavour_is_built_for_cuda_12() -> None:
    pins = wheels.read_pins(wheels.CONSTRAINTS)
    for target in wheels.TARGETS.values():
        assert target.runtime in pins, target.name
    assert pins["onnxruntime-gpu"] == "1.26.0"  # the last built for CUDA 12; README says so
