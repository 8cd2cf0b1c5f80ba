#!/usr/bin/env bash
# Build the Linux desktop bundle and its .tar.gz, check it, and run its self-test offscreen.
#
#   installer/linux/build.sh                         a fresh build venv in build/venv-cpu
#   BUILD_VENV=/path/to/venv installer/linux/build.sh  use that venv as it is (pyinstaller + '.[desktop]')
#   FLAVOUR=gpu installer/linux/build.sh             onnxruntime-gpu (CUDA) instead of onnxruntime
#
# Output: dist/<flavour>/insane-desktop/ (the one-folder bundle) and
#         dist/insane-desktop-<version>-linux-<arch>[-gpu].tar.gz (bundle + .desktop entry + icons + install.sh).
# Fails when the bundle holds torch, Ultralytics, OpenCV, asyncpg or relay/, when it is over
# INSANE_BUNDLE_MAX_MB (250 for cpu, 1500 for gpu: the CUDA provider alone is hundreds of MB), model
# included, or when `insane-desktop --self-test` fails from the unpacked archive.
# The bundle carries no model: its first run fetches COCO YOLOv8n's pinned .pt and converts it.
# INSANE_BUNDLE_MODEL=path.onnx: a model to carry all the same (see pyinstaller.spec).
# INSANE_SELFTEST_PT=path.pt: the self-test's first run fetches this checkpoint from a local HTTP server
# (pinned by its SHA-256 in a model catalogue) instead of yolov8n.pt from GitHub: no network needed.
# Needs binutils (strip, objdump) and cc (installer/icu_filter.py) besides Python.
# No AppImage: appimagetool is in neither Debian's nor PyPI's packages (its own installer downloads it
# from GitHub), and this project installs only from the package registries.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

FLAVOUR=${FLAVOUR:-cpu}
PY=${PYTHON:-python3}
case "$FLAVOUR" in
  cpu) max_mb=${INSANE_BUNDLE_MAX_MB:-250}; suffix="" ;;
  gpu) max_mb=${INSANE_BUNDLE_MAX_MB:-1500}; suffix="-gpu" ;;
  *) echo "build.sh: FLAVOUR must be cpu or gpu, not $FLAVOUR" >&2; exit 2 ;;
esac
export FLAVOUR INSANE_BUNDLE_MAX_MB=$max_mb
# The spec imports onnxruntime and Qt while it analyses: no telemetry file, no display needed.
export ORT_DISABLE_TELEMETRY=1 QT_QPA_PLATFORM=offscreen
start=$(date +%s)

pip_install() { "$venv/bin/pip" install -q --disable-pip-version-check "$@"; }

if [ -n "${BUILD_VENV:-}" ]; then
  venv=$BUILD_VENV
  [ -x "$venv/bin/pyinstaller" ] || { echo "build.sh: $venv has no pyinstaller" >&2; exit 2; }
else
  venv=build/venv-$FLAVOUR
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  pip_install -U pip
  # Editable: the bundle is built from this checkout's code (the spec analyses it in place). Pinned
  # (constraints.txt): a new Qt or onnxruntime release changes the size, so it comes in on purpose.
  pip_install -c installer/linux/constraints.txt 'pyinstaller>=6.10,<7' -e ".[desktop]"
  if [ "$FLAVOUR" = gpu ]; then
    # onnxruntime and onnxruntime-gpu install the same `onnxruntime` package: never both at once.
    "$venv/bin/pip" uninstall -q -y onnxruntime
    pip_install -c installer/linux/constraints.txt onnxruntime-gpu  # pinned: built for CUDA 12
  fi
fi
echo "build.sh: venv $venv ready after $(( $(date +%s) - start )) s"

# Runtime libraries Qt's xcb platform plugin loads; PyInstaller copies them from this machine.
if command -v dpkg-query >/dev/null; then
  for pkg in libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      echo "build.sh: warning: $pkg is not installed; the bundle will need it on the user's machine" >&2
  done
fi

dist=dist/$FLAVOUR
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "build/pyinstaller-$FLAVOUR" pyinstaller.spec
bundle=$dist/insane-desktop

