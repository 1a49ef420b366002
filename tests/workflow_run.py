"""Running the workflow from tests: the tiny synthetic trial and a Snakemake call."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# The tiny synthetic trial every end-to-end test shares (one run per session).
TINY = {
    "study": {"name": "tiny"},
    "synthetic": {"n_patients": 10, "matrix": 96, "pixel_mm": 4.0, "slice_mm": 4.0, "seed": 11},
    "survival": {"bootstrap": 20, "min_patients": 4},
    # DICOM-SEG export is tested on its own (tests/segment/test_segment_workflow.py asks for one);
    # leaving it out of the shared runs saves ~3 CPU-s per scan in each of them.
    "segmentation": {"dicom_seg": False},
}


def snakemake(workdir: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=2700)
