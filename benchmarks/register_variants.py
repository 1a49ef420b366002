"""Rigid registration settings compared on a follow-up moved by a known motion: CPU seconds,
the optimiser's iterations at the last level and the largest error at four body points (mm).

    .venv/bin/python benchmarks/register_variants.py [--phantom] [results/synthetic-demo ...]

Each results folder (a finished `make demo`, or any run) gives one case: its first patient with
three scans, the third scan moved by 4 deg about z and (8, -5, 12) mm and registered to the first.
`--phantom` adds the analytic 512x512x300 phantom of benchmarks/register_scan.py (3 deg, 28 mm;
its two images take a few minutes to render). The variants, in the same process: the settings
of before stop 26 (4 mm grid, 3 levels, minimum step 0.001 mm) and the defaults of
lesions/register.py, with a few steps between.
"""

import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lesions"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tumorburden.imaging.volume import Volume, load_nifti  # noqa: E402
from tumorburden.lesions import register  # noqa: E402

VARIANTS = {  # name: (grid mm, pyramid shrink factors, minimum step mm)
    "4 mm, 3 levels, step 0.001 (before)": (4.0, (4, 2, 1), 1e-3),
    "4 mm, 3 levels, step 0.01": (4.0, (4, 2, 1), 1e-2),
    "6 mm, 2 levels, step 0.01": (6.0, (2, 1), 1e-2),
    "8 mm, 2 levels, step 0.01 (default)": (8.0, (2, 1), 1e-2),
}


def motion(deg: float, shift) -> np.ndarray:
    a = math.radians(deg)
    m = np.eye(4)
    m[:3, :3] = [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
    m[:3, 3] = shift
    return m


def moved(volume: Volume, m: np.ndarray) -> Volume:
    """The scan after the patient moved by `m` (scanner mm), on the same grid."""
    v = np.linalg.inv(volume.affine) @ np.linalg.inv(m) @ volume.affine
    out = ndimage.affine_transform(np.asarray(volume.array, np.float32), v[:3, :3], v[:3, 3], order=1, cval=-1000)
    return Volume(out, volume.affine)


def demo_case(results: Path):
    """The first patient (by scan id) with three scans whose images are in `results`/scans/."""
    by_patient: dict[str, list[str]] = {}
    for image in sorted((results / "scans").glob("*/image.nii.gz")):
        by_patient.setdefault(image.parent.name.rsplit("-S", 1)[0], []).append(image.parent.name)
    ids = next(v for _, v in sorted(by_patient.items()) if len(v) >= 3)
    ref = load_nifti(results / "scans" / ids[0] / "image.nii.gz", dtype=np.float32)
    fu = load_nifti(results / "scans" / ids[2] / "image.nii.gz", dtype=np.float32)
    m = motion(4.0, (8.0, -5.0, 12.0))
    return f"{results.name} {ids[2]} {fu.array.shape}", moved(fu, m), ref, m


def phantom_case():
    import tempfile

    from register_scan import render
    from test_register import motion_matrix

    from tumorburden.imaging.volume import save_nifti
    shape, spacing = (512, 512, 300), (0.78, 0.78, 1.5)
    origin = [-(s - 1) * d / 2 for s, d in zip(shape, spacing)]
    m = motion_matrix(3.0, (10.0, -6.0, 25.0))
    with tempfile.TemporaryDirectory() as tmp:  # int16 on disk and back, as a scan arrives
        save_nifti(render(spacing, shape, origin), Path(tmp) / "b.nii.gz", dtype=np.int16)
        save_nifti(render(spacing, shape, origin, m), Path(tmp) / "f.nii.gz", dtype=np.int16)
        ref, fu = (load_nifti(Path(tmp) / f, dtype=np.float32) for f in ("b.nii.gz", "f.nii.gz"))
    return "phantom 512x512x300", fu, ref, m


def main(args: list[str]) -> None:
    cases = [demo_case(Path(a)) for a in args if a != "--phantom"] or [demo_case(ROOT / "results" / "synthetic-demo")]
    if "--phantom" in args:
        cases.append(phantom_case())
    for name, fu, ref, m in cases:
        for variant, (mm, shrink, step) in VARIANTS.items():
            register.SHRINK_FACTORS, register.MIN_STEP_MM = shrink, step
            register._FIXED.clear()  # each variant prepares the reference again, as a job does once
            c0, t0 = time.process_time(), time.perf_counter()
            matrix, info = register.rigid_matrix(fu, ref, {"registration_resolution_mm": mm})
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            pts = np.array([[-60.0, 5, 40, 1], [55, 10, 60, 1], [5, -70, -50, 1], [100, 50, -80, 1]]) @ m.T
            err = np.linalg.norm((pts @ matrix.T)[:, :3] - (pts @ np.linalg.inv(m).T)[:, :3], axis=1).max()
            print(f"{name} | {variant} | {cpu:.2f} CPU-s | {wall:.2f} s | {info.get('iterations')} iterations | "
                  f"{err:.2f} mm | {info['status']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
