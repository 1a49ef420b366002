"""Input checks: a bad study stops with one line naming the file, line and problem."""

from pathlib import Path

import pandas as pd
import pytest

from tumorburden.study import StudyError, load_study

CLINICAL = pd.DataFrame(
    {
        "patient_id": ["P01", "P02"],
        "cohort": ["lung", "melanoma"],
        "pfs_days": [100, 200.5],
        "pfs_event": [1, 0],
        "os_days": [300, 400],
        "os_event": [0, 1],
        "age": [60, 70],
    }
)


def write_study(tmp_path: Path, clinical=None, scans=None):
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "a.nii.gz").write_bytes(b"")
    clinical = CLINICAL if clinical is None else clinical
    if scans is None:
        scans = pd.DataFrame(
            {"patient_id": ["P01", "P01", "P02"], "scan_id": ["S1", "S2", "S3"],
             "days": [-3, 60, 0], "image": ["img/a.nii.gz", "img", str(tmp_path / "img")]}
        )
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    scans.to_csv(tmp_path / "scans.tsv", sep="\t", index=False)
    return {"study": {"name": "t", "clinical": str(tmp_path / "clinical.tsv"), "scans": str(tmp_path / "scans.tsv")}}


def test_good_study_resolves_relative_paths(tmp_path, schemas_dir):
    study = load_study(write_study(tmp_path), schemas_dir)
    assert list(study.scans.index) == ["S1", "S2", "S3"]
    assert study.scans.loc["S1", "image"] == str((tmp_path / "img" / "a.nii.gz").resolve())
    assert study.scans.loc["S1", "days"] == -3
    assert study.cohorts == ["lung", "melanoma"]
    assert not study.synthetic


def expect_error(tmp_path, schemas_dir, *, clinical=None, scans=None, match):
    cfg = write_study(tmp_path, clinical, scans)
    with pytest.raises(StudyError, match=match) as info:
        load_study(cfg, schemas_dir)
    assert "\n" not in str(info.value)


def test_missing_column(tmp_path, schemas_dir):
    expect_error(tmp_path, schemas_dir, clinical=CLINICAL.drop(columns="os_event"),
                 match=r"clinical.tsv: missing column\(s\) os_event")


def test_bad_event_code_names_line_and_patient(tmp_path, schemas_dir):
    bad = CLINICAL.copy()
    bad.loc[1, "pfs_event"] = 2
    expect_error(tmp_path, schemas_dir, clinical=bad,
                 match=r"clinical.tsv line 3 \(patient_id=P02\): pfs_event must be 0 or 1, got 2")


def test_negative_time(tmp_path, schemas_dir):
    bad = CLINICAL.copy()
    bad.loc[0, "os_days"] = -5
    expect_error(tmp_path, schemas_dir, clinical=bad, match=r"line 2 \(patient_id=P01\): os_days must be >= 0")


def test_non_numeric_time(tmp_path, schemas_dir):
    bad = CLINICAL.astype(object)
    bad.loc[0, "pfs_days"] = "soon"
    expect_error(tmp_path, schemas_dir, clinical=bad, match=r"line 2 \(patient_id=P01\): pfs_days must be a number")


def test_duplicate_patient(tmp_path, schemas_dir):
    bad = pd.concat([CLINICAL, CLINICAL.iloc[[0]]])
    expect_error(tmp_path, schemas_dir, clinical=bad, match=r"line 4: duplicate patient_id 'P01' \(first on line 2\)")


def test_bad_id_characters(tmp_path, schemas_dir):
    bad = CLINICAL.copy()
    bad.loc[0, "patient_id"] = "P 01/x"
    expect_error(tmp_path, schemas_dir, clinical=bad, match=r"line 2 \(patient_id=P 01/x\): patient_id 'P 01/x' is not a safe ID")


def test_scan_for_unknown_patient(tmp_path, schemas_dir):
    scans = pd.DataFrame({"patient_id": ["P09"], "scan_id": ["S1"], "days": [0], "image": ["img"]})
    expect_error(tmp_path, schemas_dir, scans=scans,
                 match=r"scans.tsv line 2 \(scan_id=S1\): patient_id 'P09' is not in the clinical table")


def test_missing_image_path(tmp_path, schemas_dir):
    scans = pd.DataFrame({"patient_id": ["P01"], "scan_id": ["S1"], "days": [0], "image": ["nowhere/x.nii.gz"]})
    expect_error(tmp_path, schemas_dir, scans=scans, match=r"image 'nowhere/x.nii.gz' does not exist")


def test_duplicate_scan(tmp_path, schemas_dir):
    scans = pd.DataFrame({"patient_id": ["P01", "P01"], "scan_id": ["S1", "S1"], "days": [0, 5], "image": ["img", "img"]})
    expect_error(tmp_path, schemas_dir, scans=scans, match=r"scans.tsv line 3: duplicate scan_id 'S1'")


def test_missing_table_file(tmp_path, schemas_dir):
    cfg = {"study": {"name": "t", "clinical": str(tmp_path / "nope.tsv"), "scans": str(tmp_path / "nope2.tsv")}}
    with pytest.raises(StudyError, match=r"nope.tsv: file not found"):
        load_study(cfg, schemas_dir)


def test_config_problem_names_the_key(schemas_dir):
    from tumorburden.study import config_problem

    assert config_problem({"study": {"name": "ok"}}, schemas_dir) is None
    typo = config_problem({"study": {"name": "ok"}, "lesions": {"min_volume": 1}}, schemas_dir)
    assert typo.startswith("config key lesions: Additional properties are not allowed ('min_volume'")
    bad = config_problem({"study": {"name": "ok", "clinical": "c.tsv"}}, schemas_dir)
    assert bad.startswith("config key study:") and "scans" in bad
