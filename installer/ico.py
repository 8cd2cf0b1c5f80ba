"""The Windows icon (.ico) of the executables and of Setup, with the sizes Windows asks for.

    python installer/ico.py build/insane.ico        # draws the app's icon (desktop/icons.py) at ICO_SIZES

Qt writes an .ico with one image, so Windows scaled the 256 px drawing down to 16 px in the taskbar and
the tray, blurred. Here each size is drawn at that size, and stored as PNG (ICO entries may be PNG since
Windows Vista). :func:`ico_bytes` is the format alone (standard library only).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Mapping
from pathlib import Path

# What Explorer, the taskbar, the tray and Alt+Tab pick from, at 100% to 250% scaling.
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ico_bytes(pngs: Mapping[int, bytes]) -> bytes:
    """An .ico holding one PNG per size (``{size: png bytes}``), smallest first."""
    if not pngs:
        raise ValueError("an icon needs at least one image")
    sizes = sorted(pngs)
    for size in sizes:
        if not 1 <= size <= 256:
            raise ValueError(f"an .ico image is 1 to 256 px, not {size}")
        if not pngs[size].startswith(PNG_MAGIC):
            raise ValueError(f"the {size} px image is not a PNG")
    header = struct.pack("<HHH", 0, 1, len(sizes))  # reserved, type 1 = icon, count
    offset = len(header) + 16 * len(sizes)
    entries, images = b"", b""
    for size in sizes:
        data = pngs[size]
        side = size % 256  # 0 means 256
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset + len(images))
        images += data
    return header + entries + images


def draw_pngs(sizes: tuple[int, ...] = ICO_SIZES) -> dict[int, bytes]:
    """The app's icon (the "running" lens) drawn at each size, as PNG bytes (needs PySide6)."""
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QGuiApplication

    from desktop.icons import draw_icon

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    out = {}
    for size in sizes:
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not draw_icon("running", size).save(buffer, "PNG"):
            raise RuntimeError(f"could not draw the {size} px icon")
        out[size] = bytes(buffer.data().data())
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python installer/ico.py OUT.ico", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(ico_bytes(draw_pngs()))
    print(f"ico: {out} with {', '.join(map(str, ICO_SIZES))} px")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's desktop/
    sys.exit(main())
