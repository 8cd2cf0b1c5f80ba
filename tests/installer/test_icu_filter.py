"""installer/icu_filter.py: Qt's ICU data cut to root and English, and Qt answering the same with it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from insane.devkit import ROOT
from installer import icu_filter

PySide6 = pytest.importorskip("PySide6")
ICU = next(iter(sorted((Path(PySide6.__file__).parent / "Qt" / "lib").glob("libicudata.so.*"))), None)
pytestmark = pytest.mark.skipif(
    ICU is None or not sys.platform.startswith("linux"), reason="PySide6's ICU library on Linux only"
)


def test_keeps_root_english_and_everything_that_is_not_a_locale() -> None:
    kept = [
        "icudt73l/root.res",
        "icudt73l/en.res",
        "icudt73l/en_GB.res",
        "icudt73l/coll/ucadata.icu",
        "icudt73l/coll/root.res",
        "icudt73l/zone/pool.res",
        "icudt73l/zoneinfo64.res",
        "icudt73l/uprops.icu",
        "icudt73l/brkitr/word.brk",
        "icudt73l/res_index.res",
        "icudt73l/likelySubtags.res",
        "icudt73l/cnvalias.icu",
        "icudt73l/unit/en_001.res",
        "icudt73l/plurals.res",
    ]
    dropped = [
        "icudt73l/de.res",
        "icudt73l/zh_Hant_TW.res",
        "icudt73l/coll/de.res",
        "icudt73l/yue.res",
        "icudt73l/ibm-1047_P100-1995.cnv",
        "icudt73l/brkitr/cjdict.dict",
        "icudt73l/translit/root.res",
        "icudt73l/curr/ja.res",
        "icudt73l/coll/de__PHONEBOOK.res",
    ]
    assert all(icu_filter.keep(n) for n in kept)
    assert not any(icu_filter.keep(n) for n in dropped)


def test_keeping_everything_rebuilds_the_package_byte_for_byte(monkeypatch) -> None:
    elf = ICU.read_bytes()
    _name, offset, size = icu_filter._symbol(elf, re.compile(rb"icudt\d+_dat"))
    package = elf[offset : offset + size]
    monkeypatch.setattr(icu_filter, "keep", lambda name: True)
    rebuilt, kept, total = icu_filter.filter_package(package)
    assert kept == total > 1000 and rebuilt == package


QT_PROBE = """
import os
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from functools import cmp_to_key
from PySide6.QtCore import QCollator, QLocale, QTimeZone
from PySide6.QtWidgets import QApplication, QLineEdit
app = QApplication([])
for name in ("en_US", "en_GB", "de_DE", "tr_TR", "ja_JP"):
    loc = QLocale(name)
    print(name, loc.toUpper("istanbul straße"), loc.toLower("İSTANBUL"), loc.toString(1234567.891, "f", 2),
          loc.dateTimeFormat(), loc.nativeLanguageName())
words = ["banana", "Apple", "cherry", "apple", "Äpfel", "zebra", "Zürich"]
print(sorted(words, key=cmp_to_key(QCollator(QLocale("en_US")).compare)))
tz = QTimeZone(b"Europe/Berlin")
print(tz.isValid(), len(QTimeZone.availableTimeZoneIds()))
edit = QLineEdit("https://relay.example.com — Ünïcödé"); edit.resize(300, 30)
print(edit.grab().width(), edit.text().upper())
print(open("/proc/self/maps").read().count("{lib}"))
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to assemble the library")
def test_qt_answers_the_same_with_the_slim_data(tmp_path: Path) -> None:
    slim = tmp_path / ICU.name
    before, after, kept = icu_filter.build(ICU, slim)
    assert after < 6e6 < 25e6 < before and kept > 300

    def probe(preload: Path | None) -> str:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if preload:
            env["LD_PRELOAD"] = str(preload)  # same soname: Qt's ICU binds to this one instead of its own
        out = subprocess.run(
            [sys.executable, "-c", QT_PROBE.replace("{lib}", str(slim))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    full, slimmed = probe(None), probe(slim)
    assert full.rsplit("\n", 2)[-2] == "0" and slimmed.rsplit("\n", 2)[-2] != "0"  # it really was loaded
    assert full.rsplit("\n", 2)[0] == slimmed.rsplit("\n", 2)[0]
