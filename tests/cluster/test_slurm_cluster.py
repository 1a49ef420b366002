"""The workflow through a real SLURM cluster: munged, slurmctld and slurmd on this machine
(tests/cluster/localhost-slurm.sh), driven by `--profile profiles/slurm` unchanged and the pinned
snakemake-executor-plugin-slurm. The node is declared as this machine is (`slurmd -C`: here 2
CPUs, no GPU), smaller than the profile's requests (4 CPUs and a GPU for segmentation), as a
user's small cluster would be: with `cluster.fit: cap` the run's tables must equal the local
run's byte for byte; with the default the pre-flight stops the run before any submission; a job
pending on a drained node is reported and cancelled. A second cluster, whose node declares one
GPU, checks that the profile's GPU request reaches SLURM for segmentation only.

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

import yaml

from workflow_run import BIN, ROOT, TINY, copy_run, seed_from_run

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


def _cluster(gpus: int = 0):
    why = _why_no_cluster()
    if why:
        if os.environ.get("TUMORBURDEN_REQUIRE_SLURM") == "1":
            pytest.fail(f"TUMORBURDEN_REQUIRE_SLURM=1 but no SLURM cluster can be started here: {why}")
        pytest.skip(f"no local SLURM cluster: {why}")
    # Not under pytest's tmp folder: that is private to root, and munged runs as `munge`.
    state = Path(tempfile.mkdtemp(prefix="tumorburden-slurm-"))
    state.chmod(0o755)
    env = {**os.environ, "LOCALHOST_SLURM_GPUS": str(gpus)}
    start = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=120,
                           env=env)
    try:
        assert start.returncode == 0, start.stderr + start.stdout
        yield state
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=60)
        # Every daemon the script started is gone (it stops them by PID).
        left = list((state / "run").glob("*.pid"))
        shutil.rmtree(state, ignore_errors=True)
        assert not left, f"daemons not stopped: {left}"


@pytest.fixture(scope="module")
def slurm_cluster():
    """One node as this machine is: its CPUs and memory, no GPU."""
    yield from _cluster()


@pytest.fixture
def gpu_cluster(slurm_cluster):
    """The same machine declaring one GPU (no device behind it); the CPU-only cluster is stopped
    meanwhile and started again after (both use SLURM's ports)."""
    subprocess.run(["bash", str(SCRIPT), "stop", str(slurm_cluster)], capture_output=True, text=True, timeout=60)
    try:
        yield from _cluster(gpus=1)
    finally:
        start = subprocess.run(["bash", str(SCRIPT), "start", str(slurm_cluster)], capture_output=True, text=True,
                               timeout=120)
        assert start.returncode == 0, start.stderr + start.stdout


def slurm(state: Path, *args: str) -> str:
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    return subprocess.run(list(args), capture_output=True, text=True, env=env, check=True).stdout


def snakemake(workdir: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    """Snakemake as a user runs it on a login node: the profile, no --cores (the test suite's
    helper gives --cores 2, which would also narrow each group job to 2 CPUs)."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *SLURM_ARGS, *extra]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=2700)


# No accounting database on the test cluster: status from squeue (MinJobAge=3600), no account;
# first status check after 2 s instead of 40.
SLURM_ARGS = ("--profile", str(ROOT / "profiles/slurm"), "--slurm-status-command", "squeue", "--slurm-no-account",
              "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs")


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
    log = state / "jobs-completed.txt"
    for line in (log.read_text().splitlines() if log.exists() else []):
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        completed[fields["JobId"]] = fields["JobState"]
    for job in jobs:
        job["CompletedState"] = completed.get(job["JobId"])
    return jobs


# The study steps whose outputs the SLURM run must reproduce (with track and burden before them).
CHECKED_RULES = ("features", "survival", "survival_prediction", "km_figures", "score_against_truth")
# Tables of the local run that the SLURM run does not ask for (the dynamic and joint models, body
# composition, burden per site: one-job study steps like the others, tested by the shared run); a new table under
# TABLES is compared unless it is named here.
NOT_ASKED = ({Path("survival") / f for f in ("joint_model.csv", "landmark_model.csv", "dynamic_accuracy.csv",
                                             "dynamic_predictions.csv")}
             | {Path("tables") / f"{t}.{x}" for t in ("body_composition", "site_burden", "site_kinetics")
                for x in ("parquet", "csv")})


# Scans of the patient the SLURM run computes again: at least a follow-up, so that its measure job
# registers a scan to the reference. (The CPU cap is exercised by the segment job: the profile's
# 4 threads, more than a 2-CPU test node has.)
MIN_SCANS = 2


def _patient_to_recompute(scans: pd.DataFrame) -> str:
    """The patient whose scans the SLURM run computes again: the first of those with the fewest scans
    among those with at least MIN_SCANS. The other patients' outputs are the local run's; every
    per-scan rule (rendering included) and every study step still runs on SLURM, and the study steps
    read all scans, so the tables still compare. (A whole trial through a 2-core test cluster took
    15 min; two patients, 5 scans, took 290 s in the last full suite.)"""
    counts = scans.groupby("patient_id")["scan_id"].size()
    return min(counts[counts >= MIN_SCANS].index, key=lambda p: (counts[p], p))


@pytest.mark.e2e
def test_workflow_on_slurm_equals_local_run(slurm_cluster, synthetic_run, tmp_path, monkeypatch):
    state = slurm_cluster
    monkeypatch.setenv("SLURM_CONF", str(state / "slurm.conf"))
    workdir = tmp_path / "run"
    name = TINY["study"]["name"]
    results = workdir / "results" / name
    scans = pd.read_csv(synthetic_run / "synthetic" / "scans.tsv", sep="\t", dtype={"patient_id": str, "scan_id": str})
    patients = [_patient_to_recompute(scans)]
    # the local run's results (modification times kept, no .snakemake records) less this patient's scans'
    # outputs and the study steps' ...
    redo = seed_from_run(synthetic_run, results, patients)
    # ... and its rendering, so that the prepare group renders as well as ingests
    for rendered in (results / "synthetic" / "dicom" / patients[0], results / "truth" / "scans" / patients[0]):
        shutil.rmtree(rendered)
    assert len(redo) >= MIN_SCANS and not any((results / "scans" / s).exists() for s in redo)
    # What this test compares and counts (the other figures are each a one-job rule of their own, tested
    # by the shared run; through SLURM they only added minutes of job start-up)
    proc = snakemake(workdir, {**TINY, "cluster": {"fit": "cap"}}, *CHECKED_RULES)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Every lowered request said so, once: the profile's 4 CPUs per group job and its GPU for
    # segmentation, on a node with fewer CPUs and no GPU.
    cpus = int(re.search(r"CPUTot=(\d+)", slurm(state, "scontrol", "show", "node", "-o")).group(1))
    caps = [line for line in proc.stderr.splitlines() if "cluster.fit cap:" in line]
    assert any("group segment asks 1 GPU(s)" in line and "no node of the partition has a GPU" in line for line in caps)
    if cpus < 4:
        assert any("group segment asks 4 CPUs" in line and f"submitting it with {cpus} CPUs" in line
                   for line in caps), caps
    assert len(caps) == len(set(caps)), caps

    jobs = slurm_jobs(state, workdir)
    # Every job SLURM ran for this workflow finished well, on the cluster's node.
    assert jobs and all(j["JobState"] == "COMPLETED" and j["CompletedState"] == "COMPLETED" for j in jobs), jobs
    comments = [j["Comment"] for j in jobs]
    # Grouped steps, the profile's group-components per SLURM job: prepare (a patient's rendering +
    # the ingest of its scans), segment and measure (with registration): each a job per patient;
    # only the reset patient ran.
    per_job = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())["group-components"]
    for group in ("prepare", "segment", "measure"):
        n = sum(c.startswith(f"group_{group}") or c.startswith(f"rule_{group}") for c in comments)
        assert n == -(-len(patients) // per_job[group]), (group, comments)
    for rule in ["track", "burden", "features", *CHECKED_RULES]:
        assert comments.count(f"rule_{rule}") == 1, (rule, comments)
    assert "rule_synth_trial" not in comments  # its outputs were kept
    # No job asked for more CPUs than the node has, nor for a GPU it does not have.
    for job in jobs:
        assert int(job["NumCPUs"]) <= cpus and not job.get("TresPerNode"), job

    # Same tables as the local run of the same config (session fixture), byte for byte, and the
    # recomputed scans' own outputs too.
    local, cluster = synthetic_run, workdir / "results" / name
    names = sorted({p.relative_to(local) for pattern in TABLES for p in local.glob(pattern)} - NOT_ASKED)
    names += sorted(p.relative_to(local) for s in redo for p in (local / "scans" / s).glob("*.parquet"))
    assert len(names) >= 8 + len(redo)
    different = [str(n) for n in names if (cluster / n).read_bytes() != (local / n).read_bytes()]
    assert not different, f"differ between the SLURM and the local run: {different}"


@pytest.mark.e2e
def test_preflight_stops_before_submitting_what_cannot_fit(slurm_cluster, tmp_path, monkeypatch):
    """The shipped profile on a node smaller than its requests, with the default `fit: fail`: one line
    per group that cannot fit, naming what the node offers and the profile line to edit, and no sbatch."""
    state = slurm_cluster
    monkeypatch.setenv("SLURM_CONF", str(state / "slurm.conf"))
    workdir = tmp_path / "run"
    workdir.mkdir()
    proc = snakemake(workdir, TINY)
    assert proc.returncode != 0
    node = re.search(r"CPUTot=(\d+).*RealMemory=(\d+)", slurm(state, "scontrol", "show", "node", "-o"))
    lines = [line.strip() for line in proc.stderr.splitlines()]
    assert any(line.startswith("tumorburden:") and "cannot run on this cluster, nothing submitted" in line
               for line in lines), proc.stderr[-3000:]
    segment = next(line for line in lines if line.startswith("group segment asks"))
    assert "1 GPU" in segment and f"offers {node.group(1)} CPUs, {node.group(2)} MB, no GPU" in segment
    assert "set-resources: gres of segment" in segment
    if int(node.group(1)) < 4:
        # a group job of per-patient steps asks the profile's 4 CPUs (the limit of one group job)
        assert any(line.startswith("group ") and " asks 4 CPUs" in line and "edit resources: cpus_per_task" in line
                   for line in lines), [line for line in lines if "asks" in line]
    assert not slurm_jobs(state, workdir)
    assert not (workdir / "results").exists()


@pytest.mark.e2e
def test_job_pending_on_a_drained_node_is_reported_and_cancelled(slurm_cluster, tmp_path, monkeypatch):
    """A job that waits for a node that is out of service is cancelled after cluster.pending_limit_s,
    with the reason and the fix in the log, and the run ends instead of waiting for ever."""
    state = slurm_cluster
    monkeypatch.setenv("SLURM_CONF", str(state / "slurm.conf"))
    workdir = tmp_path / "run"
    workdir.mkdir()
    node = re.search(r"NodeName=(\S+)", slurm(state, "scontrol", "show", "node", "-o")).group(1)
    slurm(state, "scontrol", "update", f"NodeName={node}", "State=DRAIN", "Reason=tumorburden-test")
    try:
        proc = snakemake(workdir, {**TINY, "cluster": {"fit": "cap", "pending_limit_s": 5}},
                         "results/tiny/synthetic/scans.tsv")
    finally:
        slurm(state, "scontrol", "update", f"NodeName={node}", "State=RESUME")
    assert proc.returncode != 0
    assert f"every node of partition debug is out of service ({node} drained)" in proc.stderr
    said = [line for line in proc.stderr.splitlines() if "which waiting does not clear" in line]
    assert said and all("(rule_synth_trial)" in line and "Nodes required for job are DOWN, DRAINED" in line
                        and "ask the cluster's administrators" in line and line.endswith("Cancelling it.")
                        for line in said), said
    jobs = slurm_jobs(state, workdir)
    # the job and its retry (retries: 1), both cancelled
    assert len(jobs) == 2 and all(j["JobState"] == "CANCELLED" for j in jobs), jobs


@pytest.mark.e2e
def test_gpu_request_reaches_slurm_for_segmentation_only(gpu_cluster, synthetic_run, tmp_path, monkeypatch):
    """On a node that declares a GPU, the profile's `gres: gpu:1` of segment is submitted as it is
    (its CPUs capped to the node's) and no other job asks for a GPU."""
    state = gpu_cluster
    monkeypatch.setenv("SLURM_CONF", str(state / "slurm.conf"))
    workdir = tmp_path / "run"
    name = TINY["study"]["name"]
    copy_run(synthetic_run, workdir / "results" / name)
    patient = sorted(pd.read_csv(synthetic_run / "synthetic" / "scans.tsv", sep="\t")["patient_id"])[0]
    target = f"results/{name}/qc/segment/{patient}.tsv"  # the patient's segmentation job
    # the request is the segment rule's whatever its engine: the classical one keeps the job (and the
    # executor's lengthening waits between status checks) short
    segmentation = {**TINY.get("segmentation", {}), "engine": "classical"}
    proc = snakemake(workdir, {**TINY, "segmentation": segmentation, "cluster": {"fit": "cap"}}, "--force", target)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not any("GPU(s)" in line for line in proc.stderr.splitlines() if "cluster.fit cap:" in line)
    jobs = slurm_jobs(state, workdir)
    assert len(jobs) == 1 and jobs[0]["Comment"].startswith(("group_segment", "rule_segment")), jobs
    assert jobs[0]["TresPerNode"] == "gres:gpu:1" and jobs[0]["JobState"] == "COMPLETED", jobs
