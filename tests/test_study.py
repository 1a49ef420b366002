"""Input checks: a bad study stops with one line naming the file, line and problem."""

import re
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


# --- the validation layer (check_study): issue 14's bad inputs, each one line naming where ---------

from tumorburden.study import check_study, merged_config  # noqa: E402


def expect_check_error(tmp_path, schemas_dir, *, clinical=None, scans=None, config=None, match):
    cfg = write_study(tmp_path, clinical, scans)
    cfg = merged_config({**cfg, **(config or {}), "study": {**cfg["study"], **(config or {}).get("study", {})}})
    with pytest.raises(StudyError, match=match) as info:
        check_study(cfg, schemas_dir)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_check_study_accepts_the_good_study(tmp_path, schemas_dir):
    study = check_study(merged_config(write_study(tmp_path)), schemas_dir)
    assert list(study.scans.index) == ["S1", "S2", "S3"]


@pytest.mark.parametrize("column, value", [("pfs_days", "nan"), ("os_days", "inf"), ("pfs_days", "-inf"),
                                           ("os_days", "Infinity")])
def test_non_finite_times_name_the_row(tmp_path, schemas_dir, column, value):
    bad = CLINICAL.astype(object)
    bad.loc[1, column] = value
    expect_check_error(tmp_path, schemas_dir, clinical=bad,
                       match=rf"clinical.tsv line 3 \(patient_id=P02\): {column} must be a finite number of days, got '{value}'")


def test_non_finite_scan_day_names_the_row(tmp_path, schemas_dir):
    scans = pd.DataFrame({"patient_id": ["P01", "P01"], "scan_id": ["S1", "S2"], "days": ["0", "nan"], "image": ["img", "img"]})
    expect_check_error(tmp_path, schemas_dir, scans=scans,
                       match=r"scans.tsv line 3 \(scan_id=S2\): days must be a finite number of days, got 'nan'")


def test_os_shorter_than_pfs_is_refused(tmp_path, schemas_dir):
    bad = CLINICAL.copy()
    bad.loc[1, "os_days"] = 150  # pfs_days 200.5
    expect_check_error(tmp_path, schemas_dir, clinical=bad,
                       match=r"clinical.tsv line 3 \(patient_id=P02\): os_days 150 is less than pfs_days 200.5")


def test_two_scans_of_a_patient_on_one_day(tmp_path, schemas_dir):
    scans = pd.DataFrame({"patient_id": ["P01", "P02", "P01"], "scan_id": ["S1", "S2", "S3"],
                          "days": ["60", "60", "60.0"], "image": ["img", "img", "img"]})
    expect_check_error(tmp_path, schemas_dir, scans=scans,
                       match=r"scans.tsv line 4 \(scan_id=S3\): patient P01 already has a scan on day 60.0 \(scan_id=S1, line 2\)")


def test_misspelt_optional_column(tmp_path, schemas_dir):
    scans = pd.DataFrame({"patient_id": ["P01"], "scan_id": ["S1"], "days": [0], "image": ["img"], "msk": ["img/a.nii.gz"]})
    expect_check_error(tmp_path, schemas_dir, scans=scans,
                       match=r"scans.tsv: column 'msk' looks like a misspelling of 'mask'")


def test_misspelt_required_and_covariate_columns(tmp_path, schemas_dir):
    expect_check_error(tmp_path, schemas_dir, clinical=CLINICAL.rename(columns={"os_days": "OS_days"}),
                       match=r"column 'OS_days' looks like a misspelling of 'os_days'")
    # survival.covariates names `ecog`: an `ECOG` column would silently drop it from the Cox model
    expect_check_error(tmp_path, schemas_dir, clinical=CLINICAL.assign(ECOG=[0, 1]),
                       match=r"column 'ECOG' looks like a misspelling of 'ecog'")


def test_a_covariate_far_from_every_known_column_is_kept(tmp_path, schemas_dir):
    study = check_study(merged_config(write_study(tmp_path, CLINICAL.assign(smoker=[1, 0]))), schemas_dir)
    assert "smoker" in study.clinical


@pytest.mark.parametrize("content", ["", "patient_id\tcohort\tpfs_days\tpfs_event\tos_days\tos_event\n"])
def test_empty_table_file(tmp_path, schemas_dir, content):
    cfg = write_study(tmp_path)
    (tmp_path / "clinical.tsv").write_text(content)
    with pytest.raises(StudyError, match=r"clinical.tsv: the (file is empty|table has a header but no rows)"):
        check_study(merged_config(cfg), schemas_dir)


