"""The lookups behind the rules' input functions (workflow/rules/common.smk): each expectation below
is worked out by hand from the small tables written here."""

import copy
import json
import os
import re
import shutil

import pandas as pd
import pytest
import yaml

from tumorburden import workflow_plan
from tumorburden.workflow_plan import (
    PREDICTION_KEYS,
    DiscoveredScans,
    StudyPlan,
    analysed_cohorts,
    model_fingerprint,
    model_weights,
    read_discovered_scans,
    section,
    settings_json,
)

R = "results/demo"


def _reference_of(plan, scan_id):
    """The scan its patient's scans are registered to (what the measure rule passes)."""
    return plan.reference_scan_of_patient()[plan.patient_of(scan_id)]


def _scans(rows):
    frame = pd.DataFrame(rows, columns=["patient_id", "scan_id", "days", "image", "mask", "bodycomp"])
    return frame.set_index("scan_id", drop=False)


@pytest.fixture
def scans():
    # P1: DICOM folders, baseline on day -3 (day 0 has two scans: the greater id is the baseline);
    # P2: NIfTI only, no scan on or before day 0 (its reference is its first scan);
    # P3: one DICOM and one NIfTI scan, an external mask and a body-composition folder on one scan.
    return _scans([
        ("P1", "P1-a", -10.0, "/d/P1/a", None, None),
        ("P1", "P1-c", 0.0, "/d/P1/c", None, None),
        ("P1", "P1-b", 0.0, "/d/P1/b", None, None),
        ("P1", "P1-d", 60.0, "/d/P1/d", None, None),
        ("P2", "P2-x", 14.0, "/n/P2/x.nii.gz", None, None),
        ("P2", "P2-y", 7.0, "/n/P2/y.nii", None, None),
        ("P3", "P3-a", -1.0, "/d/P3/a", "/m/P3-a.nii.gz", "/ts/P3-a"),
        ("P3", "P3-b", 90.0, "/n/P3/b.nii.gz", "", None),
    ])


def test_settings_json_is_the_section_with_keys_sorted_and_some_left_out():
    config = {"survival": {"pooled": True, "bootstrap": 20, "model_sets": {"a": ["age"]}}, "figures": None}
    assert settings_json(config, "survival") == '{"bootstrap": 20, "model_sets": {"a": ["age"]}, "pooled": true}'
    assert settings_json(config, "survival", without=PREDICTION_KEYS) == '{"bootstrap": 20, "pooled": true}'
    assert settings_json(config, "figures") == "{}"
    assert settings_json(config, "kinetics") == "{}"


def test_section_puts_the_embedded_defaults_under_the_users_keys(repo_root):
    shipped = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    assert section({}, "survival") == shipped["survival"]
    merged = section({"survival": {"pooled": False, "endpoints": ["os"]}}, "survival")
    assert merged["pooled"] is False and merged["endpoints"] == ["os"]
    assert merged["bootstrap"] == shipped["survival"]["bootstrap"]
    assert section({"segmentation": None}, "segmentation")["dicom_seg"] == shipped["segmentation"]["dicom_seg"]


def test_analysed_cohorts_add_the_pooled_analysis_when_asked():
    assert analysed_cohorts(["lung", "melanoma"], {"pooled": True}) == ["lung", "melanoma", "all"]
    assert analysed_cohorts(["lung"], {"pooled": False}) == ["lung"]


def test_prediction_keys_are_read_by_the_prediction_models_only(repo_root):
    """The `survival` rule leaves these keys out of its settings: the modules its command runs must
    not read them (or editing them would not redo it), and the prediction models must."""
    survival = repo_root / "workflow" / "tumorburden" / "survival"
    defaults = re.search(r"^DEFAULTS = \{.*?^\}", (survival / "analysis.py").read_text(), re.S | re.M).group(0)
    for key in PREDICTION_KEYS:
        assert f'"{key}"' in defaults, key
        for module in ("analysis", "cox", "km", "concordance", "cutpoints"):
            text = (survival / f"{module}.py").read_text().replace(defaults, "")
            assert key not in text, f"survival/{module}.py reads {key}"
        assert f'"{key}"' in (survival / "prediction.py").read_text(), key


