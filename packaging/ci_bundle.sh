#!/usr/bin/env bash
# CI: build the Linux bundle only when no bundle of these exact sources is cached, then smoke-test it.
#   packaging/ci_bundle.sh            build if needed, then smoke.sh
#   packaging/ci_bundle.sh --where    print the cache folder of these sources and stop
# The cache lives outside the clone: $AVATAR_STUDIO_CACHE/bundle-<hash> (default
# ~/.cache/avatar-studio), where <hash> covers every tracked file under studio/, models/, resources/,
# packaging/ and pyproject.toml (their contents in this working tree). Only the two newest bundles are
# kept. The build venv is cached by build.sh itself, so a source change costs only the PyInstaller
# step. A failed build prints the end of its log and "error: the bundle build failed" and exits 1;
# otherwise the exit code is smoke.sh's.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${AVATAR_STUDIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/avatar-studio}
cd "$REPO"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files studio models resources packaging pyproject.toml)
else
  files=$(find studio models resources packaging pyproject.toml -type f ! -name '*.pyc' | sort)
fi
hash=$(for f in $files; do [[ -f "$f" ]] && { echo "$f"; sha256sum < "$f"; }; done | sha256sum | cut -c1-16)
BUNDLE="$CACHE/bundle-$hash"
if [[ "${1:-}" == "--where" ]]; then echo "$BUNDLE"; exit 0; fi

if [[ -x "$BUNDLE/avatar-studio/avatar-studio" ]]; then
  echo "== bundle of these sources is cached: $BUNDLE"
else
  echo "== building the bundle into $BUNDLE"
  rm -rf "$BUNDLE.tmp"
  t0=$(date +%s)
  LOG="$CACHE/bundle-$hash.build.log"
  mkdir -p "$CACHE"
  echo "   (build log: $LOG; a cold build took 6-8 min on 2 cores here, longer under load)"
  if ! DIST_DIR="$BUNDLE.tmp" nice -n 10 bash "$REPO/packaging/build.sh" > "$LOG" 2>&1; then
    tail -n 40 "$LOG" | grep -v "^WARNING: Location" >&2
    echo "error: the bundle build failed (packaging/build.sh; last lines above, full log in $LOG)" >&2
    rm -rf "$BUNDLE.tmp"
    exit 1
  fi
  grep -E "^(==|   )" "$LOG" || true
  rm -rf "$BUNDLE" && mv "$BUNDLE.tmp" "$BUNDLE"
  echo "== bundle built in $(( $(date +%s) - t0 )) s"
  # keep the two newest bundles
  for old in $(ls -dt "$CACHE"/bundle-*/ 2>/dev/null | sed 's|/$||' | grep -v '\.tmp$' | tail -n +3); do
    rm -rf "$old" "$old.build.log"
  done
fi
SMOKE_OUT="$BUNDLE/smoke" bash "$REPO/packaging/smoke.sh" "$BUNDLE" || {
  echo "error: the bundle's smoke test failed (FAILED lines above; logs in $BUNDLE/smoke)" >&2; exit 1; }
