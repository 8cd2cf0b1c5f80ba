#!/usr/bin/env bash
# Build the macOS app: "Insane AI Security.app" and a .dmg with it and a link to /Applications.
#
# Built on macOS only (PyInstaller does not cross-compile; hdiutil and iconutil are macOS tools), on the
# architecture it targets (arm64 on Apple silicon, x86_64 on Intel). It is not built or run by this
# project's CI, which is Linux. Same structure as installer/linux/build.sh:
#
#   installer/macos/build.sh                           a fresh build venv in build/venv-cpu
#   BUILD_VENV=/path/to/venv installer/macos/build.sh  use that venv as it is
#   FLAVOUR=gpu                                        not offered: onnxruntime's macOS wheel already has the
#                                                      CoreML execution provider, which the app uses for the GPU/ANE
#
# Output: dist/cpu/Insane AI Security.app and dist/insane-desktop-<version>-macos-<arch>.dmg.
# Signing and notarisation need the publisher's Apple Developer ID: set CODESIGN_IDENTITY (and
# NOTARY_PROFILE, a `xcrun notarytool store-credentials` profile) to do both; without them the app is
# ad-hoc signed and users must open it with right-click > Open the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(uname -s)" = Darwin ] || { echo "macos/build.sh: run this on macOS" >&2; exit 2; }
FLAVOUR=${FLAVOUR:-cpu}
[ "$FLAVOUR" = cpu ] || { echo "macos/build.sh: only FLAVOUR=cpu (CoreML is in the standard wheel)" >&2; exit 2; }
PY=${PYTHON:-python3}
export FLAVOUR INSANE_BUNDLE_MAX_MB=${INSANE_BUNDLE_MAX_MB:-250} ORT_DISABLE_TELEMETRY=1 QT_QPA_PLATFORM=offscreen

if [ -n "${BUILD_VENV:-}" ]; then
  venv=$BUILD_VENV
else
  venv=build/venv-$FLAVOUR
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q -U pip
  "$venv/bin/pip" install -q 'pyinstaller>=6.10,<7' -e ".[desktop]"
fi

# The icon: the app's own drawing, at the sizes an .icns holds.
iconset=build/insane.iconset
rm -rf "$iconset" && mkdir -p "$iconset"
"$venv/bin/python" - "$iconset" <<'PY'
import sys
from pathlib import Path

from PySide6.QtGui import QGuiApplication

from desktop.icons import draw_icon

app = QGuiApplication([])
for size in (16, 32, 128, 256, 512):
    for scale in (1, 2):
        suffix = "" if scale == 1 else "@2x"
        draw_icon("running", size * scale).save(str(Path(sys.argv[1]) / f"icon_{size}x{size}{suffix}.png"))
PY
iconutil -c icns "$iconset" -o build/insane.icns
export INSANE_ICON=$PWD/build/insane.icns

dist=dist/$FLAVOUR
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "build/pyinstaller-$FLAVOUR" pyinstaller.spec
app="$dist/Insane AI Security.app"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --deep --force --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$app"
else
  codesign --deep --force --sign - "$app"
fi

"$app/Contents/MacOS/insane-desktop" --self-test

version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("insane-ai-security"))')
dmg=dist/insane-desktop-$version-macos-$(uname -m).dmg
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname "Insane AI Security" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"

if [ -n "${CODESIGN_IDENTITY:-}" ] && [ -n "${NOTARY_PROFILE:-}" ]; then
  codesign --force --sign "$CODESIGN_IDENTITY" "$dmg"
  xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
echo "macos/build.sh: ok: $dmg ($(du -h "$dmg" | cut -f1))"