def test_per_scan_lookups(scans):
    plan = StudyPlan(scans, R)
    assert plan.scan_row("P1-d")["days"] == 60.0 and plan.patient_of("P3-b") == "P3"
    assert plan.external_file("P3-a", "mask") == "/m/P3-a.nii.gz" and plan.external_file("P3-a", "bodycomp") == "/ts/P3-a"
    assert plan.external_file("P3-b", "mask") is None and plan.external_file("P1-a", "mask") is None  # "", None
    assert [plan.is_dicom_source(s) for s in ("P1-a", "P2-x", "P2-y", "P3-a", "P3-b")] == [True, False, False, True,
                                                                                           False]
    assert plan.scan_source("P1-a") == "/d/P1/a"
    # a synthetic trial's scans are read from the patient's rendered folder
    assert StudyPlan(scans, R, synthetic=True).scan_source("P1-a") == "/d/P1"


def test_reference_scans_follow_the_baseline_rule(scans):
    plan = StudyPlan(scans, R)
    assert plan.reference_scan_of_patient() == {"P1": "P1-c", "P2": "P2-y", "P3": "P3-a"}
    assert [_reference_of(plan, s) for s in ("P1-a", "P1-d", "P2-x", "P3-b")] == ["P1-c", "P1-c", "P2-y", "P3-a"]


def test_per_patient_lookups(scans):
    plan = StudyPlan(scans, R)
    assert plan.patients() == ["P1", "P2", "P3"]
    assert plan.scans_of_patient() == {"P1": ["P1-a", "P1-c", "P1-b", "P1-d"], "P2": ["P2-x", "P2-y"],
                                       "P3": ["P3-a", "P3-b"]}
    assert plan.dicom_scans_of_patient() == {"P1": ["P1-a", "P1-c", "P1-b", "P1-d"], "P3": ["P3-a"]}
    assert plan.dicom_seg_targets() == [f"{R}/dicom_seg/P1", f"{R}/dicom_seg/P3"]
    assert plan.scans_of("P2") == ["P2-x", "P2-y"]
    assert plan.patient_scan_files("P3", "x/{scan_id}.nii") == ["x/P3-a.nii", "x/P3-b.nii"]
    assert plan.external_files("P3", "mask") == [("P3-a", "/m/P3-a.nii.gz")] and plan.external_files("P1", "mask") == []
    weights = {"weights": "/b/models/model.ts"}
    assert plan.segment_inputs("P3", weights) == {"ingested": f"{R}/qc/ingest/P3.tsv", "masks": ["/m/P3-a.nii.gz"],
                                                  "bodycomp": ["/ts/P3-a"], "weights": "/b/models/model.ts"}
    assert plan.segment_inputs("P2", {}) == {"ingested": f"{R}/qc/ingest/P2.tsv", "masks": [], "bodycomp": []}
    assert plan.ingest_sources("P2", discovered=False) == ["--", "/n/P2/x.nii.gz", "/n/P2/y.nii"]
    assert plan.ingest_sources("P2", discovered=True) == ["--series-list", "/n/P2/x.nii.gz", "/n/P2/y.nii"]
    assert plan.dicom_seg_inputs("P3") == {"segmented": f"{R}/qc/segment/P3.tsv", "sources": ["/d/P3/a"]}
    assert plan.dicom_segmentations_of_patient("P3") == [f"{R}/scans/P3-a/segmentation.nii.gz"]
    assert plan.dicom_series_of_patient("P1") == ["/d/P1/a", "/d/P1/c", "/d/P1/b", "/d/P1/d"]
    synthetic = StudyPlan(scans, R, synthetic=True)
    assert synthetic.dicom_seg_inputs("P1")["sources"] == ["/d/P1"]  # one rendered folder for four scans
    assert synthetic.truth_folders() == [f"{R}/truth/scans/P1", f"{R}/truth/scans/P2", f"{R}/truth/scans/P3"]
    assert plan.truth_folders() == []


