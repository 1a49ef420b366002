"""DICOMweb pull and push against a local Orthanc (tests/pacs/orthanc.sh), with a disk copy as peer.

Usage: .venv/bin/python benchmarks/pacs.py [--slices 300] [--matrix 512] [--rounds 3] [--dir TMP] [--pull-only]
                                          [--profile N] [--cold] [--series N] [--workers W]
                                          [--trees DIR,DIR] [--request-forms N]

Pull: a 512x512xN int16 series (pydicom, uncompressed) is uploaded to Orthanc, then per round
`tumorburden.pacs.pull.pull` brings it into an empty private cache (QIDO-RS, WADO-RS metadata,
discovery's series choice, WADO-RS retrieval of the series streamed in one request, each
instance written atomically), against its peer in the same round: `shutil.copy` of the same
files from disk to an empty folder (page cache warm; with --cold, as root, the kernel's page
cache is dropped before each copy and before each pull, so both read their files from the disk:
the copy the series' files, Orthanc its stored copies); and the server's share of the pull, its two
answers timed alone (the series' WADO-RS metadata; its WADO-RS retrieve read off the socket, not
parsed). Push: per round the DICOM-SEG of an
N-slice label map on that series (both copies, as segment_dicom writes them), the SR of 20
lesions (both copies) and the STOW-RS of SEG + SR (left out with --pull-only). Prints each
round's pull (and its phases: the metadata request waited for, index, choice, retrieval) and
copy, then a Markdown table: medians of the rounds, wall seconds and CPU seconds (this process;
Orthanc's from /proc beside it). With --profile N, one more pull under cProfile
(its thread pools run inline, so the profile sees the series' work): the N top lines by cumulative time.
With --series N (default 1): N patients, each with one study of one such series, all pulled in one
`pull` (what a whole-trial pull sees: `--workers` series at a time, default 1), against the copy of
all N x slices files one after the other; the server-alone rows then time the first series.
With --trees A,B (source trees, e.g. this checkout and a `git archive` of main): in each round, after
the copy, each tree's `pull` runs in a child process (its imports done before its timer starts; the
page cache dropped before each with --cold), in the order A, B in odd rounds and B, A in even ones,
so two versions of the code are compared on the same server, series and minutes, round by round.
With --request-forms N: instead of the pulls, the DICOMweb requests a pull could make for the same
answer, each timed alone N times (and N times more with the page cache dropped before each, with
--cold): QIDO-RS, the metadata of the series, of its study, of one instance, of each instance (4 at
a time), the series' instances by QIDO-RS (with and without attributes Orthanc keeps in its
database), and the series' retrieval with three Accept headers and the study's; wall seconds and
Orthanc's CPU-s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _orthanc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drop_page_cache() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        sys.exit(f"--cold: cannot drop the page cache ({exc}); run as root or leave --cold out")


def _timed(fn, orthanc_pid: int | None = None):
    cpu0, wall0 = time.process_time(), time.perf_counter()
    server0 = _orthanc_cpu(orthanc_pid) if orthanc_pid else 0.0
    fn()
    return (time.perf_counter() - wall0, time.process_time() - cpu0,
            (_orthanc_cpu(orthanc_pid) - server0) if orthanc_pid else 0.0)


CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1] + "/workflow")
import pandas as pd, pyarrow.parquet  # noqa: F401  (to_parquet imports it on first use)
from tumorburden.imaging.ingest import DEFAULTS
from tumorburden.pacs.pull import pull
a = json.loads(sys.argv[2])
cpu0, wall0 = time.process_time(), time.perf_counter()
pull({"url": a["url"], "workers": a["workers"]}, pd.DataFrame(a["pmap"]), a["baseline"], Path(a["results"]),
     Path(a["private"]), {**DEFAULTS, "workers": 1})
print(json.dumps([time.perf_counter() - wall0, time.process_time() - cpu0]))
"""


