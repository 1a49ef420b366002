"""The workflow through a real SLURM cluster: munged, slurmctld and slurmd on this machine
(tests/cluster/localhost-slurm.sh), driven by `--profile profiles/slurm` and the pinned
snakemake-executor-plugin-slurm, unchanged (the test node advertises 8 CPUs and 32 GB so
that the profile's requests fit). The run's tables must equal the local run's byte for byte.

Needs root and Debian's slurmctld, slurmd, slurm-client and munge; skipped otherwise, unless
TUMORBURDEN_REQUIRE_SLURM=1 (set by .ci/run), where a missing cluster is a failure."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from workflow_run import ROOT, TINY, snakemake

SCRIPT = ROOT / "tests/cluster/localhost-slurm.sh"
TOOLS = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun"]
# Outputs whose bytes must not depend on where the jobs ran.
TABLES = ["tables/*.parquet", "tables/*.csv", "survival/*.csv", "truth/scores.csv", "qc/exclusions.tsv"]


def _why_no_cluster() -> str | None:
    if os.geteuid() != 0:
        return "starting SLURM daemons needs root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install slurmctld slurmd slurm-client munge)"
    if Path("/etc/slurm/slurm.conf").exists() and not Path("/etc/slurm/slurm.conf").is_symlink():
        return "/etc/slurm/slurm.conf exists: this machine has its own SLURM configuration"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    why = _why_no_cluster()
    if why:
        if os.environ.get("TUMORBURDEN_REQUIRE_SLURM") == "1":
            pytest.fail(f"TUMORBURDEN_REQUIRE_SLURM=1 but no SLURM cluster can be started here: {why}")
        pytest.skip(f"no local SLURM cluster: {why}")
    # Not under pytest's tmp folder: that is private to root, and munged runs as `munge`.
    state = Path(tempfile.mkdtemp(prefix="tumorburden-slurm-"))
    state.chmod(0o755)
    start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, start.stderr + start.stdout
        yield state
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=60)
        # Every daemon the script started is gone (it stops them by PID).
        left = list((state / "run").glob("*.pid"))
        shutil.rmtree(state, ignore_errors=True)
        assert not left, f"daemons not stopped: {left}"


def slurm_jobs(state: Path, workdir: Path) -> list[dict]:
    """SLURM's own record of the jobs that ran in `workdir`: the controller's job list
    (finished jobs stay MinJobAge=3600 s) joined with the completion log."""
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, env=env, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    completed = {}
    for line in (state / "jobs-completed.txt").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        completed[fields["JobId"]] = fields["JobState"]
    for job in jobs:
        job["CompletedState"] = completed.get(job["JobId"])
    return jobs


# Patients whose scans the SLURM run computes; the other scans' outputs are copied from the local run
# (a whole trial through a 2-core test cluster took 15 min; every per-scan rule and every study
# step still runs on SLURM, and the study steps read all scans, so the tables still compare).
SLURM_PATIENTS = 2


def _reset_scans(results: Path, scan_ids: set[str], patient_ids: set[str]) -> None:
    """Remove every file the workflow wrote for these patients and their scans (rendered series,
    truth, images, segmentations, DICOM-SEGs, QC, logs, benchmarks), so that the next run computes
    them again."""
    ids = scan_ids | patient_ids
    doomed = [p for p in results.rglob("*")
              if any(part in ids for part in p.relative_to(results).parts)
              or p.name.split(".")[0] in ids]
    for p in sorted(doomed, key=lambda p: len(p.parts)):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


@pytest.mark.e2e
def test_workflow_on_slurm_equals_local_run(slurm_cluster, synthetic_run, tmp_path, monkeypatch):
    state = slurm_cluster
    monkeypatch.setenv("SLURM_CONF", str(state / "slurm.conf"))
    workdir = tmp_path / "run"
    name = TINY["study"]["name"]
    # the local run's results, modification times kept, without its .snakemake records
    shutil.copytree(synthetic_run, workdir / "results" / name)
    scans = pd.read_csv(synthetic_run / "synthetic" / "scans.tsv", sep="\t")
    patients = sorted(scans["patient_id"].unique())[:SLURM_PATIENTS]
    redo = set(scans.loc[scans["patient_id"].isin(patients), "scan_id"])
    _reset_scans(workdir / "results" / name, redo, set(patients))
    # and the study steps' outputs: Snakemake does not regenerate missing intermediate files
    # (here the reset scans') under outputs that are present and newer than what exists
    for study_output in ["tables", "survival", "figures", "truth/scores.csv", "qc/exclusions.tsv"]:
        path = workdir / "results" / name / study_output
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for sheet in (workdir / "results" / name / "qc").glob("contact_sheet*"):
        sheet.unlink()
    assert not (workdir / "results" / name / "scans" / sorted(redo)[0]).exists()
    proc = snakemake(
        workdir, TINY, "--profile", str(ROOT / "profiles/slurm"),
        # No accounting database on the test cluster: status from squeue (MinJobAge=3600),
        # no account; first status check after 2 s instead of 40.
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    jobs = slurm_jobs(state, workdir)
    # Every job SLURM ran for this workflow finished well, on the cluster's node.
    assert jobs and all(j["JobState"] == "COMPLETED" and j["CompletedState"] == "COMPLETED" for j in jobs), jobs
    comments = [j["Comment"] for j in jobs]
    # Grouped steps, 6 connected components per SLURM job: prepare (a patient's rendering + the
    # ingest of its scans: 6 patients), segment and measure (with registration: 6 scans); only the
    # reset patients' scans ran.
    for group, n_components in [("group_prepare", len(patients)), ("group_segment", len(redo)),
                                ("group_measure", len(redo))]:
        n = sum(c.startswith(group) or c.startswith(f"rule_{group[6:]}") for c in comments)
        assert n == -(-n_components // 6), (group, comments)
    for rule in ["track", "burden", "features", "survival", "km_figures", "score_against_truth"]:
        assert comments.count(f"rule_{rule}") == 1, (rule, comments)
    assert "rule_synth_trial" not in comments  # its outputs were kept
    # The GPU request of the profile reached SLURM for segmentation, and only there.
    for job in jobs:
        wants_gpu = job["Comment"].startswith(("rule_segment_", "group_segment")) or job["Comment"] == "rule_segment"
        assert (job.get("TresPerNode") == "gres:gpu:1") == wants_gpu, job

    # Same tables as the local run of the same config (session fixture), byte for byte, and the
    # recomputed scans' own outputs too.
    local, cluster = synthetic_run, workdir / "results" / name
    names = sorted({p.relative_to(local) for pattern in TABLES for p in local.glob(pattern)})
    names += sorted(p.relative_to(local) for s in redo for p in (local / "scans" / s).glob("*.parquet"))
    assert len(names) >= 8 + len(redo)
    different = [str(n) for n in names if (cluster / n).read_bytes() != (local / n).read_bytes()]
    assert not different, f"differ between the SLURM and the local run: {different}"
