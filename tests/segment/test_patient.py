"""A patient's scans segmented in one process (`segment_patient`, `tumorburden segment --scan-id`):
the engine loads once, each scan gets its own files, an external mask stays with its scan."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from tiny_bundle import write_threshold_bundle
from tumorburden import labels as L
from tumorburden.cli import main
from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.segment import bundle as bundle_module
from tumorburden.segment.run import ScanJob, segment_patient

SPACING = 4.0


def _scan(folder, scan_id, corner):
    """A 4 mm scan: -300 HU, one 200 HU box at `corner` (what the threshold model calls lesion)."""
    hu = np.full((30, 28, 16), -300.0, np.float32)
    i, j, k = corner
    hu[i:i + 8, j:j + 6, k:k + 5] = 200.0
    path = folder / scan_id / "image.nii.gz"
    save_nifti(Volume(hu, np.diag([SPACING, SPACING, SPACING, 1.0])), path, dtype=np.int16)
    return path, hu > 0


def _jobs(tmp_path, mask_for=None):
    corners = {"S0": (4, 4, 3), "S1": (12, 10, 6), "S2": (18, 16, 9)}
    jobs, truth = [], {}
    for scan_id, corner in corners.items():
        image, bright = _scan(tmp_path / "scans", scan_id, corner)
        truth[scan_id] = bright
        jobs.append(ScanJob(scan_id, image, tmp_path / "scans" / scan_id / "segmentation.nii.gz",
                            overlay=tmp_path / "qc" / f"{scan_id}.png"))
    return jobs, truth


def test_a_patients_scans_load_the_model_once_and_keep_their_own_files(tmp_path, monkeypatch):
    folder = write_threshold_bundle(tmp_path / "bundle")
    loads = []
    real = bundle_module.load_bundle
    monkeypatch.setattr(bundle_module, "load_bundle", lambda *a, **k: loads.append(a) or real(*a, **k))
    jobs, truth = _jobs(tmp_path)
    # S1's lesions come from an external mask: a box elsewhere than its bright one
    mask = np.zeros((30, 28, 16), np.uint8)
    mask[2:5, 20:24, 2:4] = 1
    save_nifti(Volume(mask, np.diag([SPACING] * 3 + [1.0])), tmp_path / "mask.nii.gz", dtype=np.uint8)
    jobs[1].mask = tmp_path / "mask.nii.gz"
    record = segment_patient("P1", jobs, tmp_path / "qc" / "segment" / "P1.tsv",
                             settings={"engine": "monai", "bundle": str(folder)}, threads=1)
    assert len(loads) == 1  # one model load for three scans
    written = pd.read_csv(tmp_path / "qc" / "segment" / "P1.tsv", sep="\t")
    assert list(written["scan_id"]) == ["S0", "S1", "S2"] and (written["patient_id"] == "P1").all()
    assert list(written["lesions_from"]) == ["monai", "mask", "monai"]
    for job in jobs:
        seg = nib.load(job.out)
        labels = np.asarray(seg.dataobj)
        assert seg.get_data_dtype() == np.uint8 and labels.shape == truth[job.scan_id].shape
        lesion = np.isin(labels, L.LESION_LABELS)
        if job.scan_id == "S1":
            np.testing.assert_array_equal(lesion, mask > 0)  # the mask's lesions, not the model's
        else:
            assert lesion[ndimage.binary_erosion(truth[job.scan_id])].all()
            assert not lesion[~ndimage.binary_dilation(truth[job.scan_id])].any()
        assert job.overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        row = written.set_index("scan_id").loc[job.scan_id]
        assert row["lesion_ml"] == pytest.approx(lesion.sum() * SPACING ** 3 / 1000.0)
    pd.testing.assert_frame_equal(record.reset_index(drop=True), written, check_dtype=False)


def test_a_missing_image_is_named_before_any_scan_is_segmented(tmp_path):
    jobs, _ = _jobs(tmp_path)
    jobs[2].image.unlink()
    with pytest.raises(FileNotFoundError, match=r"image of scan S2 not found; run `tumorburden ingest`"):
        segment_patient("P1", jobs, tmp_path / "P1.tsv", settings={"engine": "classical"})
    assert not any(job.out.exists() for job in jobs)


def test_the_cli_runs_a_patients_scans_with_the_classical_engine_without_torch(tmp_path):
    """`tumorburden segment --scan-id ...` as the rule calls it; the classical engine never imports
    torch or MONAI (a job that needs neither pays for neither)."""
    jobs, _ = _jobs(tmp_path)
    args = ["segment", "--patient-id=P1", f"--record={tmp_path / 'P1.tsv'}", "--scan-id", *[j.scan_id for j in jobs],
            "--image", *[str(j.image) for j in jobs], "--out", *[str(j.out) for j in jobs],
            "--nifti-source", "S0", "S1", "S2", "--settings", '{"engine": "classical"}']
    code = ("import sys; from tumorburden.cli import main; rc = main(sys.argv[1:]); "
            "print('torch' in sys.modules, 'monai' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "False"]
    assert "S1: no DICOM-SEG for this scan: its source image is a NIfTI file" in proc.stderr
    assert all(j.out.exists() for j in jobs)
    assert list(pd.read_csv(tmp_path / "P1.tsv", sep="\t")["engine"]) == ["classical"] * 3


def test_the_cli_refuses_lists_of_unequal_length(tmp_path, capsys):
    jobs, _ = _jobs(tmp_path)
    code = main(["segment", "--patient-id=P1", f"--record={tmp_path / 'P1.tsv'}", "--scan-id", "S0", "S1",
                 "--image", str(jobs[0].image), "--out", str(jobs[0].out), str(jobs[1].out)])
    assert code == 1
    assert "--scan-id (2), --image (1), --out (2)" in capsys.readouterr().err