def test_lookups_follow_a_new_scan_table(scans):
    plan = StudyPlan(scans, R)
    assert _reference_of(plan, "P1-d") == "P1-c"
    plan.scans = _scans([("P1", "P1-d", 60.0, "/d/P1/d", None, None), ("P1", "P1-e", -5.0, "/d/P1/e", None, None)])
    assert _reference_of(plan, "P1-d") == "P1-e"
    assert plan.scan_ids() == ["P1-d", "P1-e"]
    with pytest.raises(KeyError):
        plan.scan_row("P1-a")


def _manifest(path, rows):
    pd.DataFrame(rows, columns=["patient_id", "scan_id", "days", "image"]).to_csv(path, sep="\t", index=False)


def test_discovered_scans_read_the_manifest_and_follow_a_rerun(tmp_path):
    manifest = tmp_path / "scans.tsv"
    _manifest(manifest, [("007", "007_d0", 0, "/private/series/007_d0.txt"),
                         ("007", "007_d90", 90, "/private/series/007_d90.txt")])
    table = read_discovered_scans(manifest)
    assert list(table.index) == ["007_d0", "007_d90"] and table["patient_id"].tolist() == ["007", "007"]
    assert table["mask"].isna().all()

    scans = DiscoveredScans(lambda: manifest)
    plan = StudyPlan(scans, R)
    assert len(scans) == 2 and list(scans["scan_id"]) == ["007_d0", "007_d90"]
    assert _reference_of(plan, "007_d90") == "007_d0" and plan.external_file("007_d0", "mask") is None
    assert plan.dicom_scans_of_patient() == {"007": ["007_d0", "007_d90"]}
    # discovery ran again (a new series override): the new table is read
    _manifest(manifest, [("007", "007_d-7", -7, "/private/series/007_d-7.txt"),
                         ("007", "007_d90", 90, "/private/series/007_d90.txt")])
    stat = manifest.stat()
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _reference_of(plan, "007_d90") == "007_d-7"
    assert plan.scan_ids() == ["007_d-7", "007_d90"]


class CheckpointNotRun(Exception):
    """Stands for Snakemake's IncompleteCheckpointException."""


def test_discovered_scans_ask_for_the_checkpoint_only_when_read():
    calls = []

    def manifest():
        calls.append(1)
        raise CheckpointNotRun

    scans = DiscoveredScans(manifest)
    plan = StudyPlan(scans, R)
    copy.copy(scans)
    with pytest.raises(AttributeError):
        scans.__deepcopy__
    assert calls == []  # building the plan and copying the proxy reads nothing
    with pytest.raises(CheckpointNotRun):
        _reference_of(plan, "007_d0")
    assert calls == [1]


def test_model_weights_are_an_input_of_the_monai_engine_only(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "models" / "model.pt").write_bytes(b"pt")
    assert model_weights({"engine": "classical", "bundle": str(bundle)}) == {}
    assert model_weights({"engine": "monai", "bundle": str(bundle)}) == {"weights": str(bundle / "models/model.pt")}
    (bundle / "models" / "model.ts").write_bytes(b"ts")
    assert model_weights({"engine": "monai", "bundle": str(bundle)}) == {"weights": str(bundle / "models/model.ts")}


