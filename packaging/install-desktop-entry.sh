#!/usr/bin/env bash
# Adds Avatar Studio to the desktop's application menu for the current user (no root needed):
# ~/.local/share/applications/avatar-studio.desktop and the icon, pointing at this folder.
# Run it from the unpacked bundle: ./install-desktop-entry.sh   (again after moving the folder)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
mkdir -p "$DATA/applications" "$DATA/icons/hicolor/scalable/apps"
cp "$HERE/avatar-studio.svg" "$DATA/icons/hicolor/scalable/apps/avatar-studio.svg"
sed -e "s|^Exec=.*|Exec=\"$HERE/avatar-studio\" gui %f|" -e "s|^Icon=.*|Icon=$DATA/icons/hicolor/scalable/apps/avatar-studio.svg|" \
  "$HERE/avatar-studio.desktop" > "$DATA/applications/avatar-studio.desktop.tmp"
mv "$DATA/applications/avatar-studio.desktop.tmp" "$DATA/applications/avatar-studio.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$DATA/applications" || true
echo "installed $DATA/applications/avatar-studio.desktop (runs $HERE/avatar-studio gui)"
