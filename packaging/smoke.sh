#!/usr/bin/env bash
# Headless smoke test of a built bundle:   packaging/smoke.sh DIST_DIR
# DIST_DIR is the folder that holds avatar-studio/ (as build.sh makes it) or that folder itself.
#
# The bundle runs with a clean environment (env -i: no venv, no PYTHONPATH, a fresh HOME and app
# settings folder), offscreen Qt. Checks: --version; models list (and a wrong file refused with exit
# code 2); `new` on a 2 s clip cut from ../shared/data/videos/subject_turns_d3.mp4 with the bundled
# ffmpeg (skipped with a message where ../shared is absent); a tiny stage run (pivots, then a 3-step
# subject prior at 64 px); status; torch, torchvision and open_clip load and compute in the bundle
# (packaging/bundle_check.py); a text edit: a tiny CLIP and a tiny trained avatar made with the bundle's
# own torch (packaging/smoke_fixtures.py, from the tests' fixtures), `models add clip`, `edit --text red`,
# `export --edit`; the window started offscreen, a screenshot of it, clean quit; where Xvfb is installed,
# the window on a real X server (the xcb plugin), or the one-line message naming the X11 libraries it lacks.
# Prints the bundle's size and the cold-start time to the window shown. Screenshots and logs go to
# $SMOKE_OUT (default DIST_DIR/smoke). Exit code: 0 when every check passed (skips allowed).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST=${1:?usage: packaging/smoke.sh DIST_DIR}
APP=$(cd "$DIST" && pwd)
[[ -x "$APP/avatar-studio/avatar-studio" ]] && APP="$APP/avatar-studio"
BIN="$APP/avatar-studio"
[[ -x "$BIN" ]] || { echo "error: no bundle at $DIST (expected avatar-studio/avatar-studio)" >&2; exit 2; }
SHARED=${AVATAR_STUDIO_SHARED:-$REPO/../shared}
OUT=${SMOKE_OUT:-$(cd "$DIST" && pwd)/smoke}
rm -rf "$OUT" && mkdir -p "$OUT/home" "$OUT/config"
passed=0; failed=0; skipped=0

ok()   { echo "ok      $*"; passed=$((passed + 1)); }
bad()  { echo "FAILED  $*"; failed=$((failed + 1)); }
skip() { echo "skipped $*"; skipped=$((skipped + 1)); }
secs_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf "%d.%d" $((ms / 1000)) $((ms % 1000 / 100)); }
# the bundle in a clean environment: nothing from a Python install or venv can leak in
app() {
  env -i PATH=/usr/bin:/bin HOME="$OUT/home" LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen \
    AVATAR_STUDIO_CONFIG_DIR="$OUT/config" ${SMOKE_ENV:-} "$BIN" "$@"
}

size=$(du -sh "$APP" | cut -f1)
echo "bundle  $APP ($size)"

# 1. --version
v=$(app --version 2>&1) && [[ "$v" =~ ^avatar-studio\ [0-9] ]] && ok "--version: $v" || bad "--version: $v"

# 2. models list; a wrong file is refused with a one-line message and exit code 2
if app models list > "$OUT/models.txt" 2>&1 && grep -q "unlocks:" "$OUT/models.txt" \
   && grep -q "^arcface" "$OUT/models.txt"; then ok "models list"; else bad "models list (see $OUT/models.txt)"; fi
echo "not a network" > "$OUT/fake.pth"
app models add lpips "$OUT/fake.pth" > "$OUT/models_bad.txt" 2>&1; rc=$?
if [[ $rc == 2 ]] && grep -q "cannot be used as LPIPS" "$OUT/models_bad.txt"; then ok "models add refuses a wrong file (exit 2)"
else bad "models add of a wrong file: exit $rc, $(head -c 300 "$OUT/models_bad.txt")"; fi
if [[ -f "$SHARED/weights/arcface_mobilefacenet.pt" ]]; then
  if app models add arcface "$SHARED/weights/arcface_mobilefacenet.pt" > "$OUT/models_add.txt" 2>&1 \
     && grep -q "MobileFaceNet" "$OUT/models_add.txt"; then ok "models add arcface (real network loads in the bundle)"
  else bad "models add arcface: $(head -c 300 "$OUT/models_add.txt")"; fi