def test_the_plan_module_stays_light(repo_root):
    """Snakemake imports it on every run: no stage packages (checked by the layers contract too),
    no torch or matplotlib."""
    import subprocess
    import sys

    code = ("import sys; import tumorburden.workflow_plan, tumorburden.figures.names; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'monai', 'matplotlib', 'lifelines', 'SimpleITK') or m.startswith('tumorburden.'))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(repo_root / "workflow")}).stdout
    loaded = json.loads(out)
    heavy = [m for m in loaded if not m.startswith("tumorburden.")]
    assert heavy == [], heavy
    stages = [m for m in loaded if m.split(".")[1] in ("imaging", "segment", "lesions", "kinetics", "survival", "synth")]
    assert stages == [], stages
    assert workflow_plan.__name__ in loaded


def test_each_model_of_a_model_list_is_an_input_of_the_segment_job(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "models" / "model.ts").write_bytes(b"ts")
    organs = tmp_path / "organs.zip"
    organs.write_bytes(b"zip")
    segmentation = {"engine": "monai", "bundle": "unused",
                    "models": [{"bundle": str(bundle)}, {"nnunet": str(organs), "use": ["liver"]}]}
    assert model_weights(segmentation) == {"weights_1": str(bundle / "models/model.ts"), "weights_2": str(organs)}


def _nnunet_folder(root):
    model = root / "Dataset220_Lesions" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    for fold in (0, 1):
        (model / f"fold_{fold}").mkdir(parents=True)
        (model / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"w")
        (model / f"fold_{fold}" / "checkpoint_best.pth").write_bytes(b"w")
    (model / "plans.json").write_text('{"configurations": {}}')
    (model / "dataset.json").write_text('{"labels": {"background": 0, "tumor": 1}}')
    return model


def test_an_nnunet_folder_is_an_input_by_the_checkpoints_of_its_folds_in_use(tmp_path):
    """A folder's own time does not change when a checkpoint inside it is replaced: the files are the inputs."""
    model = _nnunet_folder(tmp_path)
    ckpt = [str(model / f"fold_{f}" / "checkpoint_final.pth") for f in (0, 1)]
    assert model_weights({"engine": "nnunet", "model": str(model)}) == {"weights": ckpt}
    # a folder holding the model, the folds and checkpoint configured
    assert model_weights({"engine": "nnunet", "model": str(model.parent),
                          "nnunet": {"folds": [1], "checkpoint": "checkpoint_best.pth"}}) == {
        "weights": [str(model / "fold_1" / "checkpoint_best.pth")]}
    # no checkpoint there: the path itself, for the segment job to say what is missing
    assert model_weights({"engine": "nnunet", "model": str(tmp_path / "absent")}) == {"weights": str(tmp_path / "absent")}


def test_the_model_fingerprint_follows_the_contents_of_configs_plans_and_labels(tmp_path):
    """Editing a bundle's declared inference or an nnU-Net model's plans or labels changes the segment
    job's param (Snakemake then redoes it); copying the same files elsewhere or touching them does not,
    nor do the weights (an input by time) or other files."""
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text('{"inferer": {"roi_size": [48, 48, 48]}}')
    (bundle / "configs" / "metadata.json").write_text('{"version": "1"}')
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"pt")
    model = _nnunet_folder(tmp_path / "nnunet")
    composed = {"engine": "monai", "bundle": "unused", "models": [{"bundle": str(bundle)}, {"nnunet": str(model)}]}
    single = {"engine": "monai", "bundle": str(bundle)}
    before = model_fingerprint(composed), model_fingerprint(single)

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy / "bundle")
    shutil.copytree(tmp_path / "nnunet", copy / "nnunet")
    os.utime(copy / "bundle" / "configs" / "inference.json", (1, 1))
    moved = {"engine": "monai", "bundle": "unused",
             "models": [{"bundle": str(copy / "bundle")}, {"nnunet": str(copy / "nnunet" / model.relative_to(tmp_path / "nnunet"))}]}
    assert model_fingerprint(moved) == before[0]
    (bundle / "models" / "model.pt").write_bytes(b"new weights")
    (bundle / "README.md").write_text("notes")
    assert (model_fingerprint(composed), model_fingerprint(single)) == before

    (bundle / "configs" / "inference.json").write_text('{"inferer": {"roi_size": [64, 64, 64]}}')
    edited = model_fingerprint(composed), model_fingerprint(single)
    assert edited[0] != before[0] and edited[1] != before[1]
    (model / "dataset.json").write_text('{"labels": {"background": 0, "liver": 1}}')
    assert model_fingerprint(composed) != edited[0] and model_fingerprint(single) == edited[1]
    assert model_fingerprint({"engine": "classical", "bundle": str(bundle)}) == model_fingerprint({"engine": "classical"})
