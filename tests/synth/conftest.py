"""Shared tiny synthetic trial: 3 patients on a 48 x 48 x 56 grid of 8 mm voxels."""

import pytest

from tumorburden.synth.render import render_scan
from tumorburden.synth.trial import write_trial

TINY = {"size": "demo", "seed": 7, "n_patients": 3, "matrix": 48, "pixel_mm": 8.0, "slice_mm": 8.0}


@pytest.fixture(scope="session")
def tiny_settings():
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """write_trial + every scan rendered: (out_dir, trial)."""
    out = tmp_path_factory.mktemp("synthetic-tiny")
    trial = write_trial(TINY, out)
    for scan_id in trial.scans["scan_id"]:
        render_scan(TINY, scan_id, out / "synthetic" / "dicom" / scan_id, out / "truth" / "scans" / scan_id)
    return out, trial
