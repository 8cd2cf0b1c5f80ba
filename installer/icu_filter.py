"""Rebuild Qt's ICU data library with the data an English-only app uses: 32 MB down to about 4 MB.

    python installer/icu_filter.py PySide6/Qt/lib/libicudata.so.73 build/icu/libicudata.so.73

ICU keeps its data in one library, a "common data" package: a table of named items (locale bundles,
collation, break rules, converters, time zones). Qt's Core links ICU for locale-aware case mapping,
collation, time-zone names and legacy text codecs. The tray app is English only, like its Qt
translations, so this keeps the root and English locale data of every kind, every non-locale item
(Unicode properties, normalisation, time-zone rules, likely subtags, plural rules, ...) and drops the
other languages' bundles, the codepage converters (Qt itself does UTF-8, UTF-16 and Latin-1), the
transliterators and the dictionary-based word breakers for Thai, Khmer, Lao, Burmese and CJK. This is
ICU's documented way to slim its data (its data build tool's locale and feature filters), applied to the
built package.

Linux only (ELF), standard library only, and a C compiler driver (``cc``) to assemble the new library.
A locale that is not kept falls back to ICU's root data, as ICU does for any locale it lacks.
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

# A locale bundle's file name: language, then optional script / region / variant parts.
_LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]*)*\.res$")
_DROPPED_TREES = {"translit"}
_DROPPED_SUFFIXES = (".cnv", ".dict")


def keep(name: str) -> bool:
    """Whether an item such as ``icudt73l/coll/de.res`` stays."""
    parts = name.split("/")[1:]
    base = parts[-1]
    if (len(parts) > 1 and parts[0] in _DROPPED_TREES) or base.endswith(_DROPPED_SUFFIXES):
        return False
    if base == "res_index.res":  # each tree's list of its locales, not a locale
        return True
    if base == "root.res" or _LOCALE.match(base):
        stem = base.removesuffix(".res")
        return stem in ("root", "en") or stem.startswith("en_")
    return True


def _symbol(elf: bytes, pattern: re.Pattern[bytes]) -> tuple[bytes, int, int]:
    """(name, file offset, size) of the first dynamic symbol matching ``pattern`` in an ELF64 LE file."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    dynsym = next(s for s in sections if s[1] == 11)  # SHT_DYNSYM
    strtab = sections[dynsym[6]]
    for off in range(dynsym[4], dynsym[4] + dynsym[5], dynsym[9]):
        st_name, _info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", elf, off)
        start = strtab[4] + st_name
        name = elf[start : elf.index(b"\0", start)]
        if pattern.fullmatch(name) and 0 < shndx < shnum:
            sect = sections[shndx]
            return name, sect[4] + (value - sect[3]), size
    raise ValueError("no ICU data symbol (icudtNN_dat) in this library")


def filter_package(data: bytes) -> tuple[bytes, int, int]:
    """(new package, items kept, items in all) from an ICU common data package."""
    (header_size,) = struct.unpack_from("<H", data, 0)
    if data[2:4] != b"\xda\x27" or data[12:16] != b"CmnD":
        raise ValueError("not an ICU common data package")
    toc = data[header_size:]
    (count,) = struct.unpack_from("<I", toc, 0)
    entries = [struct.unpack_from("<II", toc, 4 + 8 * i) for i in range(count)]
    ends = [offset for _, offset in entries[1:]] + [len(toc)]
    items = []
    for (name_off, data_off), end in zip(entries, ends, strict=True):
        name = toc[name_off : toc.index(b"\0", name_off)]
        if keep(name.decode("ascii")):
            items.append((name, toc[data_off:end]))
    # The same layout ICU's pkgdata writes: count, (name offset, data offset) pairs, names, then the items,
    # each 16-byte aligned, offsets from the start of the table. Names stay sorted, for ICU's binary search.
    names_at = 4 + 8 * len(items)
    names = b"".join(name + b"\0" for name, _ in items)
    pos = (names_at + len(names) + 15) & ~15
    table, blobs = [], []
    name_pos = names_at
    for name, blob in items:
        table.append(struct.pack("<II", name_pos, pos))
        name_pos += len(name) + 1
        padded = blob + b"\0" * (-len(blob) % 16)
        blobs.append(padded)
        pos += len(padded)
    head = struct.pack("<I", len(items)) + b"".join(table) + names
    head += b"\xaa" * (-len(head) % 16)  # pkgdata pads with 0xAA
    return data[:header_size] + head + b"".join(blobs), len(items), count


def build(source: Path, target: Path, cc: str = "cc") -> tuple[int, int, int]:
    """Write the filtered library to ``target``; (bytes before, bytes after, items kept)."""
    elf = source.read_bytes()
    symbol, offset, size = _symbol(elf, re.compile(rb"icudt\d+_dat"))
    package, kept, _total = filter_package(elf[offset : offset + size])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "icudata.bin"
        blob.write_bytes(package)
        asm = Path(tmp) / "icudata.S"
        sym = symbol.decode()
        asm.write_text(
            f"\t.section .rodata\n\t.globl {sym}\n\t.type {sym}, @object\n\t.balign 16\n{sym}:\n"
            f'\t.incbin "{blob}"\n\t.size {sym}, . - {sym}\n\t.section .note.GNU-stack,"",@progbits\n'
        )
        subprocess.run(
            [cc, "-shared", "-nostdlib", f"-Wl,-soname,{source.name}", "-o", str(target), str(asm)], check=True
        )
    return len(elf), target.stat().st_size, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="Qt's libicudata.so.NN")
    parser.add_argument("target", type=Path, help="where to write the filtered library")
    args = parser.parse_args(argv)
    if shutil.which("cc") is None:
        print("icu_filter: no C compiler (cc) to assemble the library", file=sys.stderr)
        return 1
    before, after, kept = build(args.source, args.target)
    print(f"icu_filter: {args.target}: {kept} items, {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
