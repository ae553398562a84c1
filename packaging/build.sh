#!/usr/bin/env bash
# Build the Linux one-folder bundle with PyInstaller:
#   dist/avatar-studio/                         the app (run dist/avatar-studio/avatar-studio --help)
#   dist/avatar-studio-linux-x86_64.tar.gz      the same folder with a .desktop entry, the icon and an installer
#
#   packaging/build.sh            the CPU bundle (default): PyPI's torch 2.14.1 with its large CUDA
#                                 libraries replaced by stubs and every GPU hidden (packaging/cuda_libs.py)
#   packaging/build.sh --cuda     the same torch with all its CUDA libraries + torch's C++ headers for
#                                 building the StyleGAN2 ops on a GPU machine
#                                 (AVATAR_STUDIO_BUNDLE_VARIANT=cuda does the same; not built here)
#
# The build venv lives outside the repository, in $AVATAR_STUDIO_CACHE (default
# ~/.cache/avatar-studio), keyed by a hash of pyproject.toml and the torch choice: a second build
# reuses it. The project's own code is not installed into it: PyInstaller reads studio/ and models/
# from this checkout, so the bundle always holds the current sources.
# Environment: PYTHON (a Python 3.11; default python3.11 or python3), TORCH_SPEC (default
# torch==2.14.1, PyPI's CUDA 13 build: the CPU-only 2.13.0+cpu wheel breaks PyPI's torchvision),
# TORCH_INDEX (an extra pip index for torch), DIST_DIR (default <repo>/dist).
# The CPU bundle also needs gcc and readelf (binutils) for its CUDA stubs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VARIANT=${AVATAR_STUDIO_BUNDLE_VARIANT:-cpu}
[[ "${1:-}" == "--cuda" ]] && VARIANT=cuda
case "$VARIANT" in
  cpu|cuda) TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1} ;;
  *) echo "error: AVATAR_STUDIO_BUNDLE_VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' || {
  echo "error: $PYTHON is not Python 3.11 (the bundle is built with 3.11); set PYTHON=/path/to/python3.11" >&2; exit 2; }
CACHE=${AVATAR_STUDIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/avatar-studio}
DIST=${DIST_DIR:-$REPO/dist}
PYI_VERSION="pyinstaller>=6.10,<7"

# the venv depends on the dependency list and the torch choice only (the spec and the sources are read
# by PyInstaller afresh on every build), so both variants and every source change share it
# (only pyproject's dependency lists count: an edit elsewhere in it, e.g. an import-linter contract,
# must not cost a new 6.5 GB venv)
deps=$("$PYTHON" - "$REPO/pyproject.toml" <<'PY'
import json, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(json.dumps([p.get("dependencies", []), p.get("optional-dependencies", {})], sort_keys=True))
PY
)
key=$( { echo "$deps"; \
         echo "$TORCH_SPEC ${TORCH_INDEX:-} $PYI_VERSION $("$PYTHON" -V 2>&1)"; } | sha256sum | cut -c1-16)
VENV="$CACHE/build-venv-$key"
# build venvs of other dependency lists are 6.5 GB each: keep this one only
for old in "$CACHE"/build-venv-*; do
  [[ -d "$old" && "$old" != "$VENV" ]] && { echo "== removing an older build venv: $old"; rm -rf "$old"; }
done
for old in "$CACHE"/pyinstaller-work-*; do
  [[ -d "$old" && "$old" != "$CACHE/pyinstaller-work-$key"* ]] && rm -rf "$old"
done
t0=$(date +%s)

if [[ ! -x "$VENV/bin/pyinstaller" || ! -f "$VENV/.complete" ]]; then
  echo "== build venv: $VENV (new)"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"   # built in place: .complete is written last, so a killed build starts over
  PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  extra=()
  [[ -n "${TORCH_INDEX:-}" ]] && extra=(--extra-index-url "$TORCH_INDEX")
  "${PIP[@]}" "${extra[@]}" "$TORCH_SPEC"
  # the project's dependencies from pyproject.toml, except torch/torchvision whose build is chosen above
  mapfile -t deps < <("$VENV/bin/python" - "$REPO/pyproject.toml" "$TORCH_SPEC" <<'PY'
import re, sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))
torch_version = re.sub(r"^torch==", "", sys.argv[2]).split("+")[0]
vision = {"2.13.0": "0.28.0", "2.14.1": "0.29.1"}  # the torchvision release that matches each torch
for dep in data["project"]["dependencies"]:
    name = re.split(r"[ <>=!~;\[]", dep, maxsplit=1)[0].lower()
    if name == "torch":
        continue
    if name == "torchvision":
        print(f"torchvision=={vision[torch_version]}" if torch_version in vision else "torchvision")
        continue
    print(dep)
