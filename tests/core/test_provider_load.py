"""core/detect/providers.py: a GPU provider whose NVIDIA libraries are missing is named, with the reason.

The provider libraries here are real shared objects built with cc, loaded with the real dynamic loader:
one that links a library which is then removed (what a CUDA build on a PC without CUDA looks like), one
that loads.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from core.detect import providers

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the libraries")


def build_library(folder: Path, name: str, needs: str | None = None) -> Path:
    source = folder / f"{name}.c"
    source.write_text("int provider_entry(void) { return 1; }\n")
    args = ["cc", "-shared", "-fPIC", "-o", str(folder / f"lib{name}.so"), str(source)]
    if needs:
        args += [f"-L{folder}", "-Wl,--no-as-needed", f"-l{needs}"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    return folder / f"lib{name}.so"


@pytest.fixture
def capi(tmp_path: Path) -> Path:
    build_library(tmp_path, "cudart_stand_in")
    build_library(tmp_path, "onnxruntime_providers_cuda", needs="cudart_stand_in")
    (tmp_path / "libcudart_stand_in.so").unlink()  # the CUDA runtime is not on this PC
    build_library(tmp_path, "onnxruntime_providers_tensorrt")
    (tmp_path / "build_and_package_info.py").write_text(
        "package_name = 'onnxruntime-gpu'\n__version__ = '1.26.0'\ncuda_version = '12.8'\n"
    )
    return tmp_path


def test_a_provider_whose_cuda_libraries_are_missing_says_which_and_what_it_needs(capi: Path) -> None:
    why = providers.load_problem("CUDAExecutionProvider", capi)
    assert why is not None
    assert why.startswith("CUDA cannot load: ")
    assert "libcudart_stand_in.so: cannot open shared object file" in why
    needs = "(onnxruntime-gpu 1.26.0 needs the CUDA 12 runtime and cuDNN 9 for CUDA 12; running on the CPU)"
    assert why.endswith(needs)


def test_a_provider_library_that_loads_has_no_problem(capi: Path) -> None:
    assert providers.load_problem("TensorrtExecutionProvider", capi) is None


def test_providers_built_into_onnxruntime_have_no_library_to_check(capi: Path) -> None:
    assert providers.load_problem("CPUExecutionProvider", capi) is None
    assert providers.load_problem("DmlExecutionProvider", capi) is None
    assert providers.load_problem("CoreMLExecutionProvider", capi) is None


def test_a_provider_library_missing_from_the_package_is_named(tmp_path: Path) -> None:
    why = providers.load_problem("CUDAExecutionProvider", tmp_path)
    assert why == "CUDAExecutionProvider is not in this onnxruntime (libonnxruntime_providers_cuda.so is missing)"


def test_the_cpu_build_offers_the_cpu_and_reports_nothing_it_cannot_load() -> None:
    # The test install's onnxruntime is the CPU build: nothing to load, nothing to report.
    assert "CPUExecutionProvider" in providers.available()
    assert providers.load_problems() == {}
