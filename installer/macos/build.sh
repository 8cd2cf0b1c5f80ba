#!/usr/bin/env bash
# Build the macOS app: "Insane AI Security.app" and a .dmg with it and a link to /Applications.
#
# Built on macOS 14 or later on Apple silicon (PyInstaller does not cross-compile; hdiutil and iconutil
# are macOS tools). Intel Macs are not built for: the pinned onnxruntime has no x86_64 macOS wheel (its
# last one is 1.23). Not run by this project's CI, which is Linux; CI checks that every pinned package
# has a macosx_14_0_arm64 wheel (installer/wheels.py) and runs PyInstaller's own BUNDLE code on the
# app's Info.plist choices (tests/installer/test_specinfo.py). Same structure as installer/linux/build.sh:
#
#   installer/macos/build.sh                           a fresh build venv in build/venv-cpu
#   BUILD_VENV=/path/to/venv installer/macos/build.sh  use that venv as it is
#   FLAVOUR=gpu                                        not offered: onnxruntime's macOS wheel already has the
#                                                      CoreML execution provider, which the app uses for the GPU/ANE
#
# Output: dist/cpu/Insane AI Security.app and dist/insane-desktop-<version>-macos-arm64.dmg.
# Signing and notarisation need the publisher's Apple Developer ID:
#   CODESIGN_IDENTITY="Developer ID Application: ..."  signs every binary and the app (hardened runtime,
#                                                      installer/macos/entitlements.plist, secure timestamp)
#   NOTARY_PROFILE=name                                a `xcrun notarytool store-credentials` profile: the app
#                                                      and the .dmg are notarised and stapled
# Without them the app is ad-hoc signed: macOS 15 then blocks its first start until the user allows it
# in System Settings > Privacy & Security (the README's "Installing the desktop app" says how).
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(uname -s)" = Darwin ] || { echo "macos/build.sh: run this on macOS" >&2; exit 2; }
[ "$(uname -m)" = arm64 ] || { echo "macos/build.sh: Apple silicon only (onnxruntime has no current x86_64 wheel)" >&2; exit 2; }
FLAVOUR=${FLAVOUR:-cpu}
[ "$FLAVOUR" = cpu ] || { echo "macos/build.sh: only FLAVOUR=cpu (CoreML is in the standard wheel)" >&2; exit 2; }
if [ -n "${NOTARY_PROFILE:-}" ] && [ -z "${CODESIGN_IDENTITY:-}" ]; then
  echo "macos/build.sh: NOTARY_PROFILE needs CODESIGN_IDENTITY (Apple notarises Developer ID signed apps only)" >&2
  exit 2
fi
PY=${PYTHON:-python3}
export FLAVOUR INSANE_BUNDLE_MAX_MB=${INSANE_BUNDLE_MAX_MB:-250} ORT_DISABLE_TELEMETRY=1 QT_QPA_PLATFORM=offscreen
# PyInstaller only warns when signing fails; here that is an error, and it verifies what it signed.
export PYINSTALLER_STRICT_BUNDLE_CODESIGN_ERROR=1 PYINSTALLER_VERIFY_BUNDLE_SIGNATURE=1
export CODESIGN_IDENTITY=${CODESIGN_IDENTITY:-}

if [ -n "${BUILD_VENV:-}" ]; then
  venv=$BUILD_VENV
else
  venv=build/venv-$FLAVOUR
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q -U pip
  # The pinned versions (the same as Linux and Windows; installer/wheels.py checks each has a macOS wheel).
  "$venv/bin/pip" install -q -c installer/linux/constraints.txt 'pyinstaller>=6.10,<7' -e ".[desktop]"
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

# The spec signs (CODESIGN_IDENTITY, or ad hoc) and fails when Info.plist says LSBackgroundOnly, lacks
# LSMinimumSystemVersion or carries another version than pyproject.toml's (installer/specinfo.py).
dist=dist/$FLAVOUR
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "build/pyinstaller-$FLAVOUR" pyinstaller.spec
app="$dist/Insane AI Security.app"
codesign --verify --deep --strict --verbose=2 "$app"

# The self-test, with a time limit (macOS has no `timeout`; perl's alarm ends it).
perl -e 'alarm shift; exec @ARGV or die "exec: $!"' 300 "$app/Contents/MacOS/insane-desktop" --self-test

notarize() {  # submit, wait for Apple's verdict, print its log on failure
  local out
  out=$(xcrun notarytool submit "$1" --keychain-profile "$NOTARY_PROFILE" --wait --output-format json)
  echo "$out"
  if ! echo "$out" | grep -q '"status" *: *"Accepted"'; then
    local id
    id=$(echo "$out" | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p' | head -1)
    [ -n "$id" ] && xcrun notarytool log "$id" --keychain-profile "$NOTARY_PROFILE" || true
    echo "macos/build.sh: notarisation of $1 was not accepted" >&2
    exit 1
  fi
}

if [ -n "${NOTARY_PROFILE:-}" ]; then
  zip=build/insane-app.zip
  rm -f "$zip"
  ditto -c -k --keepParent "$app" "$zip"
  notarize "$zip"
  xcrun stapler staple "$app"
  xcrun stapler validate "$app"
  spctl --assess --type execute --verbose=4 "$app"  # Gatekeeper's own verdict: "accepted, Notarized Developer ID"
fi

version=$("$venv/bin/python" -c 'import sys; sys.path.insert(0, "installer"); import specinfo; print(specinfo.project_version())')
dmg=dist/insane-desktop-$version-macos-arm64.dmg
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
ditto "$app" "$stage/Insane AI Security.app"
ln -s /Applications "$stage/Applications"
rm -f "$dmg"
hdiutil create -volname "Insane AI Security" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"

if [ -n "$CODESIGN_IDENTITY" ]; then
  codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$dmg"
  codesign --verify --strict --verbose=2 "$dmg"
fi
if [ -n "${NOTARY_PROFILE:-}" ]; then
  notarize "$dmg"
  xcrun stapler staple "$dmg"
  xcrun stapler validate "$dmg"
  spctl --assess --type open --context context:primary-signature --verbose=4 "$dmg"
fi
echo "macos/build.sh: ok: $dmg ($(du -h "$dmg" | cut -f1))"
