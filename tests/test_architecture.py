"""The layering contract (models never import the app; stages never import Qt) holds."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run([exe], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_importing_models_needs_no_gpu_or_qt():
    code = "import sys, models, studio.stages, studio.pipeline; assert 'PySide6' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
