"""Resume after a crash: SIGKILL to Snakemake and every job it runs, part-way through the
per-patient work; then `snakemake --unlock` and the same command again (as README says). Patients
whose jobs had finished are not recomputed (their scans' files and their records untouched), and
the tables are byte-identical to an uninterrupted run of the same config (the session's
`synthetic_run`).

The killed run starts from a copy of the shared run with a few patients' scans reset
(`seed_from_run`): the crash and the resume happen in their per-patient work, while the other
patients' outputs, finished before, must come through untouched as well."""

import base64
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_run import BIN, ROOT, TINY, seed_from_run, snakemake

TARGETS = ["tables/lesions.parquet", "tables/burden.parquet", "tables/features.parquet", "tables/body_composition.parquet",
           "tables/site_burden.parquet"]
COMPARED = ["tables/*.parquet", "tables/*.csv", "qc/exclusions.tsv"]
PER_SCAN = ["scans/*/image.nii.gz", "scans/*/segmentation.nii.gz", "scans/*/lesions.parquet", "scans/*/tissue.parquet"]
RESET_PATIENTS = 2  # of the tiny trial's 10: 11 of its 49 scans to kill and resume in


def incomplete_outputs(workdir: Path) -> set[Path]:
    """Outputs of jobs that were running when Snakemake died: its own markers in
    .snakemake/incomplete/, one file per output named by the URL-safe base64 of the path
    (split into '@'-prefixed folders when longer than a file name may be)."""
    marks = workdir / ".snakemake" / "incomplete"
    names = set()
    for mark in marks.rglob("*") if marks.exists() else []:
        if mark.is_file():
            encoded = "".join(part.lstrip("@") for part in mark.relative_to(marks).parts)
            names.add((workdir / base64.urlsafe_b64decode(encoded).decode()).resolve())
    return names


@pytest.mark.e2e
def test_killed_run_resumes_without_recomputing_finished_patients(synthetic_run, tmp_path):
    results = tmp_path / "results" / TINY["study"]["name"]
    targets = [str(Path("results") / TINY["study"]["name"] / t) for t in TARGETS]
    scans = pd.read_csv(synthetic_run / "synthetic/scans.tsv", sep="\t")
    scans_of = scans.groupby("patient_id")["scan_id"].apply(list).to_dict()
    patients = sorted(scans_of)
    reset_patients = set(patients[-RESET_PATIENTS:])
    reset = seed_from_run(synthetic_run, results, reset_patients)
    assert len(reset) >= 6 and not any((results / "scans" / s).exists() for s in reset)

    def measured(patient):  # the patient's measure job (registration + lesions of every scan) has run
        return (results / "qc" / "measure" / f"{patient}.tsv").exists()

    def finished(patient):  # ... and Snakemake has recorded it as done (its incomplete marker gone)
        record = results / "qc" / "measure" / f"{patient}.tsv"
        return record.exists() and record.resolve() not in incomplete_outputs(tmp_path)

    # First run, killed once the first reset patient is measured and recorded as done. Each measure
    # job is given both cores (a scheduling claim only: the step is serial), so the patients' measure
    # jobs run one after another; side by side, both had finished by the time the first was seen.
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--set-threads", "measure=2", "--cores", "2", *targets]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with open(tmp_path / "killed.log", "w") as log:
        run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 900
        while not any(finished(p) for p in reset_patients):
            assert run.poll() is None, "the run ended before it could be killed: " + (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no progress within 15 min"
            time.sleep(0.2)
        os.killpg(run.pid, signal.SIGKILL)  # Snakemake and all its jobs (one process group)
        run.wait()
    assert run.returncode == -signal.SIGKILL

    # What had finished: the patients whose measure record is present and not marked incomplete,
    # with every per-scan output of their scans.
    running = incomplete_outputs(tmp_path)
    finished_patients = {p for p in patients if measured(p)
                         and (results / "qc" / "measure" / f"{p}.tsv").resolve() not in running}
    assert 0 < len(finished_patients & reset_patients) < len(reset_patients)
    assert finished_patients - reset_patients == set(patients) - reset_patients  # the copied ones: finished before
    finished_scans = {s for p in finished_patients for s in scans_of[p]}
    finished = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for pattern in PER_SCAN for p in results.glob(pattern)
                if p.parent.name in finished_scans}
    finished.update({p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in results.glob("qc/*/*.tsv")
                     if p.stem in finished_patients})
    assert len(finished) >= len(PER_SCAN) * len(finished_scans)

    # Resume: unlock (the killed run left its lock), then the same command.
    unlock = snakemake(tmp_path, TINY, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    resumed = snakemake(tmp_path, TINY, *targets)
    assert resumed.returncode == 0, resumed.stderr[-4000:]

    touched = [str(p.relative_to(results)) for p, stamp in finished.items() if (p.stat().st_mtime_ns, p.stat().st_ino) != stamp]
    assert not touched, f"finished outputs were recomputed: {touched[:10]}"
    # The resumed run scheduled measure only for the patients that had not finished.
    stats = resumed.stderr[resumed.stderr.index("Job stats:"):]
    measured_again = int(next(line.split()[1] for line in stats.splitlines() if line.startswith("measure ")))
    assert measured_again == len(patients) - len(finished_patients)

    names = sorted({p.relative_to(synthetic_run) for pattern in COMPARED for p in synthetic_run.glob(pattern)})
    assert len(names) >= 6
    different = [str(n) for n in names if (results / n).read_bytes() != (synthetic_run / n).read_bytes()]
    assert not different, f"differ from the uninterrupted run: {different}"
