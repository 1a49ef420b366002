"""Shared tiny synthetic trial: 3 patients on a 48 x 48 x 56 grid of 8 mm voxels."""

import pytest

from tumorburden.synth.render import render_patient
from tumorburden.synth.trial import write_trial

TINY = {"size": "demo", "seed": 7, "n_patients": 3, "matrix": 48, "pixel_mm": 8.0, "slice_mm": 8.0}


@pytest.fixture(scope="session")
def tiny_settings():
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """write_trial + every scan rendered, in the workflow's layout: (out_dir, trial)."""
    out = tmp_path_factory.mktemp("synthetic-tiny")
    trial = write_trial(TINY, out)
    for patient_id in trial.patients["patient_id"]:
        render_patient(TINY, patient_id, out / "synthetic" / "dicom" / patient_id, out / "truth" / "scans" / patient_id)
    return out, trial
