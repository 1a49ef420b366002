"""CPU seconds of the DICOM-SEG export (`tumorburden segment-dicom`: write_dicom_seg, the identified
copy for the PACS and the de-identified one for results/) per scan of a finished synthetic run, and
of the job's start (its imports), for this tree and for a peer commit in the same run; each side in
a process of its own, as the rule's jobs run. The two sides' files are compared byte for byte.

    .venv/bin/python benchmarks/dicom_seg_export.py /tmp/demo25/results/synthetic-demo \\
        SYN-001-S0 SYN-005-S1 SYN-012-S1 --peer 96672b5 --repeat 2

RESULTS is a run's results/<name>/ (synthetic/dicom/<patient>/<scan>/ and scans/<scan>/segmentation.nii.gz
are read, nothing is written there); the peer's workflow/ is taken from git (`git archive`).
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(results: Path, scans: list[str], out: Path, repeat: int) -> dict:
    """In the measured process: the job's imports, then every scan `repeat` times."""
    import highdicom  # noqa: F401  (write_dicom_seg imports these two where it needs them)

    import tumorburden.imaging.ingest  # noqa: F401
    from tumorburden.cli import _ingest_defaults
    from tumorburden.segment.dicomseg import write_dicom_seg

    start_cpu = time.process_time()  # the interpreter's start and every import of a job, before its first scan
    settings = _ingest_defaults()
    cpu, wall = [], []
    for _ in range(repeat):
        for scan in scans:
            patient = scan.rsplit("-", 1)[0]
            c0, t0 = time.process_time(), time.perf_counter()
            write_dicom_seg(results / "scans" / scan / "segmentation.nii.gz", results / "synthetic" / "dicom" / patient / scan,
                            out / "public" / f"{scan}.dcm", patient_id=patient, namespace=f"bench/{patient}/{scan}",
                            pacs_out=out / "private" / f"{scan}.dcm", settings=settings)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
    return {"start_cpu": start_cpu, "cpu": cpu, "wall": wall}


def run_side(workflow: Path, results: Path, scans: list[str], out: Path, repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(workflow), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, str(results), *scans, "--repeat", str(repeat), "--child", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results", type=Path)
    p.add_argument("scans", nargs="+")
    p.add_argument("--peer", help="a commit whose workflow/ is measured beside this tree's")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.results, a.scans, a.child, a.repeat)))
        return
    with tempfile.TemporaryDirectory(prefix="seg-export-bench-") as tmp:
        tmp = Path(tmp)
        sides = {"this tree": ROOT / "workflow"}
        if a.peer:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.peer, "workflow"], capture_output=True,
                                     check=True).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(tmp / "peer", filter="data")
            sides = {f"peer {a.peer}": tmp / "peer" / "workflow", **sides}
        measured = {name: run_side(path, a.results.resolve(), a.scans, tmp / name, a.repeat) for name, path in sides.items()}
        print(f"{len(a.scans)} scans x {a.repeat}, {a.results}")
        print("| code | job start (imports), CPU-s | per scan: CPU-s (mean) | per scan: wall s (mean) |")
        print("| --- | --- | --- | --- |")
        for name, m in measured.items():
            n = len(m["cpu"])
            print(f"| {name} | {m['start_cpu']:.2f} | {sum(m['cpu']) / n:.2f} | {sum(m['wall']) / n:.2f} |")
        if a.peer:
            peer, ours = (measured[name] for name in sides)
            ratio = (sum(peer["cpu"]) / len(peer["cpu"])) / (sum(ours["cpu"]) / len(ours["cpu"]))
            print(f"per-scan CPU, peer / this tree: {ratio:.2f}x")
            names = list(sides)
            same = all((tmp / names[0] / kind / f"{s}.dcm").read_bytes() == (tmp / names[1] / kind / f"{s}.dcm").read_bytes()
                       for s in a.scans for kind in ("public", "private"))
            print(f"both copies of every scan byte-identical between the two: {same}")


if __name__ == "__main__":
    main()
