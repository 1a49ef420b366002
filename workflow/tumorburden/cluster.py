"""SLURM before and while a run: the pre-flight and the pending watch.

Before the first `sbatch`, every SLURM job the run will submit (a rule's job, or a group job
with the group's summed request) is held against the partitions and nodes `sinfo` reports:
CPUs, memory and GPUs against the largest node of the job's partition, runtime against the
partition's MaxTime. A request that cannot fit anywhere would stay PENDING for ever
(`PartitionConfig`), or fail at submission with a message about the node configuration;
instead the run stops in seconds with one line per rule or group, or, with
`cluster: {fit: cap}`, lowers CPUs and memory to the largest node and drops GPU requests on
partitions without GPUs, one warning line per change.

While the run goes, the pending watch reads `squeue` for the run's jobs; a job left PENDING
for a reason that waiting does not clear (see STUCK_REASONS) is reported with the reason and
the fix after `cluster.pending_limit_s`, and cancelled: the executor then sees it fail and
Snakemake stops, or goes on with the rest under `keep-going`.

The pinned snakemake-executor-plugin-slurm (2.8.0) computes a job's CPUs and GPUs with
`get_job_cpu_requirement` and `parse_gpu_requirements`; they are used here so the request
checked is the one it submits. The plugin itself does not look at pending reasons, and its
partition limits (`--slurm-partition-config`) choose a partition but fall back to the default
one, with a warning, when none fits.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace

DEFAULTS = {
    "fit": "fail",  # fail: stop before submitting when a request cannot fit | cap: lower it to the largest node
    "pending_limit_s": 300,  # a job pending this long for a reason that never clears is cancelled
}

# One row per (partition, node): partition (default marked *), node, CPUs, memory MB, gres,
# node state, partition MaxTime, partition availability.
SINFO_FORMAT = "%P|%N|%c|%m|%G|%T|%l|%a"
SQUEUE_FORMAT = "%i|%T|%r|%k|%Z|%P"
# Node states (sinfo %T, long form) in which a node takes no new job until an administrator acts.
OUT_OF_SERVICE = ("down", "drain", "fail", "inval", "future")

PROFILE_FIX = "lower the request in your copy of profiles/slurm/config.yaml, or set `cluster: {fit: cap}`"
STUCK_REASONS = {
    "PartitionConfig": f"it asks more CPUs, memory or GPUs than any node of its partition has: {PROFILE_FIX}",
    "PartitionNodeLimit": f"it asks more nodes or CPUs than its partition allows: {PROFILE_FIX}",
    "PartitionTimeLimit": "its runtime is above the partition's MaxTime: lower `runtime` (or the group's"
                          " `group-components`) in the profile",
    "PartitionDown": "its partition is down: ask the cluster's administrators, or set `slurm_partition` to another",
    "PartitionInactive": "its partition is inactive: set `slurm_partition` to another partition",
    "BadConstraints": "no node has the features it asks for: fix `constraint` in the profile",
    "DependencyNeverSatisfied": "a job it depends on failed: rerun the workflow",
    "InvalidAccount": "the account is not valid: set `slurm_account` in the profile (EDIT 1)",
    "InvalidQOS": "the QOS is not valid for the account: set `qos` in the profile or leave it out",
    "NodeDown": "a node it needs is down: ask the cluster's administrators, or use another partition",
    "ReqNodeNotAvail": "every node of its partition is down or drained: ask the cluster's administrators,"
                       " or set `slurm_partition` to another partition",
}
# Per-job limits of a QOS or an association (QOSMaxCpuPerJobLimit, AssocMaxWallDurationPerJobLimit,
# ...) never clear; per-user and group limits (QOSMaxJobsPerUserLimit, AssocGrpCpuLimit) do.
PER_JOB_LIMIT = re.compile(r"^(QOS|Assoc)(Max|Min)\w*(PerJob|PerNode|NotSatisfied|MinGRES)\w*$")
PER_JOB_FIX = "it is above a per-job limit of its QOS or account (`sacctmgr show qos`): lower the request in the profile"
# SLURM 22.05 words a wait on unavailable nodes this way, without naming them.
NODES_UNAVAILABLE = "Nodes required for job are DOWN, DRAINED"


class ClusterError(Exception):
    """The cluster cannot run what the workflow asks; the message says what to edit."""


def slurm_minutes(text: str) -> float | None:
    """SLURM's time format ([days-]hours:minutes:seconds, minutes:seconds, minutes) in minutes;
    None for no limit."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "none", "n/a", ""):
        return None
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        parts += [0.0] * (3 - len(parts))
        hours, minutes, seconds = parts
    else:
        parts = [0.0] * (3 - len(parts)) + parts if len(parts) > 1 else [0.0, parts[0], 0.0]
        hours, minutes, seconds = parts
    return float(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def gres_gpus(gres: str) -> tuple[int, tuple[str, ...]]:
    """GPU count and types of a gres string: `(null)`, `gpu:2`, `gpu:a100:4(S:0-1)`,
    `gpu:a100:2,gpu:v100:1,shard:8`."""
    count, types = 0, []
    for item in re.split(r",(?![^()]*\))", gres or ""):
        parts = re.sub(r"\(.*\)$", "", item.strip()).split(":")
        if parts[0] != "gpu":
            continue
        n = parts[-1] if len(parts) > 1 and parts[-1].isdigit() else "1"
        count += int(n)
        if len(parts) == 3 or (len(parts) == 2 and not parts[1].isdigit()):
            types.append(parts[1])
    return count, tuple(types)


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int
    gpu_types: tuple[str, ...]
    state: str

    @property
    def in_service(self) -> bool:
        return not self.state.lower().lstrip("!").startswith(OUT_OF_SERVICE)

    def offer(self) -> str:
        gpus = f"{self.gpus} GPU{'s' * (self.gpus != 1)}" if self.gpus else "no GPU"
        return f"{self.cpus} CPUs, {self.mem_mb} MB, {gpus}"


@dataclass
class Partition:
    name: str
    default: bool
    max_time_min: float | None
    up: bool
    nodes: list[Node] = field(default_factory=list)

    def largest_node(self, gpus: int = 0, gpu_type: str | None = None) -> Node | None:
        """The node with the most CPUs, then memory, among those with the GPUs (of the type) asked
        for if any has them."""
        if not self.nodes:
            return None
        with_gpus = [n for n in self.nodes if n.gpus >= gpus and (not gpu_type or gpu_type in n.gpu_types)]
        with_gpus = with_gpus or [n for n in self.nodes if n.gpus >= gpus] or self.nodes
        return max(with_gpus, key=lambda n: (n.cpus, n.mem_mb, n.gpus))


def read_sinfo(text: str) -> dict[str, Partition]:
    """Partitions and their nodes from `sinfo -N -h -o SINFO_FORMAT`."""
    partitions: dict[str, Partition] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 8:
            raise ClusterError(f"sinfo line {number} is not in the format {SINFO_FORMAT}: {line!r}")
        name, node, cpus, mem, gres, state, max_time, avail = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        part = partitions.setdefault(
            name, Partition(name, default, slurm_minutes(max_time), avail.strip().lower() == "up"))
        gpus, types = gres_gpus(gres)
        part.nodes.append(Node(node, int(cpus.rstrip("+")), int(mem.rstrip("+")), gpus, types, state.strip()))
    return partitions


def query_partitions(run=subprocess.run) -> dict[str, Partition]:
    try:
        proc = run(["sinfo", "-N", "-h", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"cannot read the cluster's partitions with sinfo ({exc}): run Snakemake on a "
                           "login node of the cluster") from exc
    if proc.returncode != 0:
        raise ClusterError(f"sinfo failed: {' '.join(proc.stderr.split())[:300]}")
    partitions = read_sinfo(proc.stdout)
    if not partitions:
        raise ClusterError("sinfo lists no partition: this SLURM cluster has no node to run jobs on")
    return partitions


@dataclass
class Request:
    """What one SLURM job of a rule (or of a group) asks, as the executor submits it; for many
    jobs of one rule or group, the largest of each."""

    kind: str  # "rule" | "group"
    name: str
    partition: str | None  # None: the cluster's default partition
    cpus: int
    mem_mb: int
    gpus: int
    gpu_type: str | None
    runtime_min: float | None
    rules: tuple[str, ...] = ()
    jobs: int = 1
    note: str = ""  # e.g. that the jobs are not known yet


    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}{f' ({self.note})' if self.note else ''}"

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU{'s' * (self.gpus != 1)}" + (f" ({self.gpu_type})" if self.gpu_type else "")
        time_ = f", {self.runtime_min:g} min" if self.runtime_min else ""
        return f"{self.cpus} CPUs, {self.mem_mb} MB{gpus if self.gpus else ''}{time_}"

    def merged(self, other: Request) -> Request:
        return replace(self, cpus=max(self.cpus, other.cpus), mem_mb=max(self.mem_mb, other.mem_mb),
                       gpus=max(self.gpus, other.gpus), gpu_type=self.gpu_type or other.gpu_type,
                       runtime_min=max(self.runtime_min or 0, other.runtime_min or 0) or None,
                       rules=tuple(sorted(set(self.rules) | set(other.rules))), jobs=self.jobs + other.jobs)


def partition_of(request: Request, partitions: dict[str, Partition]) -> Partition:
    if request.partition is not None:
        if request.partition not in partitions:
            raise ClusterError(
                f"{request.label}: partition {request.partition!r} does not exist on this cluster "
                f"(sinfo lists {', '.join(sorted(partitions))}): fix slurm_partition in the profile")
        return partitions[request.partition]
    defaults = [p for p in partitions.values() if p.default]
    if not defaults:
        raise ClusterError(
            f"{request.label}: no slurm_partition given and the cluster has no default partition "
            f"(sinfo lists {', '.join(sorted(partitions))}): set slurm_partition under default-resources "
            "in the profile (EDIT 1)")
    return defaults[0]


def misfits(request: Request, partition: Partition) -> list[str]:
    """What of the request no node of the partition offers: ["cpus", "mem_mb", "gpus", "runtime"]."""
    node = partition.largest_node(request.gpus, request.gpu_type)
    if node is None:
        return ["cpus", "mem_mb"]
    fits_one = [n for n in partition.nodes if n.cpus >= request.cpus and n.mem_mb >= request.mem_mb
                and n.gpus >= request.gpus
                and (not request.gpu_type or request.gpu_type in n.gpu_types)]
    out = []
    if not fits_one:
        out += [what for what, asked, has in
                [("cpus", request.cpus, node.cpus), ("mem_mb", request.mem_mb, node.mem_mb),
                 ("gpus", request.gpus, node.gpus)] if asked > has]
        if request.gpu_type and not any(request.gpu_type in n.gpu_types for n in partition.nodes):
            out.append("gpus")
        out = sorted(set(out), key=["cpus", "mem_mb", "gpus"].index) or ["cpus", "mem_mb"]
    if request.runtime_min and partition.max_time_min is not None and request.runtime_min > partition.max_time_min:
        out.append("runtime")
    return out


def problem_line(request: Request, partition: Partition, missing: list[str], profile_keys: dict[str, str]) -> str:
    node = partition.largest_node(request.gpus, request.gpu_type)
    offer = node.offer() + f" ({node.name})" if node else "no node"
    limit = "no MaxTime" if partition.max_time_min is None else f"MaxTime {partition.max_time_min:g} min"
    edit = "; ".join(dict.fromkeys(profile_keys[m] for m in missing))
    return (f"{request.label} asks {request.describe()} on partition {partition.name}"
            f"{' (default)' if request.partition is None else ''}; its largest node offers {offer}, {limit}"
            f": edit {edit}")


def capped(request: Request, partition: Partition) -> dict[str, object]:
    """The changes `fit: cap` makes: {"cpus": n, "mem_mb": n, "gpus": 0} where the request is above the
    partition's largest node (GPUs only where no node has one)."""
    changes: dict[str, object] = {}
    if request.gpus and not any(n.gpus for n in partition.nodes):
        changes["gpus"] = 0
    gpus = 0 if "gpus" in changes else request.gpus
    node = partition.largest_node(gpus)
    if node is None:
        return changes
    if request.cpus > node.cpus:
        changes["cpus"] = node.cpus
    if request.mem_mb > node.mem_mb:
        changes["mem_mb"] = node.mem_mb
    return changes


# --- the pending watch ------------------------------------------------------------------------

@dataclass(frozen=True)
class PendingJob:
    jobid: str
    reason: str
    comment: str
    partition: str


def read_squeue(text: str, workdir: str) -> list[PendingJob]:
    """Pending jobs of this workflow (its working directory, and the executor's rule_/group_ comment)
    from `squeue -h -o SQUEUE_FORMAT`."""
    jobs = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != 6:
            continue
        jobid, state, reason, comment, jobdir, partition = fields
        if state == "PENDING" and jobdir == workdir and comment.startswith(("rule_", "group_")):
            jobs.append(PendingJob(jobid, reason.strip(), comment, partition))
    return jobs


def never_clears(reason: str, partition: Partition | None) -> str | None:
    """The fix for a pending reason that waiting does not clear, else None."""
    key = reason.split(",")[0].strip()
    if key in ("ReqNodeNotAvail",) or reason.startswith(NODES_UNAVAILABLE):
        # also given while a node reboots or is reserved: stuck only if the partition has no node
        # in service
        if partition is not None and partition.nodes and not any(n.in_service for n in partition.nodes):
            return STUCK_REASONS["ReqNodeNotAvail"]
        return None
    if key in STUCK_REASONS:
        return STUCK_REASONS[key]
    if PER_JOB_LIMIT.match(key):
        return PER_JOB_FIX
    return None


class PendingWatch:
    """Reads squeue every `poll_s`; cancels a job of this run pending `limit_s` for a reason that
    never clears, after saying why in the log. A job resubmitted by a retry with the same comment
    and reason is cancelled at its first sighting: it would wait just the same."""

    def __init__(self, workdir: str, limit_s: float, log, poll_s: float | None = None, run=subprocess.run,
                 clock=time.monotonic):
        self.workdir, self.limit_s, self.log, self.run, self.clock = workdir, float(limit_s), log, run, clock
        self.poll_s = poll_s if poll_s is not None else max(2.0, min(30.0, self.limit_s / 3))
        self.first_seen: dict[str, float] = {}
        self.known_stuck: dict[tuple[str, str], str] = {}
        self.cancelled: list[PendingJob] = []

    def check(self, squeue_text: str, partitions: dict[str, Partition]) -> list[tuple[PendingJob, str]]:
        """The jobs to cancel now, with the fix, given squeue's output and the partitions."""
        now = self.clock()
        due = []
        pending = read_squeue(squeue_text, self.workdir)
        for job in pending:
            fix = never_clears(job.reason, partitions.get(job.partition))
            if fix is None:
                self.first_seen.pop(job.jobid, None)
                continue
            first = self.first_seen.setdefault(job.jobid, now)
            reason_key = job.reason.split(",")[0]
            if now - first >= self.limit_s or (job.comment, reason_key) in self.known_stuck:
                due.append((job, fix))
                self.known_stuck[(job.comment, reason_key)] = fix
        still = {j.jobid for j in pending}
        for jobid in list(self.first_seen):
            if jobid not in still:
                del self.first_seen[jobid]
        return due

    def poll_once(self) -> None:
        out = self.run(["squeue", "--me", "-h", "-t", "PENDING", "-o", SQUEUE_FORMAT],
                       capture_output=True, text=True, timeout=60)
        if out.returncode != 0 or not out.stdout.strip():
            return
        pending = read_squeue(out.stdout, self.workdir)
        if not pending:
            return
        # node states only matter for a wait on unavailable nodes
        needs_nodes = any(j.reason.startswith((NODES_UNAVAILABLE, "ReqNodeNotAvail")) for j in pending)
        partitions = query_partitions(self.run) if needs_nodes else {}
        for job, fix in self.check(out.stdout, partitions):
            waited = self.clock() - self.first_seen.get(job.jobid, self.clock())
            self.log(f"tumorburden: SLURM job {job.jobid} ({job.comment}) pending {waited:.0f} s on partition "
                     f"{job.partition} for {job.reason!r}, which waiting does not clear: {fix}. Cancelling it.")
            self.run(["scancel", job.jobid], capture_output=True, text=True, timeout=60)
            self.cancelled.append(job)

    def start(self) -> threading.Thread:
        def loop():
            while True:
                time.sleep(self.poll_s)
                try:
                    self.poll_once()
                except Exception as exc:  # a failed squeue must not end the run; say it and go on
                    self.log(f"tumorburden: pending watch: {exc}")

        thread = threading.Thread(target=loop, name="tumorburden-pending-watch", daemon=True)
        thread.start()
        return thread


def settings_of(config: dict) -> dict:
    return {**DEFAULTS, **(config.get("cluster") or {})}


# --- the hook in Snakemake (workflow/rules/common.smk calls on_start from `onstart`) -----------

def request_of(unit) -> Request:
    """A Snakemake job or group job's request as snakemake-executor-plugin-slurm submits it."""
    from snakemake_executor_plugin_slurm.partitions import get_job_cpu_requirement, parse_gpu_requirements

    res = unit.resources
    gpus, gpu_type = parse_gpu_requirements(unit)
    cpus, per = get_job_cpu_requirement(unit)
    cpus = cpus * max(gpus, 1) if per == "gpu" else cpus
    mem = res.get("mem_mb") or (res.get("mem_mb_per_cpu") or 0) * cpus
    runtime = res.get("runtime")
    if unit.is_group():
        kind, name, rules = "group", unit.groupid, tuple(sorted({j.rule.name for j in unit.jobs}))
    else:
        kind, name, rules = "rule", unit.rule.name, (unit.rule.name,)
    return Request(kind, name, res.get("slurm_partition") or None, int(cpus), int(mem or 0), int(gpus),
                   gpu_type, float(runtime) if isinstance(runtime, (int, float)) and runtime else None, rules)


def submitted_requests(dag) -> list[Request]:
    """One request per rule and per group of the jobs this run will submit, the largest of each."""
    by_label: dict[str, Request] = {}
    seen = set()
    for job in dag.needrun_jobs():
        group = dag.get_job_group(job)
        unit = group if group is not None else job
        if id(unit) in seen or (group is None and job.is_local):
            continue
        seen.add(id(unit))
        req = request_of(unit)
        by_label[req.label] = by_label[req.label].merged(req) if req.label in by_label else req
    return list(by_label.values())


def after_checkpoint_requests(workflow, requests: list[Request]) -> list[Request]:
    """Groups whose jobs only exist once a checkpoint has run (a dicom_root study's per-scan steps,
    after `discover`), which the DAG does not hold yet: each rule's own request, and for the group
    the profile's limit of one group job (`resources:`), which a full group reaches."""
    if not any(job.is_checkpoint for job in workflow.dag.needrun_jobs()):
        return []
    known = {rule for req in requests for rule in req.rules}
    limits = workflow.global_resources

    from snakemake.iocontainers import InputFiles

    def static(resources, name):
        value = resources.get(name)
        if hasattr(value, "is_evaluable"):  # snakemake.resources.Resource
            return None if value.is_evaluable() else value.value
        return value

    by_group: dict[str, Request] = {}
    for rule in workflow.rules:
        if rule.name in known or rule.group is None or workflow.is_local(rule):
            continue
        try:  # with no wildcards and no input yet: the profile's values are constants
            res = rule.expand_resources({}, InputFiles(), 1)
        except Exception:
            res = rule.resources
        gpus, types = gres_gpus(str(static(res, "gres") or ""))
        cpus = static(res, "cpus_per_task") or static(res, "_cores") or 1
        mem = static(res, "mem_mb") or 0
        runtime = static(res, "runtime")
        # a job's own request is held to the limits, and a full group job reaches them
        cpus = limits.get("cpus_per_task").value or cpus
        mem = limits.get("mem_mb").value or mem
        req = Request("group", str(rule.group), static(res, "slurm_partition") or None, int(cpus), int(mem), gpus,
                      types[0] if types else None, float(runtime) if isinstance(runtime, int) else None,
                      (rule.name,), note="its jobs come after a checkpoint")
        by_group[req.name] = by_group[req.name].merged(req) if req.name in by_group else req
    return list(by_group.values())


def profile_keys(request: Request, workflow) -> dict[str, str]:
    """The profile line to edit for each part of a request."""
    if request.kind == "group":
        scoped = workflow.global_resources
        return {
            "cpus": "resources: cpus_per_task (the CPUs of one group job)" if scoped.get("cpus_per_task").value
            else f"set-resources: cpus_per_task of {', '.join(request.rules)}",
            "mem_mb": "resources: mem_mb (the memory of one group job)" if scoped.get("mem_mb").value
            else f"set-resources: mem_mb of {', '.join(request.rules)}",
            "gpus": f"set-resources: gres of {', '.join(request.rules)}",
            "runtime": f"group-components: {request.name} (fewer per job) or set-resources: runtime of "
                       f"{', '.join(request.rules)}",
        }
    rule = request.name
    return {"cpus": f"set-resources: {rule}: cpus_per_task (and set-threads: {rule})",
            "mem_mb": f"set-resources: {rule}: mem_mb", "gpus": f"set-resources: {rule}: gres",
            "runtime": f"set-resources: {rule}: runtime"}


def _without_gpus(resources):
    """A rule's resources (snakemake.resources.Resources) less its GPU requests."""
    from snakemake.resources import Resource, Resources

    out = {}
    for name, value in resources.items():
        if name in ("gpu", "gpu_model", "cpus_per_gpu"):
            continue
        if name == "gres" and isinstance(value.raw, str):
            rest = ",".join(g for g in value.raw.split(",") if not g.strip().startswith("gpu"))
            if not rest:
                continue
            value = Resource(name, rest)
        out[name] = value
    return Resources(out)


def _cap_rule(workflow, rule_name: str, changes: dict) -> None:
    """Lower one rule's own requests to the caps, where above them, in the rule and in the
    --set-resources/--set-threads its jobs' own Snakemake gets (srun inside the job asks for them)."""
    from snakemake.resources import Resource, Resources

    settings = workflow.resource_settings
    rule = workflow.get_rule(rule_name)
    overwrite = settings.overwrite_resources.get(rule_name) or Resources()
    if "gpus" in changes:
        rule.resources = _without_gpus(rule.resources)
        overwrite = _without_gpus(overwrite)

    def above(name, cap):
        current = rule.resources.get(name)
        return current.is_evaluable() or (isinstance(current.value, int) and current.value > cap)

    if "cpus" in changes:
        n = changes["cpus"]
        if above("cpus_per_task", n):
            rule.resources["cpus_per_task"] = overwrite["cpus_per_task"] = n
        if above("_cores", n):
            rule.resources["_cores"] = Resource("_cores", n)
            settings.overwrite_threads[rule_name] = n
    if "mem_mb" in changes and above("mem_mb", changes["mem_mb"]):
        rule.resources["mem_mb"] = overwrite["mem_mb"] = changes["mem_mb"]
    settings.overwrite_resources[rule_name] = overwrite


def apply_caps(workflow, requests: list[Request], partitions: dict[str, Partition], warn) -> bool:
    """Lower what `fit: cap` lowers, in the rules, in the arguments the jobs' own Snakemake gets
    (--set-resources, --set-threads) and in the group limits; one warning line per change."""
    settings = workflow.resource_settings
    changed = False
    for req in requests:
        partition = partition_of(req, partitions)
        changes = capped(req, partition)
        if not changes:
            continue
        node = partition.largest_node(0 if "gpus" in changes else req.gpus)
        changed = True
        for what, new in changes.items():
            old = {"cpus": req.cpus, "mem_mb": req.mem_mb, "gpus": req.gpus}[what]
            unit = {"cpus": " CPUs", "mem_mb": " MB", "gpus": " GPU(s)"}[what]
            why = "no node of the partition has a GPU" if what == "gpus" else f"its largest node {node.name} offers {new}{unit}"
            warn(f"tumorburden: cluster.fit cap: {req.label} asks {old}{unit} on partition {partition.name}; "
                 f"{why}: submitting it with {new}{unit}")
        for rule_name in req.rules:
            _cap_rule(workflow, rule_name, changes)
        if req.kind == "group":
            for what, key in (("cpus", "cpus_per_task"), ("mem_mb", "mem_mb")):
                if what in changes:
                    current = workflow.global_resources.get(key).value
                    workflow.global_resources[key] = min(changes[what], current) if current else changes[what]
    if changed:
        # Snakemake parses --set-resources/--set-threads once and caches jobs' resources: recompute.
        for cached in ("_parsed_overwrite_resources", "_parsed_overwrite_threads"):
            settings.__dict__.pop(cached, None)
        for job in workflow.dag.jobs:
            job._resources = job._scheduler_resources = None
            group = workflow.dag.get_job_group(job)
            if group is not None:
                group._resources = group._scheduler_resources = None
    return changed


def on_start(workflow, config: dict, log=None) -> PendingWatch | None:
    """The pre-flight (and `fit: cap`) before the first sbatch, then the pending watch; for the slurm
    executor only. Raises ClusterError with one line per rule or group that cannot fit."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm":
        return None
    if log is None:
        from snakemake.logging import logger
        log = logger.warning
    settings = settings_of(config)
    partitions = query_partitions()
    requests = submitted_requests(workflow.dag)
    requests += after_checkpoint_requests(workflow, requests)
    if settings["fit"] == "cap" and apply_caps(workflow, requests, partitions, log):
        requests = submitted_requests(workflow.dag)
        requests += after_checkpoint_requests(workflow, requests)
    problems = []
    for req in sorted(requests, key=lambda r: (r.kind != "rule", r.name)):
        partition = partition_of(req, partitions)
        missing = misfits(req, partition)
        if missing:
            problems.append(problem_line(req, partition, missing, profile_keys(req, workflow)))
    if problems:
        hint = "" if settings["fit"] == "cap" else "; or set `cluster: {fit: cap}` to fit CPUs and memory to the nodes"
        raise ClusterError(f"{len(problems)} SLURM request(s) cannot run on this cluster, nothing submitted{hint}:\n"
                           + "\n".join(f"  {line}" for line in problems))
    used = sorted({partition_of(r, partitions).name for r in requests})
    for name in used:
        part = partitions[name]
        if not any(n.in_service for n in part.nodes):
            log(f"tumorburden: cluster pre-flight: every node of partition {name} is out of service "
                f"({', '.join(f'{n.name} {n.state}' for n in part.nodes)}); jobs will wait for one")
    log(f"tumorburden: cluster pre-flight: {len(requests)} rule/group request(s) fit partition(s) "
        + ", ".join(f"{n} (largest node {partitions[n].largest_node().name}: {partitions[n].largest_node().offer()})"
                    for n in used))
    watch = PendingWatch(str(workflow.workdir_init), settings["pending_limit_s"], log)
    watch.start()
    return watch