fi

# 3. a project from a 2 s clip, cut with the bundled ffmpeg
VIDEO="$SHARED/data/videos/subject_turns_d3.mp4"
P="$OUT/project"
if [[ ! -f "$VIDEO" ]]; then
  skip "new / run-stage: needs $VIDEO (../shared beside the repo, or set AVATAR_STUDIO_SHARED)"
else
  FFMPEG=$(ls "$APP"/_internal/imageio_ffmpeg/binaries/ffmpeg* 2>/dev/null | head -1)
  if [[ -x "$FFMPEG" ]] && "$FFMPEG" -hide_banner -loglevel error -y -i "$VIDEO" -t 2 -c:v libx264 -crf 18 \
       -c:a aac "$OUT/clip2s.mp4" && [[ -s "$OUT/clip2s.mp4" ]]; then ok "bundled ffmpeg cut a 2 s clip"
  else bad "bundled ffmpeg ($FFMPEG) could not cut the clip"; fi
  t0=$(date +%s%N)
  if app new "$P" --video "$OUT/clip2s.mp4" --crop-size 128 > "$OUT/new.txt" 2>&1 && [[ -f "$P/project.json" ]]; then
    ok "new: $(grep -m1 '^tracked' "$OUT/new.txt") ($(secs_since "$t0") s)"
  else bad "new: $(tail -3 "$OUT/new.txt")"; fi
  if app run-stage "$P" pivots > "$OUT/pivots.txt" 2>&1 && grep -q "pivots: done" "$OUT/pivots.txt"; then
    ok "run-stage pivots: $(grep -m1 'pivots: done' "$OUT/pivots.txt" | cut -c1-100)"
  else bad "run-stage pivots: $(tail -3 "$OUT/pivots.txt")"; fi
  if app run-stage "$P" prior --set steps=3 --set batch=2 --set resolution=64 --set threads=1 \
       > "$OUT/prior.txt" 2>&1 && grep -q "prior: done" "$OUT/prior.txt" && ls "$P"/prior/generator.* >/dev/null 2>&1
  then ok "run-stage prior (3 steps at 64 px): generator written"
  else bad "run-stage prior: $(tail -3 "$OUT/prior.txt")"; fi
  if app status "$P" > "$OUT/status.txt" 2>&1 && grep -q "^pivots *done" "$OUT/status.txt"; then ok "status"
  else bad "status: $(tail -3 "$OUT/status.txt")"; fi
fi

# 4. torch, torchvision and open_clip inside the bundle; a text edit found through open_clip
if app --run-script "$REPO/packaging/bundle_check.py" > "$OUT/bundle_check.txt" 2>&1; then ok "$(tail -1 "$OUT/bundle_check.txt")"
else bad "bundle check: $(tail -3 "$OUT/bundle_check.txt")"; fi
E="$OUT/edit"
t0=$(date +%s%N)
if app --run-script "$REPO/packaging/smoke_fixtures.py" "$E" > "$OUT/edit_fixtures.txt" 2>&1 \
   && [[ -s "$E/tiny_clip.pt" && -f "$E/avatar/project.json" ]]; then
  ok "tiny CLIP trained and tiny StyleGAN avatar made with the bundle's torch + open_clip ($(secs_since "$t0") s)"
  if app models add clip "$E/tiny_clip.pt" > "$OUT/models_clip.txt" 2>&1 && grep -q "CLIP checkpoint" "$OUT/models_clip.txt"
  then ok "models add clip: $(grep -m1 -o 'CLIP checkpoint[^;]*' "$OUT/models_clip.txt")"
  else bad "models add clip: $(tail -3 "$OUT/models_clip.txt")"; fi
  t0=$(date +%s%N)
  if app edit "$E/avatar" --text red --steps 20 > "$OUT/edit_text.txt" 2>&1 && grep -q "saved edit 'red'" "$OUT/edit_text.txt" \
     && app edit "$E/avatar" --list > "$OUT/edit_list.txt" 2>&1 && grep -q 'text "red"' "$OUT/edit_list.txt"; then
    ok "edit --text red (20 steps through open_clip): $(grep -m1 -o 'CLIP loss.*' "$OUT/edit_text.txt") ($(secs_since "$t0") s)"
  else bad "edit --text red: $(tail -3 "$OUT/edit_text.txt" "$OUT/edit_list.txt" 2>/dev/null)"; fi
  if app export "$E/avatar" -o "$E/red.mp4" --source turntable --duration 1 --edit "red=1" > "$OUT/edit_export.txt" 2>&1 \
     && [[ -s "$E/red.mp4" ]]; then ok "export --edit red=1: $E/red.mp4"
  else bad "export with the edit: $(tail -3 "$OUT/edit_export.txt")"; fi
