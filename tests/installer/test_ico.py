"""installer/ico.py: the Windows icon holds every size Windows asks for, each drawn at that size."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from insane.devkit import ROOT
from installer.ico import ICO_SIZES, ico_bytes


def test_the_icon_holds_every_size_windows_asks_for(tmp_path: Path) -> None:
    out = tmp_path / "insane.ico"
    done = subprocess.run(
        [sys.executable, str(ROOT / "installer" / "ico.py"), str(out)],
        env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(out) as ico:
        assert ico.format == "ICO"
        assert sorted(ico.info["sizes"]) == [(s, s) for s in ICO_SIZES]
        for size in (16, 24, 32, 48, 256):
            ico.size = (size, size)
            image = ico.copy()
            ico.load()
            assert image.size == (size, size)
            rgba = image.convert("RGBA")
            assert rgba.getpixel((0, 0))[3] == 0  # the rounded corner is transparent
            assert rgba.getpixel((size // 2, size // 2))[3] == 255  # the lens is drawn


def test_format_of_the_entries() -> None:
    png = io.BytesIO()
    Image.new("RGBA", (16, 16), (255, 0, 0, 255)).save(png, "PNG")
    big = io.BytesIO()
    Image.new("RGBA", (256, 256), (0, 0, 255, 255)).save(big, "PNG")
    data = ico_bytes({256: big.getvalue(), 16: png.getvalue()})
    assert data[:6] == b"\x00\x00\x01\x00\x02\x00"
    assert data[6] == 16 and data[22] == 0  # 256 is written as 0
    with Image.open(io.BytesIO(data)) as ico:
        assert sorted(ico.info["sizes"]) == [(16, 16), (256, 256)]


@pytest.mark.parametrize(
    ("pngs", "message"),
    [({}, "at least one"), ({512: b"\x89PNG\r\n\x1a\n"}, "1 to 256 px"), ({16: b"BM"}, "not a PNG")],
)
def test_bad_images_are_refused(pngs: dict[int, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ico_bytes(pngs)
