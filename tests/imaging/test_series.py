"""Series choice among the series of one study, and the `tumorburden ingest` command."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from dicomgen import write_series

from tumorburden.cli import main
from tumorburden.imaging.ingest import ingest

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One CT study as a PACS exports it: a localizer, reconstructions, other phases, an MR."""
    root = tmp_path_factory.mktemp("study")
    w = dict(n=6)
    write_series(root / "1", series_number=1, description="Topogram 0.6 T20f", n=2,
                 image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"], uid="1.2.9.1")
    write_series(root / "2", series_number=2, description="Cor 3mm", iop=CORONAL, step=3.0, uid="1.2.9.2", **w)
    write_series(root / "3", series_number=3, description="Thorax 1.0 B70f lung", step=1.0, kernel="B70f", uid="1.2.9.3", **w)
    write_series(root / "4", series_number=4, description="Abdomen arterial 1.0", step=1.0, uid="1.2.9.4", **w)
    hu = write_series(root / "5", series_number=5, description="Abdomen portal venous 3.0", step=3.0, uid="1.2.9.5", seed=5, **w)
    write_series(root / "6", series_number=6, description="Abdomen portal venous 5.0", step=5.0, uid="1.2.9.6", **w)
    write_series(root / "7", series_number=7, description="Abdomen portal venous 0.3", step=0.3, uid="1.2.9.7", **w)
    write_series(root / "8", series_number=8, description="Abdomen portal venous 2.0", step=2.0, skip=(2,), uid="1.2.9.8", **w)
    write_series(root / "9", series_number=9, modality="MR", description="T1 venous", step=3.0, uid="1.2.9.9", **w)
    return root, hu


def test_choice_and_reasons(study, tmp_path):
    root, hu = study
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(root, out, qc_path=qc)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), hu)
    report = json.loads(qc.read_text())
    assert report["series"]["series_number"] == 5 and report["series"]["phase_hint"] == "portal"
    verdicts = {o["series"].split()[0]: (o["status"], o["reason"]) for o in report["other_series"]}
    assert verdicts["#1"] == ("rejected", "localizer/scout")
    assert verdicts["#2"] == ("rejected", "coronal slices, not axial")
    assert verdicts["#3"] == ("passed_over", "description/kernel matches an avoided keyword; chose #5 'Abdomen portal venous 3.0'")
    assert verdicts["#4"] == ("passed_over", "no contrast-phase keyword, #5 'Abdomen portal venous 3.0' has one")
    assert verdicts["#6"] == ("passed_over", "thicker slices (5 mm) than #5 'Abdomen portal venous 3.0' (3 mm)")
    assert verdicts["#7"] == ("rejected", "slice thickness 0.3 mm outside [0.5, 5] mm")
    assert verdicts["#8"][0] == "rejected" and verdicts["#8"][1].startswith("missing_slices: about 1 missing slice(s)")
    assert verdicts["#9"] == ("rejected", "modality MR, not CT")


def test_rules_are_configurable(study, tmp_path):
    root, _ = study
    qc = tmp_path / "qc.json"
    ingest(root, tmp_path / "image.nii.gz", qc_path=qc, settings={"phase_keywords": ["arterial"]})
    assert json.loads(qc.read_text())["series"]["series_number"] == 4
    ingest(root, tmp_path / "image.nii.gz", qc_path=qc, settings={"irregular_slices": "resample"})
    report = json.loads(qc.read_text())  # the 2 mm series with a missing slice is now usable and thinnest
    assert report["series"]["series_number"] == 8 and report["resampled"]


def test_cli_ingest_success_and_one_line_failure(study, tmp_path, capsys):
    root, hu = study
    out = tmp_path / "ct.nii.gz"
    assert main(["ingest", str(root), "--out", str(out), "--qc", str(tmp_path / "qc.json"), "--dtype", "float32"]) == 0
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.get_fdata(), hu)
    capsys.readouterr()
    assert main(["ingest", str(root / "8"), "--out", str(tmp_path / "bad.nii.gz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tumorburden ingest: error: ")
    assert "missing_slices: about 1 missing slice(s): gap(s) between slice001.dcm and slice003.dcm" in err
    assert not (tmp_path / "bad.nii.gz").exists()
    assert main(["ingest", str(root / "9"), "--out", str(tmp_path / "mr.nii.gz")]) == 1
    assert "no CT series (modalities: MR)" in capsys.readouterr().err


def test_source_files_are_the_chosen_series(study, tmp_path):
    from tumorburden.imaging.ingest import source_files

    root, _ = study
    assert source_files(root) == sorted(str(p) for p in (root / "5").iterdir())
    listing = tmp_path / "S1.json"
    listing.write_text(json.dumps({"scan_id": "S1", "series_uid": "1.2.9.6", "files": ["a", "b"]}))
    assert source_files(listing) == ["a", "b"]
