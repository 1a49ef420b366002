"""Running the workflow from tests: the tiny synthetic trial and a Snakemake call."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
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


def pending_jobs(workdir: Path, config: dict, *targets: str) -> dict[str, int]:
    """rule -> number of jobs a dry run (`snakemake -n`) of `targets` would run; {} when all is up to date."""
    proc = snakemake(workdir, config, *targets, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


# What a run of the whole study writes from every scan's outputs: Snakemake does not regenerate a
# missing intermediate file under outputs that are present and newer, so a seeded copy drops them.
STUDY_OUTPUTS = ["tables", "survival", "figures", "truth/scores.csv", "qc/exclusions.tsv", "report.html"]


def seed_from_run(run: Path, results: Path, patient_ids) -> set[str]:
    """Copy a finished run's results folder (modification times kept, no .snakemake records) to
    `results`, then remove what the workflow wrote for these patients and their scans (image,
    segmentation, lesions, registration, QC, the patients' job records, logs, benchmarks) and the
    study-level outputs, so that the next run recomputes exactly those. The synthetic rendering and
    truth are kept. Returns the scan ids that were reset."""
    shutil.copytree(run, results)
    scans = pd.read_csv(run / "synthetic" / "scans.tsv", sep="\t", dtype={"scan_id": str, "patient_id": str})
    reset = set(scans.loc[scans["patient_id"].isin(set(patient_ids)), "scan_id"])
    ids = reset | set(patient_ids)
    kept = {"synthetic", "truth"}  # the patients' rendering: a directory output per patient, left whole
    doomed = [p for p in results.rglob("*") if p.relative_to(results).parts[0] not in kept
              and (p.name.split(".")[0] in ids or any(part in ids for part in p.relative_to(results).parts))]
    doomed += [results / p for p in STUDY_OUTPUTS] + list((results / "qc").glob("contact_sheet*"))
    for p in sorted(doomed, key=lambda p: len(p.parts)):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
    return reset
