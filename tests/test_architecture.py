"""The one-way flow of docs/architecture.md, checked by import-linter: the contracts in
pyproject.toml ([tool.importlinter]) hold for this checkout, and a wrong-way import breaks them."""

import os
import shutil
import subprocess

from workflow_run import BIN, ROOT


def lint_imports(package_parent) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{package_parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([str(BIN / "lint-imports"), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_contract_is_kept():
    proc = lint_imports(ROOT / "workflow")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_wrong_way_import_breaks_the_layers(tmp_path):
    shutil.copytree(ROOT / "workflow" / "tumorburden", tmp_path / "tumorburden",
                    ignore=shutil.ignore_patterns("__pycache__"))
    volume = tmp_path / "tumorburden" / "imaging" / "volume.py"
    volume.write_text(volume.read_text() + "\nfrom tumorburden.kinetics import recist  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "tumorburden.imaging is not allowed to import tumorburden.kinetics" in proc.stdout


def test_production_segmentation_may_not_reach_the_simulator(tmp_path):
    shutil.copytree(ROOT / "workflow" / "tumorburden", tmp_path / "tumorburden",
                    ignore=shutil.ignore_patterns("__pycache__"))
    engine = tmp_path / "tumorburden" / "segment" / "engine.py"
    engine.write_text(engine.read_text() + "\nfrom tumorburden.segment import train  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "tumorburden.segment.engine is not allowed to import tumorburden.synth" in proc.stdout
