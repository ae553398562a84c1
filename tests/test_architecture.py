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


def test_every_studio_module_is_under_the_no_qt_contract():
    """A new top-level module of studio must join the "nothing outside studio.gui imports the GUI"
    contract, or it would escape it."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    contract = next(c for c in cfg["tool"]["importlinter"]["contracts"] if "outside studio.gui" in c["name"])
    listed = set(contract["source_modules"])
    present = {f"studio.{p.stem}" for p in (REPO / "studio").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    missing = present - listed - {"studio.gui", "studio.cli", "studio.__main__"}
    assert not missing, f"add {sorted(missing)} to the contract in pyproject.toml"


def test_importing_models_needs_no_gpu_or_qt():
    code = "import sys, models, studio.stages, studio.pipeline; assert 'PySide6' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