# The archive: the bundle, the menu entry, icons drawn by the app's own icon code, and install.sh.
version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("insane-ai-security"))')
name=insane-desktop-$version-linux-$(uname -m)$suffix
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name"
cp -a "$bundle/." "$stage/$name/"
cp installer/linux/insane-desktop.desktop installer/linux/install.sh "$stage/$name/"
"$venv/bin/python" - "$stage/$name/icons/hicolor" <<'PY'
import sys
from pathlib import Path

from PySide6.QtGui import QGuiApplication

from desktop.icons import draw_icon

app = QGuiApplication([])
for size in (48, 128, 256):
    folder = Path(sys.argv[1]) / f"{size}x{size}" / "apps"
    folder.mkdir(parents=True, exist_ok=True)
    if not draw_icon("running", size).save(str(folder / "insane-desktop.png")):
        sys.exit(f"could not write the {size} px icon")
PY
archive=dist/$name.tar.gz
tar -C "$stage" -czf "$archive" "$name"

# Check and report: forbidden contents, size.
"$venv/bin/python" installer/bundle_check.py "$bundle" --max-mb "$max_mb"
archive_mb=$(du -b "$archive" | awk '{printf "%.1f", $1/1e6}')
echo "build.sh: archive $archive $archive_mb MB"

# The self-test runs from a fresh unpacking of the archive, with empty home folders: what a user gets.
# A bundle without a model fetches it here; it keeps this machine's CA and proxy settings for that.
run=$(mktemp -d)
server=""
trap 'rm -rf "$stage" "$run"; [ -z "$server" ] || kill "$server" 2>/dev/null || true' EXIT
tar -C "$run" -xzf "$archive"
mkdir -p -m 700 "$run/home" "$run/runtime"
selftest_env=()
if [ -n "${INSANE_SELFTEST_PT:-}" ]; then
  mkdir -p "$run/serve"
  cp "$INSANE_SELFTEST_PT" "$run/serve/selftest.pt"
  port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$venv/bin/python" -m http.server "$port" --bind 127.0.0.1 --directory "$run/serve" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  printf '{"models": [{"name": "selftest", "url": "http://127.0.0.1:%s/selftest.pt", "sha256": "%s", "size": %s}]}\n' \
    "$port" "$(sha256sum "$run/serve/selftest.pt" | cut -d' ' -f1)" "$(stat -c %s "$run/serve/selftest.pt")" \
    > "$run/catalog.json"
  selftest_env=(INSANE_MODEL=selftest INSANE_MODEL_CATALOG="$run/catalog.json")
  echo "build.sh: the self-test fetches $INSANE_SELFTEST_PT from http://127.0.0.1:$port/selftest.pt"
fi
set +e
env -i PATH=/usr/bin:/bin HOME="$run/home" XDG_CONFIG_HOME="$run/home/.config" XDG_CACHE_HOME="$run/home/.cache" \
  XDG_STATE_HOME="$run/home/.local/state" XDG_RUNTIME_DIR="$run/runtime" QT_QPA_PLATFORM=offscreen \
  ORT_DISABLE_TELEMETRY=1 ${INSANE_MODEL:+INSANE_MODEL=$INSANE_MODEL} "${selftest_env[@]}" \
  ${SSL_CERT_FILE:+SSL_CERT_FILE=$SSL_CERT_FILE} ${SSL_CERT_DIR:+SSL_CERT_DIR=$SSL_CERT_DIR} \
  ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} ${https_proxy:+https_proxy=$https_proxy} \
  timeout 300 "$run/$name/insane-desktop" --self-test 2>&1 | tee "$run/selftest.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "build.sh: insane-desktop --self-test failed (exit $status)" >&2
  exit 1
fi
if [ -n "${INSANE_SELFTEST_PT:-}" ] && ! grep -q "Installed the detection model selftest" "$run/selftest.log"; then
  echo "build.sh: the self-test did not fetch and convert the checkpoint it was given" >&2
  exit 1
fi
if [ -d "$run/home/.cache/Microsoft" ]; then
  echo "build.sh: onnxruntime wrote telemetry files despite ORT_DISABLE_TELEMETRY" >&2
  exit 1
fi
echo "build.sh: ok: $archive ($archive_mb MB), self-test passed, $(( $(date +%s) - start )) s in all"
