"""Reading one CT series: this reader vs SimpleITK's ImageSeriesReader vs the raw read of the files.

Usage: .venv/bin/python benchmarks/ingest_read.py [--slices 400] [--matrix 512] [--rounds 3] [--dir TMP]

Writes a shuffled, extension-less 512x512xN int16 series (pydicom), then per round runs, each in
its own process (so that peak memory is its own): `cat` of the files to /dev/null, this reader
(header index + geometry checks + series choice + pixel read into HU, as `tumorburden ingest`
minus the NIfTI write) and SimpleITK (GDCM series file names, sorted, + ImageSeriesReader), warm
(files in the page cache) and cold (files dropped from the page cache with posix_fadvise
DONTNEED before the run). Prints a Markdown table: median seconds, ratios to SimpleITK and to
the raw read, and peak memory above the process's post-import baseline as a multiple of the
volume's size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_series(folder: Path, n: int, matrix: int) -> None:
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(-1000, 1500, size=(matrix, matrix)).astype(np.int16)
    series_uid, study_uid = generate_uid(), generate_uid()
    names = random.Random(1).sample(range(10**6, 10**7), n)
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", "BENCH", study_uid, series_uid
        ds.StudyDate, ds.SeriesNumber, ds.SeriesDescription = "20240101", 2, "benchmark"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-200.0, -200.0, -300.0 + 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.78, 0.78]
        ds.SliceThickness = 1.25
        ds.Rows = ds.Columns = matrix
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = np.roll(base, k, axis=0).tobytes()
        ds.save_as(folder / str(names[k]), enforce_file_format=True)


CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {pkg!r})
what, folder = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
if what == "ours":
    from tumorburden.imaging.ingest import DEFAULTS
    from tumorburden.imaging.reader import read_volume
    from tumorburden.imaging.series import check_geometry, choose, group_series, read_headers
elif what == "sitk":
    import SimpleITK as sitk
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
_o, _k = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu0 = _o.ru_utime + _o.ru_stime + _k.ru_utime + _k.ru_stime
t0 = time.perf_counter()
if what == "cat":
    os.system("cat " + " ".join(files) + " > /dev/null")
elif what == "ours":
    candidates = [(s, check_geometry(s, DEFAULTS)) for s in group_series(read_headers(files))]
    (series, geometry), _ = choose(candidates, DEFAULTS)
    volume, _ = read_volume(geometry, progress_every=0)
    assert volume.shape[2] == len(files)
elif what == "sitk":
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    image = reader.Execute()
    assert image.GetSize()[2] == len(files)
seconds = time.perf_counter() - t0
own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime - cpu0
print(json.dumps({{"seconds": seconds, "cpu": cpu, "peak_kb": own.ru_maxrss, "base_kb": base}}))
"""


def drop_cache(folder: Path) -> None:
    for p in folder.iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run(what: str, folder: Path) -> dict:
    code = CHILD.format(pkg=str(ROOT / "workflow"))
    out = subprocess.run([sys.executable, "-c", code, what, str(folder)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=400)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        folder = Path(tmp) / "series"
        t0 = time.perf_counter()
        write_series(folder, a.slices, a.matrix)
        print(f"wrote {a.slices} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        volume_kb = a.slices * a.matrix * a.matrix * 2 / 1024
        results = {(c, w): [] for c in ("cold", "warm") for w in ("cat", "ours", "sitk")}
        for r in range(a.rounds):
            for cache in ("cold", "warm"):
                for what in ("cat", "ours", "sitk"):
                    if cache == "cold":
                        drop_cache(folder)
                    else:
                        run("cat", folder)  # make sure every file is cached
                    results[(cache, what)].append(run(what, folder))
            print(f"round {r + 1} done", file=sys.stderr)
        print(f"| cache | raw read (`cat`) s | this reader s | SimpleITK s | reader / SimpleITK | reader / raw | CPU s reader / SimpleITK / raw | peak memory above baseline, x volume (reader / SimpleITK) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for cache in ("warm", "cold"):
            med = {w: statistics.median(x["seconds"] for x in results[(cache, w)]) for w in ("cat", "ours", "sitk")}
            ratio_sitk = statistics.median(o["seconds"] / s["seconds"] for o, s in zip(results[(cache, "ours")], results[(cache, "sitk")]))
            ratio_raw = statistics.median(o["seconds"] / c["seconds"] for o, c in zip(results[(cache, "ours")], results[(cache, "cat")]))
            mem = {w: max(x["peak_kb"] - x["base_kb"] for x in results[(cache, w)]) / volume_kb for w in ("ours", "sitk")}
            cpu = {w: statistics.median(x["cpu"] for x in results[(cache, w)]) for w in ("cat", "ours", "sitk")}
            print(f"| {cache} | {med['cat']:.2f} | {med['ours']:.2f} | {med['sitk']:.2f} | {ratio_sitk:.2f} | {ratio_raw:.2f} | "
                  f"{cpu['ours']:.2f} / {cpu['sitk']:.2f} / {cpu['cat']:.2f} | {mem['ours']:.2f} / {mem['sitk']:.2f} |")


if __name__ == "__main__":
    main()
