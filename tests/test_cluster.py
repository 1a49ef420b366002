"""The SLURM pre-flight and pending watch on recorded sinfo / squeue outputs of several cluster
shapes (workflow/tumorburden/cluster.py). The real cluster: tests/cluster/test_slurm_cluster.py."""

import pytest

from tumorburden.cluster import (
    ClusterError, PendingWatch, Request, capped, gres_gpus, misfits, never_clears, partition_of, problem_line,
    read_sinfo, read_squeue, slurm_minutes,
)

# Recorded on the one-node test cluster (tests/cluster/localhost-slurm.sh, Slurm 22.05.8): this
# machine as it is, 2 CPUs, 24105 MB, no GPU; and the same node drained.
SMALL = "debug*|vm|2|24105|(null)|idle|infinite|up\n"
SMALL_DRAINED = "debug*|vm|2|24105|(null)|drained|infinite|up\n"
# A site with a CPU and a GPU partition, MaxTime limits, a node down (shapes as sinfo prints them).
SITE = """cpu*|c01|32|192000|(null)|mixed|2-00:00:00|up
cpu*|c02|64|512000|(null)|down*|2-00:00:00|up
gpu|g01|16|256000|gpu:a100:4(S:0-1)|mixed|1-00:00:00|up
gpu|g02|16|128000|gpu:v100:2,shard:8|idle|1-00:00:00|up
short|c01|32|192000|(null)|mixed|4:00:00|up
"""
PROFILE = {  # what profiles/slurm asks for on the tiny trial (per SLURM job)
    "segment": Request("group", "segment", None, 4, 16000, 1, None, 720, ("segment",)),
    "measure": Request("group", "measure", None, 4, 16000, 0, None, 120, ("measure",)),
    "survival": Request("rule", "survival", None, 1, 4000, 0, None, 60, ("survival",)),
}
EDIT = {"cpus": "resources: cpus_per_task", "mem_mb": "resources: mem_mb", "gpus": "set-resources: segment: gres",
        "runtime": "group-components: segment"}


@pytest.mark.parametrize("text, minutes", [
    ("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:00", 30), ("4:00:00", 240),
    ("2-00:00:00", 2880), ("1-12", 2160), ("1-00:30", 1470), ("0:90", 1.5),
])
def test_slurm_time_format(text, minutes):
    assert slurm_minutes(text) == minutes


@pytest.mark.parametrize("gres, gpus", [
    ("(null)", (0, ())), ("gpu:1", (1, ())), ("gpu:a100:4(S:0-1)", (4, ("a100",))),
    ("gpu:v100:2,shard:8", (2, ("v100",))), ("gpu:a100:2,gpu:v100:1", (3, ("a100", "v100"))), ("shard:8", (0, ())),
])
def test_gres_gpus(gres, gpus):
    assert gres_gpus(gres) == gpus


def test_partitions_and_nodes_from_sinfo():
    site = read_sinfo(SITE)
    assert sorted(site) == ["cpu", "gpu", "short"]
    assert site["cpu"].default and not site["gpu"].default
    assert site["gpu"].max_time_min == 1440 and site["short"].max_time_min == 240
    assert [n.name for n in site["cpu"].nodes] == ["c01", "c02"]
    assert not site["cpu"].nodes[1].in_service and site["cpu"].nodes[0].in_service
    assert site["gpu"].largest_node(4).name == "g01"
    small = read_sinfo(SMALL)["debug"]
    assert small.max_time_min is None and small.nodes[0].offer() == "2 CPUs, 24105 MB, no GPU"
    with pytest.raises(ClusterError, match="sinfo line 1"):
        read_sinfo("debug*|vm|2\n")


def test_small_cluster_misfits_name_what_does_not_fit():
    small = read_sinfo(SMALL)
    part = partition_of(PROFILE["segment"], small)
    assert misfits(PROFILE["segment"], part) == ["cpus", "gpus"]
    assert misfits(PROFILE["measure"], part) == ["cpus"]
    assert misfits(PROFILE["survival"], part) == []
    line = problem_line(PROFILE["segment"], part, ["cpus", "gpus"], EDIT)
    assert line == ("group segment asks 4 CPUs, 16000 MB, 1 GPU, 720 min on partition debug (default); its largest "
                    "node offers 2 CPUs, 24105 MB, no GPU (vm), no MaxTime: edit resources: cpus_per_task; "
                    "set-resources: segment: gres")


