#!/usr/bin/env bash
# Install (or, with --uninstall, remove) the unpacked bundle for this user; no root needed.
#   ./install.sh                 into ~/.local (PREFIX=/opt/... for another place, as root)
#   ./install.sh --uninstall
# The app itself lives in PREFIX/opt/insane-desktop; a link in PREFIX/bin, the menu entry and the icons
# point at it. Your settings, token and models stay in your config and cache folders either way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-$HOME/.local}
app=$prefix/opt/insane-desktop
entry=$prefix/share/applications/insane-desktop.desktop

remove() {
  rm -rf "$app"
  rm -f "$prefix/bin/insane-desktop" "$entry"
  rm -f "$prefix"/share/icons/hicolor/*/apps/insane-desktop.png
}

if [ "${1:-}" = "--uninstall" ]; then
  remove
  echo "removed Insane AI Security from $prefix"
  exit 0
fi

remove  # an upgrade replaces the whole folder: no file of the old version lingers
mkdir -p "$app" "$prefix/bin" "$prefix/share/applications"
cp -a "$here/insane-desktop" "$here/_internal" "$app/"
ln -sf "$app/insane-desktop" "$prefix/bin/insane-desktop"
for icon in "$here"/icons/hicolor/*/apps/insane-desktop.png; do
  size=$(basename "$(dirname "$(dirname "$icon")")")
  mkdir -p "$prefix/share/icons/hicolor/$size/apps"
  cp "$icon" "$prefix/share/icons/hicolor/$size/apps/"
done
sed "s|^Exec=.*|Exec=$app/insane-desktop|" "$here/insane-desktop.desktop" > "$entry"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$prefix/share/applications" || true
echo "installed Insane AI Security in $app; start it from the menu or with: $prefix/bin/insane-desktop"
