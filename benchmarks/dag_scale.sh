#!/usr/bin/env bash
# DAG of an IMPACT-size study: 600 synthetic patients x 6 scans (3,600 scans at 512x512), built
# by `snakemake -n --quiet rules` (dry run: nothing is rendered or computed), with the wall time and the peak
# memory (max RSS) of the Snakemake process, locally and with the SLURM profile (groups).
# Peer in the same run: the default 24-patient demo trial, to quote the per-job cost as a ratio.
# Usage: bash benchmarks/dag_scale.sh   (prints a Markdown table for BENCHMARKS.md)
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bin=$repo/.venv/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every patient gets a baseline and exactly 5 follow-ups: no progression, death or dropout
# ends the visit schedule early (the design otherwise follows config/config.yaml, size impact).
cat > "$work/impact6.yaml" <<'YAML'
study: {name: dag-impact}
synthetic:
  size: impact
  n_patients: 600
  max_followups: 5
  dropout_per_year: 0.0
  study_days: 100000
  survival_model:
    median_progression_days: {lung: 1.0e+7, melanoma: 1.0e+7}
    median_death_days: {lung: 1.0e+7, melanoma: 1.0e+7}
YAML
echo "study: {name: dag-demo}" > "$work/demo.yaml"
# The same 3,600 scans as a user's own study: scans.tsv + clinical.tsv of that trial, every image a
# DICOM folder (empty: a dry run only checks that it exists), so no synthetic rendering in the DAG.
"$bin/python" - "$work" <<'PY'
import sys
from pathlib import Path

import pandas as pd
import yaml

from tumorburden.synth.trial import write_trial

work = Path(sys.argv[1])
write_trial(yaml.safe_load((work / "impact6.yaml").read_text())["synthetic"], work / "own")
scans = pd.read_csv(work / "own" / "synthetic" / "scans.tsv", sep="\t")
for scan_id in scans["scan_id"]:
    (work / "own" / "dicom" / scan_id).mkdir(parents=True)
scans["image"] = [str(work / "own" / "dicom" / s) for s in scans["scan_id"]]
scans.to_csv(work / "own" / "scans.tsv", sep="\t", index=False)
(work / "own.yaml").write_text(yaml.safe_dump({"study": {
    "name": "dag-own", "scans": str(work / "own" / "scans.tsv"), "clinical": str(work / "own" / "synthetic" / "clinical.tsv")}}))
PY

dry() {  # dry NAME CONFIG [ARGS...]: one `snakemake -n`, prints "wall_s maxrss_mb jobs scans cpu_s"
  local name=$1 config=$2; shift 2
  mkdir -p "$work/$name"
  PATH="$bin:$PATH" /usr/bin/time -f "%e %M %U %S" -o "$work/$name/time" "$bin/snakemake" -n --quiet rules --snakefile "$repo/Snakefile" \
    --directory "$work/$name" --configfile "$config" "$@" > "$work/$name/out" 2>&1 || { tail -20 "$work/$name/out"; exit 1; }
  local jobs scans
  # the job-stats table at the end: "<rule> <count>"
  jobs=$(awk '$1 == "total" && $2 ~ /^[0-9]+$/ {n = $2} END {print n}' "$work/$name/out")
  scans=$(awk '$1 == "segment" && $2 ~ /^[0-9]+$/ {n = $2} END {print n}' "$work/$name/out")
  read -r wall rss user sys < "$work/$name/time"
  echo "$wall $((rss / 1024)) $jobs $scans $(python3 -c "print(round($user + $sys, 1))")"
}

read -r demo_s demo_mb demo_jobs demo_scans demo_cpu < <(dry demo "$work/demo.yaml" --cores 2)
read -r local_s local_mb jobs scans local_cpu < <(dry impact "$work/impact6.yaml" --cores 2)
read -r slurm_s slurm_mb slurm_jobs _ slurm_cpu < <(dry impact-slurm "$work/impact6.yaml" --profile "$repo/profiles/slurm")
read -r own_s own_mb own_jobs own_scans own_cpu < <(dry own "$work/own.yaml" --cores 2)
python3 - "$demo_s" "$demo_jobs" "$local_s" "$jobs" <<PY
import sys
demo_s, demo_jobs, s, jobs = map(float, sys.argv[1:])
print(f"| study | scans | jobs | \`snakemake -n\` wall | CPU (user + sys) | peak RSS |")
print(f"| --- | --- | --- | --- | --- | --- |")
print(f"| demo (peer), \`--cores 2\` | $demo_scans | {demo_jobs:.0f} | {demo_s:.1f} s | $demo_cpu s | $demo_mb MB |")
print(f"| 600 x 6, \`--cores 2\` | $scans | {jobs:.0f} | {s:.1f} s | $local_cpu s | $local_mb MB |")
print(f"| 600 x 6, \`--profile profiles/slurm\` | $scans | {jobs:.0f} (grouped) | $slurm_s s | $slurm_cpu s | $slurm_mb MB |")
print(f"| 600 x 6 as an own study (scans.tsv of DICOM folders), \`--cores 2\` | $own_scans | $own_jobs | $own_s s | $own_cpu s | $own_mb MB |")
print()
print(f"Load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores.")
print(f"600 x 6 / demo: {s / demo_s:.1f}x the wall time for {jobs / demo_jobs:.1f}x the jobs "
      f"({1000 * (s - demo_s) / (jobs - demo_jobs):.2f} ms per additional job).")
PY
