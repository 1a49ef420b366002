"""The `survival_prediction` job (`tumorburden prediction`) on a finished run's tables, against a peer.

The job runs last in the DAG, alone, so its time is the demo's tail. This script runs the job's own
command on the run's features, burden, clinical and truth tables with the survival settings the
rule passes (config's `survival` section less the dynamic and joint model's keys), one BLAS thread
as Snakemake gives a one-thread rule, alternately with this tree's code and with the peer's
(`git archive <peer> workflow`), and reports wall and CPU seconds of each run and whether the two
wrote byte-identical tables.

    python benchmarks/survival_prediction.py RESULTS_DIR [--peer COMMIT] [--repeat N] [--config FILE]

RESULTS_DIR: results/<study> of a finished run (the demo's: results/synthetic-demo).
--peer: a commit to compare with (default: none, this tree only); --repeat: runs of each (1).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from tumorburden.workflow_plan import DYNAMIC_KEYS, JOINT_KEYS, section  # noqa: E402


def settings(config_file: Path) -> str:
    config = yaml.safe_load(config_file.read_text()) or {}
    chosen = {k: v for k, v in section(config, "survival").items() if k not in DYNAMIC_KEYS + JOINT_KEYS}
    return json.dumps(chosen, sort_keys=True)


def run(workflow_dir: Path, results: Path, clinical: Path, out_dir: Path, settings_json: str) -> tuple[float, float]:
    """(wall s, CPU s) of one `tumorburden prediction` process on one BLAS thread."""
    env = {**os.environ, "PYTHONPATH": str(workflow_dir), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    truth = results / "truth" / "patients.parquet"
    cmd = [sys.executable, "-m", "tumorburden.cli", "prediction", f"--features={results / 'tables/features.parquet'}",
           f"--burden={results / 'tables/burden.parquet'}", f"--clinical={clinical}", f"--out-dir={out_dir}",
           f"--settings={settings_json}", *([f"--truth={truth}"] if truth.exists() else [])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--peer", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    ap.add_argument("--clinical", type=Path, default=None, help="default: RESULTS/synthetic/clinical.tsv")
    a = ap.parse_args()
    clinical = a.clinical or a.results / "synthetic" / "clinical.tsv"
    settings_json = settings(a.config)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"this tree": ROOT / "workflow"}
        if a.peer:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.peer, "workflow"], check=True,
                                     capture_output=True).stdout
            (tmp / "peer").mkdir()
            subprocess.run(["tar", "-x", "-C", str(tmp / "peer")], input=archive, check=True)
            trees[f"peer {a.peer}"] = tmp / "peer" / "workflow"
        times = {name: [] for name in trees}
        for r in range(a.repeat):
            for name, tree in trees.items():  # alternated, so a change in the machine's load hits both
                out = tmp / f"{len(times[name])}-{name.split()[0]}"
                times[name].append(run(tree, a.results, clinical, out, settings_json))
                print(f"run {r + 1}, {name}: {times[name][-1][0]:.1f} s wall, {times[name][-1][1]:.1f} CPU-s",
                      flush=True)
        print("\n| code | wall s | CPU s |\n| --- | --- | --- |")
        for name, t in times.items():
            print(f"| {name} | {' / '.join(f'{w:.1f}' for w, _ in t)} | {' / '.join(f'{c:.1f}' for _, c in t)} |")
        if a.peer:
            ours, peer = (min(c for _, c in times[n]) for n in trees)
            print(f"\npeer / this tree, CPU: {peer / ours:.1f}x")
            mine, theirs = tmp / "0-this", tmp / "0-peer"
            files = sorted(p.name for p in mine.glob("*.csv"))
            differ = [f for f in files if not filecmp.cmp(mine / f, theirs / f, shallow=False)]
            missing = sorted({p.name for p in theirs.glob("*.csv")} - set(files))
            print(f"tables: {len(files) - len(differ)} of {len(files)} byte-identical"
                  + (f"; differ: {', '.join(differ)}" if differ else "")
                  + (f"; only the peer's: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