@pytest.mark.parametrize("where, value", [
    ("clinical", {"patient_id": ".."}), ("clinical", {"patient_id": "."}), ("clinical", {"patient_id": "-h"}),
    ("clinical", {"patient_id": "--help"}), ("clinical", {"cohort": "../x"}), ("clinical", {"cohort": ".hidden"}),
    ("scans", {"scan_id": ".."}), ("scans", {"scan_id": "a/../../b"}), ("scans", {"scan_id": "-h"}),
])
def test_unsafe_ids_are_refused_naming_the_row(tmp_path, schemas_dir, where, value):
    (column, bad_id), = value.items()
    clinical, scans = CLINICAL.copy(), None
    if where == "clinical":
        clinical.loc[0, column] = bad_id
    else:
        scans = pd.DataFrame({"patient_id": ["P01"], "scan_id": [bad_id], "days": [0], "image": ["img"]})
    message = expect_check_error(tmp_path, schemas_dir, clinical=clinical, scans=scans,
                                 match=rf"{where}.tsv line 2 \(.*\): {column} '{re.escape(bad_id)}' is not a safe ID")
    assert "starting with a letter or digit" in message


@pytest.mark.parametrize("kind, column", [("patient_id", "patient_id"), ("cohort", "cohort")])
def test_too_long_ids_are_refused_with_the_limit(tmp_path, schemas_dir, kind, column):
    from tumorburden.paths import max_id_length

    limit = max_id_length(kind, merged_config({}))
    ok, bad = CLINICAL.copy(), CLINICAL.copy()
    ok.loc[1, column] = "P" * limit
    bad.loc[1, column] = "P" * (limit + 1)
    scans = pd.DataFrame({"patient_id": ["P01"], "scan_id": ["S1"], "days": [0], "image": ["img"]})
    check_study(merged_config(write_study(tmp_path, ok, scans)), schemas_dir)
    expect_check_error(tmp_path, schemas_dir, clinical=bad, scans=scans,
                       match=rf"line 3 \(patient_id=.*\): {kind} P+\.\.\. is {limit + 1} characters; at most {limit} fit")


@pytest.mark.parametrize("name", ["..", ".", "-h", "a/b", "x" * 256])
def test_unsafe_study_name(tmp_path, schemas_dir, name):
    expect_check_error(tmp_path, schemas_dir, config={"study": {"name": name}}, match=r"^config key study.name: study.name ")


def _range_keys(schemas_dir):
    from tumorburden.study import _ranges, _schema

    return [key for key, _ in _ranges(merged_config({}), _schema(schemas_dir, "config"))]


def test_every_range_of_the_default_config_is_found(schemas_dir):
    """The [low, high] settings of config/config.yaml, found from the schema ($defs/range, x-ranges)."""
    keys = _range_keys(schemas_dir)
    for key in ("imaging.thickness_mm", "imaging.hu_bounds", "synthetic.visit_interval_days", "segmentation.fat_hu",
                "segmentation.lesion_hu", "segmentation.train.hu_window", "segmentation.train.inserted_diameter_mm",
                "segmentation.min_lesion_ml, segmentation.max_lesion_ml"):
        assert key in keys


@pytest.mark.parametrize("key", [
    "imaging.thickness_mm", "imaging.hu_bounds", "synthetic.visit_interval_days", "segmentation.fat_hu",
    "segmentation.muscle_hu", "segmentation.liver_hu", "segmentation.lesion_hu", "segmentation.train.hu_window",
    "segmentation.train.inserted_diameter_mm", "segmentation.train.inserted_hu"])
def test_reversed_range_names_the_key(tmp_path, schemas_dir, key):
    config = merged_config(write_study(tmp_path))
    *parents, leaf = key.split(".")
    section = config
    for p in parents:
        section = section[p]
    low, high = section[leaf]
    section[leaf] = [high, low]
    with pytest.raises(StudyError, match=rf"^config key {re.escape(key)}: \[{high}, {low}\] is a \[low, high\] range in the wrong order"):
        check_study(config, schemas_dir)


def test_reversed_pair_of_keys(tmp_path, schemas_dir):
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"min_lesion_ml": 600, "max_lesion_ml": 500}},
                       match=r"config key segmentation.min_lesion_ml, segmentation.max_lesion_ml: \[600, 500\]")


def test_missing_nnunet_model_names_the_key_and_what_to_download(tmp_path, schemas_dir):
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"engine": "nnunet",
                                                                       "model": str(tmp_path / "nowhere.zip")}},
                       match=r"^config key segmentation.model: .*nowhere.zip does not exist; download the trained model")
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"engine": "nnunet"}},
                       match=r"^config key segmentation.model: not set, and segmentation.engine is nnunet")


