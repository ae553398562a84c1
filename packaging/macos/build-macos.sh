#!/usr/bin/env bash
# macOS recipe — NOT built or tested (the project's machines run Linux). The same spec makes
# "dist/Avatar Studio.app" on macOS through its BUNDLE step:
#   python3.11 -m venv ~/.cache/avatar-studio/build-venv-macos
#   ~/.cache/avatar-studio/build-venv-macos/bin/pip install torch==2.13.0 <the dependencies in pyproject.toml> "pyinstaller>=6.10,<7"
#   ~/.cache/avatar-studio/build-venv-macos/bin/pyinstaller --noconfirm packaging/avatar-studio.spec
#   hdiutil create -volname "Avatar Studio" -srcfolder "dist/Avatar Studio.app" -ov -format UDZO dist/avatar-studio.dmg
# Put an icon at packaging/macos/avatar-studio.icns first (iconutil from resources/icons/app.svg
# rendered to PNGs) or the .app gets the default icon. Unsigned: Gatekeeper asks the user to
# confirm on first open (right click → Open) unless the .app is signed and notarised.
# Things to check on a real Mac: mediapipe 0.10.9 wheels exist for the Mac's CPU (arm64/x86_64),
# Qt's "cocoa" platform plugin is collected, and the .app opens the window without arguments
# (packaging/entry.py does that on macOS). Torch has no CUDA on macOS: the CPU preset applies.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-$HOME/.cache/avatar-studio/build-venv-macos}
[[ -x "$VENV/bin/pyinstaller" ]] || { echo "make the venv first (see the comments at the top)" >&2; exit 2; }
"$VENV/bin/pyinstaller" --noconfirm packaging/avatar-studio.spec
hdiutil create -volname "Avatar Studio" -srcfolder "dist/Avatar Studio.app" -ov -format UDZO dist/avatar-studio.dmg