def test_site_partitions_gpu_types_and_max_time():
    site = read_sinfo(SITE)
    on_gpu = Request("rule", "segment", "gpu", 8, 100000, 1, "a100", 120, ("segment",))
    assert misfits(on_gpu, site["gpu"]) == []
    # enough memory on the A100 node, but the V100 node is the one with the GPUs asked for
    assert misfits(Request("rule", "x", "gpu", 8, 200000, 2, "v100", 60), site["gpu"]) == ["mem_mb"]
    assert misfits(Request("rule", "x", "gpu", 1, 1000, 1, "h100", 60), site["gpu"]) == ["gpus"]
    # the 64-CPU node is down but still the partition's: requests are held against what exists
    assert misfits(Request("rule", "x", None, 64, 1000, 0, None, 60), site["cpu"]) == []
    assert misfits(Request("rule", "x", None, 65, 1000, 0, None, 60), site["cpu"]) == ["cpus"]
    assert misfits(Request("group", "segment", "short", 4, 1000, 0, None, 720), site["short"]) == ["runtime"]
    assert misfits(Request("group", "segment", "gpu", 4, 1000, 0, None, 1440), site["gpu"]) == []
    with pytest.raises(ClusterError, match="partition 'bigmem' does not exist.*cpu, gpu, short"):
        partition_of(Request("rule", "x", "bigmem", 1, 1, 0, None, 1), site)
    with pytest.raises(ClusterError, match="no default partition"):
        partition_of(Request("rule", "x", None, 1, 1, 0, None, 1), {"gpu": site["gpu"]})


def test_cap_lowers_to_the_largest_node_and_drops_gpus_only_where_none_exists():
    small = read_sinfo(SMALL)["debug"]
    assert capped(PROFILE["segment"], small) == {"gpus": 0, "cpus": 2}
    assert capped(Request("rule", "x", None, 1, 30000, 0, None, 1), small) == {"mem_mb": 24105}
    assert capped(PROFILE["survival"], small) == {}
    gpu = read_sinfo(SITE)["gpu"]
    assert capped(Request("rule", "segment", "gpu", 32, 16000, 1, None, 60), gpu) == {"cpus": 16}
    # after the cap, the request fits
    assert misfits(Request("group", "segment", None, 2, 16000, 0, None, 720), small) == []


def squeue(*rows):
    return "".join("|".join(r) + "\n" for r in rows)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_pending_watch_reports_reasons_that_never_clear_after_the_limit():
    clock = Clock()
    watch = PendingWatch("/w", limit_s=60, log=print, clock=clock)
    small = read_sinfo(SMALL)
    out = squeue(("11", "PENDING", "PartitionConfig", "group_segment", "/w", "debug"),
                 ("12", "PENDING", "Resources", "group_measure", "/w", "debug"),
                 ("13", "PENDING", "Priority", "rule_track", "/w", "debug"),
                 ("14", "PENDING", "QOSMaxCpuPerJobLimit", "rule_burden", "/w", "debug"),
                 ("15", "PENDING", "QOSMaxJobsPerUserLimit", "rule_features", "/w", "debug"),
                 ("16", "PENDING", "PartitionConfig", "group_segment", "/elsewhere", "debug"),
                 ("17", "PENDING", "PartitionConfig", "someone_else", "/w", "debug"),
                 ("18", "RUNNING", "None", "rule_survival", "/w", "debug"))
    assert watch.check(out, small) == []
    clock.now = 59
    assert watch.check(out, small) == []
    clock.now = 60
    due = watch.check(out, small)
    assert [job.jobid for job, _ in due] == ["11", "14"]
    assert "lower the request" in due[0][1] and "QOS" in due[1][1]
    # the retry of the same job, pending for the same reason, is not given the limit again
    retry = squeue(("21", "PENDING", "PartitionConfig", "group_segment", "/w", "debug"))
    assert [job.jobid for job, _ in watch.check(retry, small)] == ["21"]


def test_unavailable_nodes_count_only_when_the_partition_has_none_in_service():
    reason = "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"
    assert never_clears(reason, read_sinfo(SMALL_DRAINED)["debug"]) is not None
    assert never_clears(reason, read_sinfo(SMALL)["debug"]) is None  # reserved, or rebooting: it may clear
    assert never_clears("ReqNodeNotAvail, UnavailableNodes:c02", read_sinfo(SITE)["cpu"]) is None
    assert never_clears("Dependency", None) is None and never_clears("BeginTime", None) is None
    clock = Clock()
    watch = PendingWatch("/w", limit_s=10, log=print, clock=clock)
    out = squeue(("31", "PENDING", reason, "rule_synth_trial", "/w", "debug"))
    assert watch.check(out, read_sinfo(SMALL_DRAINED)) == []
    clock.now = 10
    assert [job.jobid for job, _ in watch.check(out, read_sinfo(SMALL_DRAINED))] == ["31"]
    # a job that left the queue is forgotten
    assert watch.check("", {}) == [] and watch.first_seen == {}


def test_squeue_rows_of_this_workflow():
    rows = read_squeue(squeue(("5", "PENDING", "PartitionConfig", "rule_segment_wildcards_scan_id=A", "/w", "gpu"),
                              ("6", "RUNNING", "None", "rule_track", "/w", "cpu")) + "garbage\n", "/w")
    assert [(r.jobid, r.partition) for r in rows] == [("5", "gpu")]
