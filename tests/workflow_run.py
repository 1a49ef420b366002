"""Running the workflow from tests: the tiny synthetic trial and a Snakemake call."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from filelock import FileLock

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


def workdir_lock(workdir: Path) -> FileLock:
    """Held by whoever runs Snakemake in, or copies from, a workdir. `make test` runs the suite on two
    pytest-xdist workers, and the shared run's workdir is read by tests on both: one test's Snakemake
    call (a report, a target, a dry run that takes Snakemake's own lock) must not overlap another's
    call or copy there. The lock file lives outside every test's folder (tests check that a run
    writes nothing beside its own outputs)."""
    key = hashlib.sha1(str(workdir.resolve()).encode()).hexdigest()[:16]
    locks = Path(tempfile.gettempdir()) / "tumorburden-test-locks"
    locks.mkdir(exist_ok=True)
    return FileLock(str(locks / f"{key}.lock"))


def snakemake(workdir: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *extra]
    with workdir_lock(workdir):
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=2700)


def copy_run(run: Path, dest: Path) -> None:
    """Copy a finished run's folder (a results folder or a whole workdir; modification times kept)
    while no test runs Snakemake in it."""
    workdir = run if (run / "config.yaml").exists() else run.parents[1]
    with workdir_lock(workdir):
        shutil.copytree(run, dest, symlinks=True)


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
    copy_run(run, results)
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
