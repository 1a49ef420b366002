"""Discovery speed: files per second indexing a PACS-like tree (headers only), 1 vs 2 workers.

Usage: .venv/bin/python benchmarks/ingest_discovery.py [--files 20000] [--dir TMP]

Builds a tree of --files DICOM files: 50 patients x 2 studies x 2 series (a thin and a thick
reconstruction) plus a localizer, slices of 64x64 pixels (discovery never reads pixel data, so
the matrix only changes the bytes on disk), nested folders, no extensions. Then runs the
discovery of the pipeline (header index + geometry checks + series choice + manifest) with 1 and
with 2 workers, and `cat` of every file as the raw-read peer, all with the files in the page
cache. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def build(root: Path, n_files: int) -> int:
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    per_study = n_files // 100  # 50 patients x 2 studies
    thin = (per_study - 2) * 2 // 3
    layout = [("localizer", 2, 0.0), ("thin", thin, 1.0), ("thick", per_study - 2 - thin, 3.0)]
    pixels = np.zeros((64, 64), np.int16).tobytes()
    written = 0
    for p in range(50):
        for s in range(2):
            study_uid = generate_uid()
            for name, count, step in layout:
                uid = generate_uid()
                folder = root / f"PAT{p:03d}" / f"ST{s}" / name
                folder.mkdir(parents=True)
                for k in range(count):
                    meta = FileMetaDataset()
                    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
                    meta.MediaStorageSOPInstanceUID = generate_uid()
                    meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
                    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
                    ds.Modality, ds.PatientID, ds.PatientName = "CT", f"H{p:05d}", f"Name^{p}"
                    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, uid
                    ds.StudyDate, ds.StudyTime = f"2024{1 + s * 3:02d}01", "101010"
                    ds.SeriesNumber, ds.SeriesDescription = layout.index((name, count, step)) + 1, f"{name} portal venous"
                    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if name == "localizer" else "AXIAL"]
                    ds.ImagePositionPatient = [-200.0, -200.0, 1.0 * k * (step or 1)]
                    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0] if name != "localizer" else [1, 0, 0, 0, 0, -1]
                    ds.PixelSpacing, ds.SliceThickness = [0.78, 0.78], step or 1.0
                    ds.Rows = ds.Columns = 64
                    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
                    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
                    ds.PixelData = pixels
                    ds.save_as(folder / f"{k:06d}", enforce_file_format=True)
                    written += 1
    return written


def _cpu() -> float:
    """User + system seconds of this process and its reaped children (the worker pool)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    import pandas as pd

    from tumorburden.imaging.discover import discover
    from tumorburden.imaging.ingest import DEFAULTS

    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        root = Path(tmp) / "export"
        t0 = time.perf_counter()
        n = build(root, a.files)
        print(f"wrote {n} files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        pmap = pd.DataFrame({"dicom_patient_id": [f"H{p:05d}" for p in range(50)], "patient_id": [f"P{p:03d}" for p in range(50)]})
        baseline = {f"P{p:03d}": "2024-01-01" for p in range(50)}
        files = sorted(str(p) for p in root.rglob("*") if p.is_file())
        subprocess.run("find . -type f -print0 | xargs -0 cat > /dev/null", shell=True, cwd=root, check=True)  # warm
        t0 = time.perf_counter()
        subprocess.run("find . -type f -print0 | xargs -0 cat > /dev/null", shell=True, cwd=root, check=True)
        raw = time.perf_counter() - t0
        rows = []
        for workers in (1, 2):
            c0 = _cpu()
            t0 = time.perf_counter()
            counts = discover(root, pmap, baseline, Path(tmp) / f"results{workers}", Path(tmp) / f"private{workers}",
                              {**DEFAULTS, "workers": workers})
            rows.append((workers, time.perf_counter() - t0, _cpu() - c0, counts))
        print("| workers | files | wall s | files / s (wall) | CPU s (all processes) | files per CPU-second | raw read (`cat`) s | scans found |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for workers, seconds, cpu, counts in rows:
            print(f"| {workers} | {len(files)} | {seconds:.1f} | {len(files) / seconds:.0f} | {cpu:.1f} | {len(files) / cpu:.0f} | {raw:.1f} | {counts['scans']} |")
        print(f"\nspeed-up of 2 workers over 1: {rows[0][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
