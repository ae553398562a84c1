#!/usr/bin/env bash
# One-command install for artists: a private Python environment inside the app folder.
#   bash packaging/install.sh        then   .venv/bin/avatar-studio gui
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 11), "Avatar Studio needs Python 3.10 or 3.11"'
"$PY" -m venv .venv
.venv/bin/pip install -e .
echo "installed: run .venv/bin/avatar-studio gui   (or: .venv/bin/avatar-studio --help)"