PY
)
  "${PIP[@]}" "${extra[@]}" "${deps[@]}" "$TORCH_SPEC" "$PYI_VERSION"
  "$VENV/bin/python" -c 'import torch, PySide6, mediapipe; print("   torch", torch.__version__, "cuda", torch.version.cuda)'
  touch "$VENV/.complete"
else
  echo "== build venv: $VENV (reused)"
fi
t1=$(date +%s)

# Qt's X11 plugin: PyInstaller carries the system libraries it needs only when this build machine has them
xcb_missing=$(cd "$REPO" && PYTHONPATH="$REPO" "$VENV/bin/python" - <<'PY' 2>/dev/null
from studio.gui.display_check import install_hint, missing_libraries, xcb_plugin
plugin = xcb_plugin()
missing = missing_libraries(plugin) if plugin else None
if missing:
    print(", ".join(missing) + " | " + install_hint(missing).split("; then")[0])
PY
) || xcb_missing=""
if [[ -n "$xcb_missing" ]]; then
  echo "   warning: this build machine lacks X11 libraries Qt's window needs (${xcb_missing%% | *}), so the bundle"
  echo "   will not carry them and its users must have them installed; to carry them, install them here"
  echo "   (${xcb_missing#* | }) and build again"
fi

echo "== pyinstaller ($VARIANT)"
mkdir -p "$DIST"
WORK="$CACHE/pyinstaller-work-$key-$VARIANT"
(cd "$REPO" && AVATAR_STUDIO_BUNDLE_VARIANT=$VARIANT PYTHONPATH="$REPO" \
  "$VENV/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$DIST" --workpath "$WORK" \
  packaging/avatar-studio.spec)
APP="$DIST/avatar-studio"
test -x "$APP/avatar-studio"
if [[ "$VARIANT" == cpu ]]; then
  echo "== CUDA libraries of the CPU bundle: stubs for the large ones, the GPU-only ones removed"
  "$VENV/bin/python" "$REPO/packaging/cuda_libs.py" "$APP/_internal" || {
    echo "error: slimming the CUDA libraries failed (above); the unslimmed bundle is in $APP" >&2; exit 1; }
fi
echo "== bundle check (torch, torchvision, open_clip inside the bundle)"
env -i PATH=/usr/bin:/bin HOME="$HOME" LANG=C.UTF-8 "$APP/avatar-studio" --run-script "$REPO/packaging/bundle_check.py" || {
  echo "error: the built bundle cannot run torch/open_clip (above); it is left in $APP for inspection" >&2; exit 1; }

# desktop integration: the entry, the icon, and a script that installs both for the current user
cp "$REPO/packaging/avatar-studio.desktop" "$APP/avatar-studio.desktop"
cp "$REPO/resources/icons/app.svg" "$APP/avatar-studio.svg"
cp "$REPO/packaging/install-desktop-entry.sh" "$APP/install-desktop-entry.sh"
chmod +x "$APP/install-desktop-entry.sh"
echo "$VARIANT torch=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)') built=$(date -u +%FT%TZ)" \
  > "$APP/BUILD-INFO.txt"
t2=$(date +%s)

echo "== tar.gz"
TAR="$DIST/avatar-studio-linux-x86_64.tar.gz"
[[ "$VARIANT" == cuda ]] && TAR="$DIST/avatar-studio-linux-x86_64-cuda.tar.gz"
tar -C "$DIST" -czf "$TAR.tmp" avatar-studio && mv "$TAR.tmp" "$TAR"
t3=$(date +%s)

echo "== done: $APP ($(du -sh "$APP" | cut -f1)), $TAR ($(du -sh "$TAR" | cut -f1))"
echo "   venv $((t1 - t0)) s, pyinstaller $((t2 - t1)) s, tar $((t3 - t2)) s, total $((t3 - t0)) s"
