#!/usr/bin/env bash
# End-to-end throughput (scans per hour) of the pipeline on this machine, on a medium synthetic
# trial at a realistic in-plane resolution, and its projection to 3,600 scans (IMPACT size).
#   bash benchmarks/throughput.sh [CORES] [MATRIX] [N_PATIENTS]   (defaults: 2 384 10)
# The synthetic DICOM series are rendered first and not timed (a real study has its DICOM);
# the timed part is everything a real study runs: ingest, segment, measure (with registration)
# per patient (each scan to its own files), the DICOM-SEG export per patient, then track, burden, features, survival, figures. Peer in the same run: the per-scan jobs' own
# CPU time (Snakemake benchmark files), so the ratio wall x cores / job CPU says how much of the
# cores the run kept busy (robust to a loaded machine, where wall time alone is not).
set -euo pipefail
cores=${1:-2}
matrix=${2:-384}
patients=${3:-10}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bin=$repo/.venv/bin
work=${THROUGHPUT_WORKDIR:-$(mktemp -d)}
mkdir -p "$work"
pixel=$(python3 -c "print(round(400 / $matrix, 3))")   # a 400 mm field of view, as 512 x 0.78 mm
cat > "$work/config.yaml" <<YAML
study: {name: throughput}
synthetic: {size: impact, n_patients: $patients, matrix: $matrix, pixel_mm: $pixel, slice_mm: 1.5, seed: 11}
survival: {bootstrap: 200, min_patients: 4}
YAML
sm() { PATH="$bin:$PATH" "$bin/snakemake" --snakefile "$repo/Snakefile" --directory "$work" --configfile "$work/config.yaml" --cores "$cores" "$@"; }
r=$work/results/throughput
# 1. Render the trial's DICOM series (untimed).
sm --quiet all --until synth_render > "$work/render.log" 2>&1 || { tail -20 "$work/render.log"; exit 1; }
n_scans=$(ls -d "$r"/synthetic/dicom/*/*/ | wc -l)
load0=$(cut -d' ' -f1 /proc/loadavg)
# 2. Everything else (timed).
t0=$(date +%s.%N)
sm --quiet all > "$work/run.log" 2>&1 || { tail -20 "$work/run.log"; exit 1; }
t1=$(date +%s.%N)
load1=$(cut -d' ' -f1 /proc/loadavg)
slices=$(PATH="$bin:$PATH" "$bin/python" -c "import nibabel, glob; print(nibabel.load(sorted(glob.glob('$r/scans/*/image.nii.gz'))[0]).shape)")
"$bin/python" - "$r" "$t0" "$t1" "$cores" "$n_scans" "$matrix" "$pixel" "$slices" "$load0" "$load1" <<'PY'
import sys
from pathlib import Path
import pandas as pd
r, t0, t1, cores, n, matrix, pixel, shape, load0, load1 = sys.argv[1:]
wall, cores, n = float(t1) - float(t0), int(cores), int(n)
def jobs(rule):
    """The rule's Snakemake benchmark rows: (CPU s, wall s, max RSS MB) per job."""
    b = pd.concat([pd.read_csv(p, sep="\t") for p in Path(r, "benchmarks", rule).glob("*.tsv")])
    return (b["cpu_time"] if "cpu_time" in b else b["s"]).astype(float), b["s"].astype(float), b["max_rss"].astype(float)

rows = []
# ingest, segment, measure and the DICOM-SEG export run one job per patient: their CPU per scan
# is the rule's total over the scans
for rule in ["ingest", "segment", "measure", "segment_dicom"]:
    if any(Path(r, "benchmarks", rule).glob("*.tsv")):
        cpu, w, rss = jobs(rule)
        rows.append((f"{rule} (per patient, per scan)", cpu.sum() / n, w.sum() / n, rss.max()))
cpu_per_scan = sum(c for _, c, _, _ in rows)
per_hour = n / wall * 3600
print(f"Trial: {n} scans of {shape} voxels ({matrix}x{matrix} at {pixel} mm, 1.5 mm slices); "
      f"{cores} cores; load average {load0} before, {load1} after.")
print()
print("| per-scan rule | CPU s per scan | wall s per scan | peak RSS |")
print("| --- | --- | --- | --- |")
for rule, cpu, w, rss in rows:
    print(f"| `{rule}` | {cpu:.1f} | {w:.1f} | {rss / 1024:.2f} GB |")
print()
print(f"End to end (ingest to figures): {wall:.0f} s wall for {n} scans = **{per_hour:.0f} scans/hour on {cores} cores** "
      f"({per_hour / cores:.1f} per core-hour). Peer: per-scan jobs' CPU {cpu_per_scan:.1f} s per scan; "
      f"wall x cores / (scans x CPU per scan) = {wall * cores / (n * cpu_per_scan):.2f} (1.00: every core busy with per-scan work).")
print()
core_hour = per_hour / cores
for what, c in [("one 16-core node", 16), ("10 such nodes (160 cores)", 160)]:
    print(f"- 3,600 scans on {what}: {3600 / (core_hour * c):.1f} h (linear in cores: per-scan jobs are independent; "
          f"the aggregate steps at the end are not scaled).")
PY
