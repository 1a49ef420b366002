"""Rigid registration of one IMPACT-sized follow-up (512x512x300, 0.78 mm, 1.5 mm slices) to its
baseline, against reading the two images from NIfTI (a cost every per-scan job pays), in the same run.

    .venv/bin/python benchmarks/register_scan.py [repeats] [sampling fraction ...]

With sampling fractions (e.g. `3 0.2 0.05`), one line per fraction of the metric's random samples
(register.SAMPLING_FRACTION), CPU seconds beside wall time, in the same run.

The follow-up is the analytic phantom of tests/lesions/test_register.py seen after a known
motion (3 deg about z, 10/-6/25 mm), so the error of the recovered transform is known.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lesions"))

from test_register import motion_matrix, phantom_hu  # noqa: E402
from tumorburden.imaging.volume import Volume, load_nifti, save_nifti  # noqa: E402
from tumorburden.lesions import register  # noqa: E402


def render(spacing, shape, origin, motion=np.eye(4)):
    """The phantom slice by slice (memory stays small at 512x512x300)."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    inv = np.linalg.inv(motion)
    ij = np.indices(shape[:2]).reshape(2, -1).T
    out = np.empty(shape, np.int16)
    for k in range(shape[2]):
        idx = np.column_stack([ij, np.full(len(ij), k)])
        q = idx @ affine[:3, :3].T + affine[:3, 3]
        out[:, :, k] = phantom_hu(q @ inv[:3, :3].T + inv[:3, 3]).reshape(shape[:2])
    return Volume(out, affine)


def main(repeats: int = 3, fractions=(None,)) -> None:
    shape, spacing = (512, 512, 300), (0.78, 0.78, 1.5)
    origin = [-(s - 1) * d / 2 for s, d in zip(shape, spacing)]
    motion = motion_matrix(3.0, (10.0, -6.0, 25.0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_nifti(render(spacing, shape, origin), tmp / "base.nii.gz", dtype=np.int16)
        save_nifti(render(spacing, shape, origin, motion), tmp / "fu.nii.gz", dtype=np.int16)
        for fraction in fractions:
            if fraction is not None:
                register.SAMPLING_FRACTION = fraction
            rows = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                base = load_nifti(tmp / "base.nii.gz", dtype=np.float32)
                fu = load_nifti(tmp / "fu.nii.gz", dtype=np.float32)
                t1, c1 = time.perf_counter(), time.process_time()
                matrix, info = register.rigid_matrix(fu, base)
                t2, c2 = time.perf_counter(), time.process_time()
                rows.append((t1 - t0, t2 - t1, c2 - c1))
            pts = np.array([[-60.0, 5, 40, 1], [55, 10, 60, 1], [5, -70, -50, 1]]) @ motion.T
            err = np.linalg.norm((pts @ matrix.T)[:, :3] - (pts @ np.linalg.inv(motion).T)[:, :3], axis=1)
            read, reg, cpu = np.median(np.array(rows), axis=0)
            print(f"sampling {register.SAMPLING_FRACTION:g}: read both images: {read:.2f} s; rigid registration: "
                  f"{reg:.2f} s wall, {cpu:.2f} CPU-s; ratio {reg / read:.2f} (median of {repeats}); status "
                  f"{info['status']}, rotation {info['rotation_deg']:.2f} deg, iterations {info['iterations']}, "
                  f"max point error {err.max():.2f} mm", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, [float(x) for x in sys.argv[2:]] or [None])
