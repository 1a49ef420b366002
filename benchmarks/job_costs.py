"""Where a finished run's time went, per rule: each job's own figure from the last line of its log
(`tumorburden <stage>` ends with "done: W s wall, C CPU-s", getrusage of the job's process and its
children) beside what Snakemake's benchmark file for the same job says.

The benchmark files sample a job's CPU every 0.5 s for its first 15 s and then every 30 s, keeping
the last sample, so a job longer than ~15 s is under-counted by what it spent after that sample;
the log line is the job's own count to its end. Jobs without a benchmark file (the study-level
steps) are listed from their logs alone.

Usage: python benchmarks/job_costs.py results/<study>   (prints a Markdown table)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

DONE = re.compile(r"done: ([0-9.]+) s wall, ([0-9.]+) CPU-s")


def job_costs(results: Path) -> pd.DataFrame:
    rows = []
    for log in sorted((results / "logs").rglob("*.log")):
        found = DONE.findall(log.read_text(errors="replace"))
        if not found:
            continue
        rel = log.relative_to(results / "logs")
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        wall, cpu = map(float, found[-1])
        bench = results / "benchmarks" / rel.with_suffix(".tsv")
        bench_cpu = pd.read_csv(bench, sep="\t")["cpu_time"].iloc[0] if bench.exists() else float("nan")
        rows.append({"rule": rule, "wall_s": wall, "cpu_s": cpu, "benchmark_cpu_s": bench_cpu})
    return pd.DataFrame(rows)


def main(results: str) -> None:
    jobs = job_costs(Path(results))
    if jobs.empty:
        sys.exit(f"{results}: no job log ends with a 'done:' line; run the workflow with this version first")
    by_rule = jobs.groupby("rule").agg(jobs=("rule", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                       benchmark_cpu_s=("benchmark_cpu_s", lambda v: v.sum(min_count=1)))
    by_rule = by_rule.sort_values("cpu_s", ascending=False)
    print("| rule | jobs | wall s (sum) | CPU s (job logs) | CPU s (benchmark files) |")
    print("| --- | --- | --- | --- | --- |")
    for rule, r in by_rule.iterrows():
        bench = "" if pd.isna(r["benchmark_cpu_s"]) else f"{r['benchmark_cpu_s']:.0f}"
        print(f"| `{rule}` | {r['jobs']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {bench} |")
    print(f"| all | {len(jobs)} | {jobs['wall_s'].sum():.0f} | {jobs['cpu_s'].sum():.0f} | |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