def test_missing_and_empty_bundle_name_the_key(tmp_path, schemas_dir):
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"bundle": str(tmp_path / "nowhere")}},
                       match=r"^config key segmentation.bundle: .*nowhere is not a folder")
    (tmp_path / "empty" / "configs").mkdir(parents=True)
    (tmp_path / "empty" / "configs" / "metadata.json").write_text("{}")
    (tmp_path / "empty" / "models").mkdir()
    (tmp_path / "empty" / "models" / "model.pt").write_bytes(b"")
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"bundle": str(tmp_path / "empty")}},
                       match=r"^config key segmentation.bundle: .*empty has no models/model.pt or models/model.ts \(or it is empty\)")
    (tmp_path / "empty" / "models" / "model.pt").write_bytes(b"weights")
    (tmp_path / "empty" / "configs" / "inference.json").write_text('{"inferer": {"roi_size": [48, 48, 48],}}')
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"bundle": str(tmp_path / "empty")}},
                       match=r"^config key segmentation.bundle: .*inference.json is not valid JSON \(.*line 1 column 39.*\); fix the file$")
    (tmp_path / "empty" / "configs" / "inference.json").write_text('[]')
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"bundle": str(tmp_path / "empty")}},
                       match=r"^config key segmentation.bundle: .*inference.json must hold a JSON object")
    # the classical engine reads no bundle
    config = merged_config({**write_study(tmp_path), "segmentation": {"engine": "classical", "bundle": "nowhere"}})
    check_study(config, schemas_dir)


@pytest.mark.parametrize("key, folder", [("clinical", False), ("scans", False), ("dicom_root", True), ("patient_map", False)])
def test_missing_study_paths_name_the_key(tmp_path, schemas_dir, key, folder):
    cfg = write_study(tmp_path)["study"]
    if key in ("dicom_root", "patient_map"):
        cfg = {"name": "t", "clinical": cfg["clinical"], "dicom_root": str(tmp_path), "patient_map": cfg["clinical"]}
    cfg[key] = str(tmp_path / "absent")
    with pytest.raises(StudyError, match=rf"^config key study.{key}: .*absent does not exist; fix the path"):
        check_study(merged_config({"study": cfg}), schemas_dir)


def test_dicom_root_with_scans_is_one_line(tmp_path, schemas_dir):
    cfg = write_study(tmp_path)
    cfg["study"]["dicom_root"] = str(tmp_path)
    with pytest.raises(StudyError) as info:
        check_study(merged_config(cfg), schemas_dir)
    assert str(info.value) == ("config keys study.dicom_root and study.scans are both set: a study is either a scans "
                               "table or a DICOM export; remove one of them")


def test_dicomweb_study_is_a_dicom_root_study_on_the_private_cache(tmp_path, schemas_dir):
    from tumorburden.study import config_problem, load_study

    cfg = write_study(tmp_path)
    clinical = pd.read_csv(cfg["study"]["clinical"], sep="\t", dtype=str)
    clinical["baseline_date"] = "2024-01-01"
    clinical.to_csv(tmp_path / "clinical_dated.tsv", sep="\t", index=False)
    pd.DataFrame({"dicom_patient_id": ["H1"], "patient_id": [clinical["patient_id"][0]]}).to_csv(
        tmp_path / "patients.tsv", sep="\t", index=False)
    study_cfg = {"name": "web", "clinical": str(tmp_path / "clinical_dated.tsv"), "patient_map": str(tmp_path / "patients.tsv"),
                 "dicomweb": {"url": "http://127.0.0.1:8042/dicom-web", "credentials_env": "TB_PACS"}}
    study = load_study(merged_config({"study": study_cfg}), schemas_dir)
    assert study.dicom_root == Path("private/web/pacs") and study.dicomweb["url"].endswith("/dicom-web")
    assert study.scans is None
    with pytest.raises(StudyError, match="study.dicomweb and study.scans are both set"):
        check_study(merged_config({"study": {**study_cfg, "scans": cfg["study"]["scans"]}}), schemas_dir)
    assert "dicomweb.url" in config_problem({"study": {**study_cfg, "dicomweb": {"url": "pacs:8042"}}}, schemas_dir)
    # no key for a password: credentials come from the environment or a netrc file
    assert "password" in config_problem({"study": {**study_cfg, "dicomweb": {"url": "http://p/dw", "password": "x"}}},
                                        schemas_dir)
    no_map = {k: v for k, v in study_cfg.items() if k != "patient_map"}
    assert "patient_map" in config_problem({"study": no_map}, schemas_dir)


def test_review_dir_that_is_not_a_folder_names_the_key(tmp_path, schemas_dir):
    expect_check_error(tmp_path, schemas_dir, config={"review": {"dir": str(tmp_path / "absent")}},
                       match=r"^config key review.dir: .*absent is not a folder; make it")
    (tmp_path / "reviews").mkdir()
    check_study(merged_config({**write_study(tmp_path), "review": {"dir": str(tmp_path / "reviews")}}), schemas_dir)