else bad "smoke fixtures (tiny CLIP + avatar): $(tail -3 "$OUT/edit_fixtures.txt")"; fi

# 5. the window, offscreen: cold start to the window shown, a screenshot, a clean quit
t0=$(date +%s%N)
app gui --screenshot "$OUT/window.png" --quit-after-ms 4000 > "$OUT/gui.txt" 2>&1; rc=$?
wall=$(secs_since "$t0")
shown=$(grep -o "window shown [0-9.]* s" "$OUT/gui.txt" | grep -o "[0-9.]*" | head -1)
if [[ $rc == 0 && -s "$OUT/window.png" ]] && head -c 8 "$OUT/window.png" | grep -q PNG; then
  ok "gui: window shown ${shown:-?} s after start (cold start), screenshot $OUT/window.png, quit with exit 0 after $wall s"
else bad "gui: exit $rc, $(tail -3 "$OUT/gui.txt")"; fi
if [[ -f "$P/project.json" ]]; then
  app gui "$P" --show tracking --screenshot "$OUT/window_project.png" --quit-after-ms 5000 > "$OUT/gui_project.txt" 2>&1; rc=$?
  if [[ $rc == 0 && -s "$OUT/window_project.png" ]]; then ok "gui with the project's tracking page: $OUT/window_project.png"
  else bad "gui with the project: exit $rc, $(tail -3 "$OUT/gui_project.txt")"; fi
fi

# 6. the window on a real X server (Xvfb, where this machine has it): the bundle's Qt xcb plugin and the
#    pre-flight check. Either the window opens (screenshot, exit 0) or, where the machine lacks X11 libraries
#    Qt needs, the one-line message naming them and exit 2; anything else (Qt's abort, a crash) fails.
if command -v Xvfb > /dev/null; then
  : > "$OUT/xvfb.display"
  Xvfb -displayfd 3 -screen 0 1280x900x24 -nolisten tcp 3> "$OUT/xvfb.display" > "$OUT/xvfb.txt" 2>&1 &
  xpid=$!
  for _ in $(seq 50); do [[ -s "$OUT/xvfb.display" ]] && break; sleep 0.1; done
  disp=$(head -1 "$OUT/xvfb.display")
  if [[ -n "$disp" ]]; then
    env -i PATH=/usr/bin:/bin HOME="$OUT/home" LANG=C.UTF-8 DISPLAY=":$disp" AVATAR_STUDIO_CONFIG_DIR="$OUT/config" \
      "$BIN" gui --fresh --screenshot "$OUT/window_x11.png" --quit-after-ms 4000 > "$OUT/gui_x11.txt" 2>&1; rc=$?
    if [[ $rc == 0 && -s "$OUT/window_x11.png" ]]; then ok "gui on an X server (Xvfb :$disp, xcb plugin): $OUT/window_x11.png"
    elif [[ $rc == 2 ]] && grep -q "^error: the window cannot open: Qt's X11 display plugin needs" "$OUT/gui_x11.txt"; then
      ok "gui on an X server: this machine lacks X11 libraries, said in one line: $(head -c 200 "$OUT/gui_x11.txt")"
    else bad "gui on an X server (Xvfb :$disp): exit $rc, $(tail -3 "$OUT/gui_x11.txt")"; fi
  else skip "gui on an X server: Xvfb did not start ($(tail -2 "$OUT/xvfb.txt"))"; fi
  kill "$xpid" 2> /dev/null; wait "$xpid" 2> /dev/null || true
else skip "gui on an X server: no Xvfb here (Debian: apt install xvfb)"; fi

echo "bundle size $size; cold start to the window shown: ${shown:-not measured} s"
echo "smoke test: $passed checks ok, $failed failed, $skipped skipped"
[[ $failed == 0 ]]
