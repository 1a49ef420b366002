"""The one-way flow of docs/architecture.md, checked by import-linter: the contracts in
pyproject.toml ([tool.importlinter]) hold for this checkout, and a wrong-way import breaks them."""

import os
import shutil
import subprocess

import pytest

from workflow_run import BIN, ROOT


def lint_imports(package_parent) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{package_parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept():
    proc = lint_imports(ROOT / "workflow")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, wrong_import, broken", [
    ("imaging/volume.py", "from tumorburden.kinetics import recist",
     "tumorburden.imaging is not allowed to import tumorburden.kinetics"),       # the layers
    ("segment/engine.py", "from tumorburden.segment import train",
     "tumorburden.segment.engine is not allowed to import tumorburden.synth"),   # production segmentation
    ("workflow_plan.py", "from tumorburden.figures import names",
     "tumorburden.workflow_plan is not allowed to import tumorburden.figures"),  # the plan stays light
    ("kinetics/burden.py", "from tumorburden import workflow_plan",
     "tumorburden.kinetics is not allowed to import tumorburden.workflow_plan"),  # no stage calls the plan
])
def test_a_wrong_way_import_breaks_its_contract(tmp_path, module, wrong_import, broken):
    shutil.copytree(ROOT / "workflow" / "tumorburden", tmp_path / "tumorburden",
                    ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp_path / "tumorburden" / module
    source.write_text(source.read_text() + f"\n{wrong_import}  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert broken in proc.stdout