def _pull_in(tree: str, url: str, workers: int, pmap, baseline: dict, results: Path, private: Path, orthanc_pid: int):
    """(wall s, CPU-s, Orthanc CPU-s) of a pull by the code of `tree`, in a child process."""
    args = {"url": url, "workers": workers, "pmap": pmap.to_dict("list"), "baseline": baseline,
            "results": str(results), "private": str(private)}
    start = subprocess.Popen([sys.executable, "-c", CHILD, tree, json.dumps(args)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": f"{tree}/workflow"})
    server0 = _orthanc_cpu(orthanc_pid)  # the child's imports cost Orthanc nothing
    out, _ = start.communicate()
    if start.returncode:
        sys.exit(f"the pull of {tree} failed")
    wall, cpu = json.loads(out.strip().splitlines()[-1])
    return wall, cpu, _orthanc_cpu(orthanc_pid) - server0


def _time_phases() -> dict:
    """{phase: (wall s, CPU-s)} of the last pull, filled by timers around its steps: the metadata
    request (the server's answer, waited for), index (QIDO-RS, that request, the header records),
    discovery's choice, and the retrieval (WADO-RS streamed, each part checked and written)."""
    from tumorburden.pacs import client, pull as pull_module

    spent: dict = {}

    def timed(name, fn):
        def run(*args, **kwargs):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                w, c = spent.get(name, (0.0, 0.0))
                spent[name] = (w + time.perf_counter() - wall0, c + time.process_time() - cpu0)
        return run

    client.Pacs.series_metadata = timed("metadata request", client.Pacs.series_metadata)
    pull_module.index = timed("index (QIDO + metadata + records)", pull_module.index)
    pull_module.discover = timed("choice", pull_module.discover)
    if hasattr(pull_module, "Retrieval"):  # the retrieval starts inside discovery: what is left of it after
        pull_module.Retrieval.__exit__ = timed("retrieval left after the choice", pull_module.Retrieval.__exit__)
    else:
        pull_module.fetch = timed("retrieval", pull_module.fetch)
    return spent


def _request_forms(url: str, study_uid: str, series_uid: str, times: int, cold: bool, orthanc_pid: int) -> None:
    """Each form of the pull's requests timed alone: wall s and Orthanc's CPU-s, medians (min-max)."""
    import statistics
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    series, study = f"{url}/studies/{study_uid}/series/{series_uid}", f"{url}/studies/{study_uid}"
    multipart = 'multipart/related; type="application/dicom"'
    local = threading.local()

    def get(address, accept="application/dicom+json", session=None):
        with (session or requests).get(address, headers={"Accept": accept}, stream=True, timeout=120) as answer:
            answer.raise_for_status()
            return sum(len(chunk) for chunk in answer.iter_content(1 << 20))

    def per_instance():  # the instances listed by QIDO-RS (from Orthanc's database), then each one's metadata
        sops = [i["00080018"]["Value"][0] for i in requests.get(f"{series}/instances", timeout=120).json()]

        def one(sop):
            if not hasattr(local, "session"):
                local.session = requests.Session()
            return get(f"{series}/instances/{sop}/metadata", session=local.session)
        with ThreadPoolExecutor(4) as pool:
            return sum(pool.map(one, sops))

    first = requests.get(f"{series}/instances", timeout=120).json()[0]["00080018"]["Value"][0]
    forms = {
        "QIDO-RS: the patient's studies": lambda: get(f"{url}/studies?PatientID=BENCH"),
        "QIDO-RS: the study's series": lambda: get(f"{study}/series"),
        "WADO-RS metadata of the series (what the pull asks)": lambda: get(f"{series}/metadata"),
        "QIDO-RS: the series' instances (default fields)": lambda: get(f"{series}/instances"),
        # what a client could ask instead of the metadata: positions per instance (in Orthanc's
        # database), the rest from one instance's header
        "QIDO-RS: the instances + position, orientation": lambda: get(
            f"{series}/instances?includefield=00200032&includefield=00200037"),
        "QIDO-RS: the instances + pixel spacing (not in Orthanc's database)": lambda: get(
            f"{series}/instances?includefield=00280030"),
        "WADO-RS metadata of one instance": lambda: get(f"{series}/instances/{first}/metadata"),
        "WADO-RS metadata of the study": lambda: get(f"{study}/metadata"),
        "WADO-RS metadata of each instance, 4 at a time": per_instance,
        "WADO-RS series, `transfer-syntax=*` (what the pull asks)": lambda: get(series, multipart + "; transfer-syntax=*"),
        "WADO-RS series, no transfer syntax named (the default)": lambda: get(series, multipart),
        "WADO-RS series, explicit VR little endian named": lambda: get(series, multipart + "; transfer-syntax=1.2.840.10008.1.2.1"),
        "WADO-RS study, `transfer-syntax=*`": lambda: get(study, multipart + "; transfer-syntax=*"),
    }
    spent: dict = {}
    for page_cache in (["warm", "cold"] if cold else ["warm"]):
        for _ in range(times):
            for name, fn in forms.items():  # interleaved, so each form sees the same minutes
                if page_cache == "cold":
                    _drop_page_cache()
                spent.setdefault((page_cache, name), []).append(_timed(fn, orthanc_pid))
    print(f"| page cache | request | wall s, median (min-max) of {times} | Orthanc CPU-s, median (min-max) |")
    print("| --- | --- | --- | --- |")
    for (page_cache, name), v in spent.items():
        wall, server = [x[0] for x in v], [x[2] for x in v]
        print(f"| {page_cache} | {name} | {statistics.median(wall):.2f} ({min(wall):.2f}-{max(wall):.2f}) | "
              f"{statistics.median(server):.2f} ({min(server):.2f}-{max(server):.2f}) |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--pull-only", action="store_true", help="leave out the push (SEG, SR, STOW-RS)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile one more pull, print N lines")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each copy and each pull (root)")
    ap.add_argument("--series", type=int, default=1, help="patients, one series of --slices each")
    ap.add_argument("--workers", type=int, default=1, help="study.dicomweb.workers of the pull")
    ap.add_argument("--trees", default=None, help="comma-separated source trees: each round pulls with each")
    ap.add_argument("--request-forms", type=int, default=0, metavar="N",
                    help="time each form of the pull's requests alone, N times (no pulls)")
    a = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in a.trees.split(",")] if a.trees else []

    import numpy as np
    import pandas as pd
    import requests

    from ingest_read import write_series  # the ingest benchmark's series writer
    from tumorburden import labels as L
    from tumorburden.imaging.ingest import DEFAULTS
    from tumorburden.imaging.volume import Volume, save_nifti
    from tumorburden.pacs.client import AS_STORED_MULTIPART, connect
    from tumorburden.pacs.pull import pull
    from tumorburden.pacs.report import write_reports
    from tumorburden.segment.dicomseg import read_series, series_affine_ras, write_dicom_seg

    work = Path(tempfile.mkdtemp(prefix="pacs-bench-", dir=a.dir))
    script = ROOT / "tests" / "pacs" / "orthanc.sh"
    url, pid = subprocess.run([str(script), "start", str(work / "orthanc")], check=True, capture_output=True,
                              text=True).stdout.split()
    pid = int(pid)
    try:
        import pydicom

        files = []
        for j in range(a.series):
            series = work / (f"series{j}" if j else "series")
            write_series(series, a.slices, a.matrix)  # its own study and series UIDs
            frame_of_reference = pydicom.uid.generate_uid()
            for f in sorted(series.iterdir()):  # what a hospital's CT has and the ingest benchmark's writer leaves out
                ds = pydicom.dcmread(f)
                ds.PatientID = f"BENCH{j}" if j else "BENCH"
                ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "Bench^Patient", "19500101", "F"
                ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "101500", "1", "A1", ""
                ds.FrameOfReferenceUID = frame_of_reference
                ds.save_as(f)
                files.append(f)
        rest = url.rsplit("/dicom-web", 1)[0]
        with requests.Session() as s:
            for f in files:
                s.post(f"{rest}/instances", data=f.read_bytes(), timeout=60).raise_for_status()
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        pmap = pd.DataFrame({"dicom_patient_id": ["BENCH"] + [f"BENCH{j}" for j in range(1, a.series)],
                             "patient_id": [f"B{j + 1:02d}" for j in range(a.series)]})
        baseline = {pid: "2024-01-01" for pid in pmap["patient_id"]}
        rows = {"pull": [], "copy": [], "metadata": [], "retrieve": [], "seg": [], "sr": [], "stow": []}
        phases = _time_phases()
        server = connect({"url": url})
        study_uid = server.studies_of("BENCH")[0]["0020000D"]["Value"][0]
        series_uid = server.series_of(study_uid)[0]["0020000E"]["Value"][0]

        def retrieve_bytes():  # the series' WADO-RS answer read off the socket, parts not even split
            with requests.get(f"{url}/studies/{study_uid}/series/{series_uid}", stream=True, timeout=60,
                              headers={"Accept": AS_STORED_MULTIPART}) as answer:
                answer.raise_for_status()
                return sum(len(chunk) for chunk in answer.iter_content(1 << 20))
        if a.request_forms:
            _request_forms(url, study_uid, series_uid, a.request_forms, a.cold, pid)
            return
        for r in range(a.rounds):
            private, copy_to = work / f"private{r}", work / f"copy{r}"
            copy_to.mkdir()
            for f in files:
                (copy_to / f.parent.name).mkdir(exist_ok=True)
            if a.cold:
                _drop_page_cache()
            rows["copy"].append(_timed(lambda: [shutil.copy(f, copy_to / f.parent.name / f.name) for f in files]))
            if a.cold:
                _drop_page_cache()
            phases.clear()  # the server-alone timing of the round before also went through series_metadata
            if trees:
                for tree in (trees if r % 2 == 0 else trees[::-1]):
                    if a.cold:
                        _drop_page_cache()
                    key = f"pull {tree}"
                    rows.setdefault(key, []).append(_pull_in(tree, url, a.workers, pmap, baseline,
                                                             work / f"results{r}-{len(rows[key])}-{trees.index(tree)}",
                                                             work / f"private{r}-{trees.index(tree)}", pid))
                    w, c, o = rows[key][-1]
                    print(f"round {r + 1}: {tree}: pull {w:.2f} s wall, {c:.2f} CPU-s (+ {o:.2f} Orthanc); "
                          f"ratio {w / rows['copy'][-1][0]:.1f}x", flush=True)
                rows["pull"].append(rows[f"pull {trees[0]}"][-1])
                private = work / f"private{r}-0"
            else:
                rows["pull"].append(_timed(lambda: pull({"url": url, "workers": a.workers}, pmap, baseline,
                                                        work / f"results{r}", private, {**DEFAULTS, "workers": 1}), pid))
            pulled, _ = dict(phases), phases.clear()  # before the server's answers are timed alone below
            # the server's share of the pull: its two answers, each timed on its own
            rows["metadata"].append(_timed(lambda: server.series_metadata(study_uid, series_uid), pid))
            rows["retrieve"].append(_timed(retrieve_bytes, pid))
            (pw, pc, ps), (cw, cc, _) = rows["pull"][-1], rows["copy"][-1]
            print(f"round {r + 1}: pull {pw:.2f} s wall, {pc:.2f} CPU-s (+ {ps:.2f} Orthanc); copy {cw:.2f} s wall, "
                  f"{cc:.2f} CPU-s; ratio {pw / cw:.1f}x", flush=True)
            if pulled:
                print("  pull's phases, wall s (CPU-s of this process): " + "; ".join(
                    f"{name} {w:.2f} ({c:.2f})" for name, (w, c) in pulled.items()), flush=True)
            if a.pull_only:
                continue
            if r == 0:  # a label map on the series' grid: tissue everywhere, 20 lesions
                cached = sorted(sorted(d for d in (private / "pacs").glob("*/*") if d.is_dir())[0].glob("*.dcm"))
                ds = read_series([str(p) for p in cached])
                labels = np.zeros((a.matrix, a.matrix, a.slices), np.uint8)
                labels[50:-50, 60:-60, :] = L.VAT
                labels[30:50, 60:-60, :] = L.SAT
                labels[50:70, 60:-60, :] = L.MUSCLE
                for k in range(20):
                    z = 10 + k * (a.slices - 20) // 20
                    labels[100 + 15 * k:110 + 15 * k, 200:215, z:z + 6] = L.LESION
                save_nifti(Volume(labels, series_affine_ras(ds)), work / "seg.nii.gz", dtype=np.uint8)
                lesions = pd.DataFrame({
                    "patient_id": "B01", "scan_id": "B01_d0", "days": 0.0, "lesion": range(1, 21), "track_id": range(1, 21),
                    "status": "baseline", "volume_ml": 0.5, "longest_diameter_mm": 12.0, "short_axis_mm": 8.0,
                    "centroid_x_mm": 0.0, "centroid_y_mm": 0.0, "centroid_z_mm": 0.0, "mean_hu": 40.0, "organ": "liver"})
                burden = pd.Series({"total_volume_ml": 10.0, "n_lesions": 20, "sld_mm": 240.0, "muscle_ml": 1.0,
                                    "sat_ml": 1.0, "vat_ml": 1.0})
            out = work / f"push{r}"
            rows["seg"].append(_timed(lambda: write_dicom_seg(
                work / "seg.nii.gz", [str(p) for p in cached], out / "seg.dcm", patient_id="B01", namespace="bench/B01/B01_d0",
                pacs_out=out / "seg_pacs.dcm")))
            rows["sr"].append(_timed(lambda: write_reports(
                out / "seg_pacs.dcm", out / "seg.dcm", lesions, burden, patient_id="B01", scan_id="B01_d0",
                namespace="bench/B01/B01_d0", private_out=out / "sr_pacs.dcm", public_out=out / "sr.dcm")))
            pacs = connect({"url": url})
            rows["stow"].append(_timed(lambda: pacs.store(
                [pydicom.dcmread(out / "seg_pacs.dcm"), pydicom.dcmread(out / "sr_pacs.dcm")], "benchmark"), pid))
        if a.profile:
            import cProfile
            import pstats

            from tumorburden.pacs import pull as pull_module

            class Inline:  # a thread pool that runs its work in the caller's thread, where cProfile sees it
                def __init__(self, max_workers=None):
                    pass

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return False

                def map(self, fn, items):
                    return map(fn, items)

                def submit(self, fn, *args):
                    from concurrent.futures import Future

                    future = Future()
                    future.set_result(fn(*args))
                    return future

                def shutdown(self, wait=True):
                    pass

            pull_module.ThreadPoolExecutor, pooled = Inline, pull_module.ThreadPoolExecutor
            profile = cProfile.Profile()
            try:
                profile.runcall(pull, {"url": url, "workers": a.workers}, pmap, baseline, work / "results_profile",
                                work / "private_profile", {**DEFAULTS, "workers": 1})
            finally:
                pull_module.ThreadPoolExecutor = pooled
            pstats.Stats(profile).sort_stats("cumtime").print_stats(a.profile)
        med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in rows.items() if v}
        ratio = statistics.median(p[0] / c[0] for p, c in zip(rows["pull"], rows["copy"]))
        seg_mb = 0.0 if a.pull_only else (out / "seg_pacs.dcm").stat().st_size / 1e6
        print(f"series: {a.series} x {a.slices} x {a.matrix}x{a.matrix} int16, {size_mb:.0f} MB in all; pull with "
              f"{a.workers} worker(s); {a.rounds} rounds (medians)\n")
        print("| step | wall s | CPU s (this process) | CPU s (Orthanc) |")
        print("| --- | --- | --- | --- |")
        for key, name in (("copy", f"disk copy of the {len(files)} files (peer)"),
                          ("pull", f"pull of the series from Orthanc (QIDO + metadata + choice + WADO-RS)"),
                          ("metadata", "of which the server: WADO-RS metadata of the series, alone"),
                          ("retrieve", "of which the server: WADO-RS retrieve of the series, bytes read, alone"),
                          ("seg", f"DICOM-SEG, both copies ({seg_mb:.1f} MB each)"), ("sr", "SR TID 1500 of 20 lesions, both copies"),
                          ("stow", "STOW-RS of SEG + SR")):
            if key not in med:
                continue
            w, c, s = med[key]
            print(f"| {name} | {w:.2f} | {c:.2f} | {s:.2f} |")
        for tree in trees:
            w, c, o = med[f"pull {tree}"]
            ratios = [p[0] / cp[0] for p, cp in zip(rows[f"pull {tree}"], rows["copy"])]
            print(f"| pull, {tree} (child process) | {w:.2f} | {c:.2f} | {o:.2f} |  ratio {statistics.median(ratios):.1f}x "
                  f"({', '.join(f'{x:.1f}' for x in ratios)})")
        print(f"\npull / disk copy (median of per-round ratios): {ratio:.1f}x")
        if not a.pull_only:
            print(f"push of one scan (SEG + SR + STOW): {sum(med[k][0] for k in ('seg', 'sr', 'stow')):.2f} s")
    finally:
        subprocess.run([str(script), "stop", str(pid)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