def test_an_unknown_landmark_covariate_stops_before_any_job(tmp_path, schemas_dir):
    message = expect_check_error(tmp_path, schemas_dir, config={"survival": {"landmark_covariates": [
        "log_burden", "tumour_mood"]}}, match="survival.landmark_covariates: 'tumour_mood'")
    assert "clinical.tsv" in message
    # a clinical.tsv column is a valid (fixed) landmark covariate
    cfg = write_study(tmp_path)
    check_study(merged_config({**cfg, "survival": {"landmark_covariates": ["log_burden", "age"]}}), schemas_dir)


def test_joint_model_covariates_must_be_numeric_columns(tmp_path, schemas_dir):
    joint = {"survival": {"joint": {"covariates": ["smoker"]}}}
    expect_check_error(tmp_path, schemas_dir, config=joint,
                       match=r"clinical.tsv: survival.joint.covariates names 'smoker', which is not a column")
    expect_check_error(tmp_path, schemas_dir, clinical=CLINICAL.assign(smoker=[1, "yes"]), config=joint,
                       match=r"clinical.tsv line 3 \(patient_id=P02\): smoker 'yes' is not a number")


def test_review_dir_defaults_to_the_private_folder_of_a_dicomweb_study(tmp_path, monkeypatch):
    from tumorburden.study import review_dir

    monkeypatch.chdir(tmp_path)
    web = {"study": {"name": "trial", "dicomweb": {"url": "http://pacs:8042/dicom-web"}}}
    assert review_dir(web) is None  # nothing fetched yet: no review step
    assert review_dir(web, existing=False) == Path("private/trial/reviews")  # where fetch_reviews downloads
    (tmp_path / "private/trial/reviews").mkdir(parents=True)
    assert review_dir(web) == Path("private/trial/reviews")
    assert review_dir({**web, "review": {"dir": "/data/reviews"}}) == Path("/data/reviews")
    assert review_dir({"study": {"name": "trial", "dicom_root": "/data/export"}}) is None
    private = {"study": {**web["study"], "private_dir": str(tmp_path / "secret")}}
    assert review_dir(private, existing=False) == tmp_path / "secret/reviews"


def test_a_missing_design_scores_file_names_the_key(tmp_path, schemas_dir):
    config = merged_config({**write_study(tmp_path), "design": {"scores": str(tmp_path / "absent.csv")}})
    with pytest.raises(StudyError, match=r"^config key design.scores: .*absent.csv is not a file"):
        check_study(config, schemas_dir)
    (tmp_path / "scores.csv").write_text("stage,metric,value,n,detail\n")
    check_study(merged_config({**write_study(tmp_path), "design": {"scores": str(tmp_path / "scores.csv")}}), schemas_dir)


def test_a_model_list_is_checked_against_the_models_labels_before_any_job(tmp_path, schemas_dir):
    import json

    organs = tmp_path / "Dataset291_organs" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    organs.mkdir(parents=True)
    (organs / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "heart": 2}}))
    models = [{"bundle": "models/tumorburden_ct"}, {"nnunet": str(organs), "use": ["liver"]}]
    # the heart is neither used nor ignored
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"models": models}},
                       match=r"^config key segmentation.models\[2\] \(nnUNetTrainer__nnUNetPlans__3d_fullres\): "
                             r"labels 'heart' are neither used nor ignored")
    models[1]["ignore"] = "rest"
    # ignored, the liver is then given by both the demo bundle and the organ model
    expect_check_error(tmp_path, schemas_dir, config={"segmentation": {"models": models}},
                       match=r"^config key segmentation.models: liver is given by segmentation.models\[1\] "
                             r"\(tumorburden_ct\) and segmentation.models\[2\]")
    models[0]["ignore"] = ["liver"]
    check_study(merged_config({**write_study(tmp_path), "segmentation": {"models": models}}), schemas_dir)
    # a typo in an entry's keys is the schema's error
    models[1]["usee"] = ["liver"]
    with pytest.raises(StudyError, match="usee"):
        check_study(merged_config({**write_study(tmp_path), "segmentation": {"models": models}}), schemas_dir)


def test_height_is_optional_per_patient_and_in_cm(tmp_path, schemas_dir):
    load_study(write_study(tmp_path, CLINICAL.assign(height_cm=[172.0, None])), schemas_dir)
    expect_error(tmp_path, schemas_dir, clinical=CLINICAL.assign(height_cm=[1.72, 165.0]),
                 match=r"clinical.tsv line 2 \(patient_id=P01\): height_cm")
