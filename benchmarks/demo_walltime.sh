#!/usr/bin/env bash
# Wall time of the two commands from a fresh clone: install (make setup) and the pipeline
# (snakemake on the default config), then the end-to-end test. The peer for the pipeline is
# the sum of its jobs' own run times (Snakemake `benchmark:` files) divided by the cores:
# the ratio says how much the workflow engine and process start-up add.
# Usage: bash benchmarks/demo_walltime.sh [CORES]   (prints a Markdown block for BENCHMARKS.md)
set -euo pipefail
cores=${1:-2}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/tb"
cd "$work/tb"
now() { date +%s.%N; }
t0=$(now); make setup >/dev/null; t1=$(now)
PATH="$PWD/.venv/bin:$PATH" .venv/bin/snakemake --cores "$cores" --quiet all >/dev/null 2>"$work/snakemake.err" || { tail -20 "$work/snakemake.err"; exit 1; }
t2=$(now)
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest -q tests/test_workflow.py >/dev/null; t3=$(now)
jobs_s=$(cat results/*/benchmarks/*/*.tsv | awk '$1 ~ /^[0-9.]+$/ {s += $1} END {print s}')
n_scans=$(ls results/*/scans | wc -l)
python3 - "$t0" "$t1" "$t2" "$t3" "$jobs_s" "$cores" "$n_scans" <<'PY'
import sys
t0, t1, t2, t3, jobs, cores, n = map(float, sys.argv[1:])
pipe = t2 - t1
print(f"| install (`make setup`, fresh clone) | {t1 - t0:.0f} s |")
print(f"| pipeline (`snakemake --cores {cores:.0f}`, {n:.0f} scans) | {pipe:.0f} s ({pipe / n:.2f} s per scan) |")
print(f"| per-scan jobs' own time / cores (peer) | {jobs / cores:.0f} s; pipeline / peer = {pipe / (jobs / cores):.2f} |")
print(f"| end-to-end test (`pytest tests/test_workflow.py`) | {t3 - t2:.0f} s |")
PY
