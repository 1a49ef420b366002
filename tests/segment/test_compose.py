"""Several models composed (segmentation.models): the checks of the list, the precedence, and the
two maps a patient's job writes, on a scene whose every voxel's label is known from how it was
built (band_bundle.py: networks with fixed weights, so no training and no tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

from band_bundle import write_band_bundle
from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, load_nifti, save_nifti
from tumorburden.model_labels import ModelListError, plan_models
from tumorburden.segment.compose import compose
from tumorburden.segment.run import ScanJob, segment_patient

AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])
# the scene: boxes of distinct HU (index slices of a 32^3 grid of 4 mm voxels)
BODY = np.s_[4:28, 4:28, 4:28]
LIVER = np.s_[6:16, 6:20, 10:22]
LIVER_LESION = np.s_[9:13, 10:14, 14:18]
SPLEEN = np.s_[18:26, 6:14, 10:20]
SPLEEN_LESION = np.s_[20:23, 8:11, 13:16]
L3 = np.s_[18:26, 18:26, 4:8]
HEART = np.s_[6:14, 20:26, 22:28]

LESION_MODEL = {"lesion": (650.0, 100.0), "skeletal_muscle": 40.0, "liver": 300.0}
# the organ model's liver band takes the liver lesion in (organ models segment the organ with its
# lesions), not the spleen's (the site then comes from what surrounds it)
ORGAN_MODEL = {"liver": (450.0, 200.0), "spleen": 150.0, "vertebrae_L3": 900.0, "heart": -500.0}


def scene() -> np.ndarray:
    hu = np.full((32, 32, 32), -1000.0, np.float32)
    hu[BODY] = 40.0
    hu[LIVER] = 300.0
    hu[LIVER_LESION] = 600.0
    hu[SPLEEN] = 150.0
    hu[SPLEEN_LESION] = 700.0
    hu[L3] = 900.0
    hu[HEART] = -500.0
    return hu


def box(*slices) -> np.ndarray:
    out = np.zeros((32, 32, 32), bool)
    for s in slices:
        out[s] = True
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return (write_band_bundle(root / "lesions", LESION_MODEL), write_band_bundle(root / "organs", ORGAN_MODEL))


def two_models(models, **organs_entry):
    lesions, organs = models
    return {"models": [{"bundle": str(lesions), "use": ["lesion", "skeletal_muscle"], "ignore": ["liver"]},
                       {"bundle": str(organs), "use": ["liver", "spleen", "vertebrae_L3"], "ignore": "rest",
                        **organs_entry}]}


def test_the_plan_maps_each_used_label_and_ignores_the_rest(models):
    plan = plan_models(two_models(models))
    lesion_model, organ_model = plan.entries
    assert lesion_model.provides == {L.LESION, L.MUSCLE}
    assert organ_model.provides == {L.LIVER, L.SPLEEN, L.VERTEBRA_L3}
    assert organ_model.used_names() == {"liver": L.LIVER, "spleen": L.SPLEEN, "vertebrae_L3": L.VERTEBRA_L3}
    assert plan.organ_model
    # the default precedence: lesion over liver over muscle
    assert plan.precedence.index(L.LESION) < plan.precedence.index(L.LIVER) < plan.precedence.index(L.MUSCLE)


@pytest.mark.parametrize("change, message", [
    # the organ model's heart is neither used nor ignored
    (lambda m: m["models"][1].update(ignore=None), "labels 'heart' are neither used nor ignored"),
    # without `use`, every label is used: the heart then maps to none of ours
    (lambda m: m["models"][1].update(use=None, ignore=None), "'heart' map(s) to none of our labels"),
    (lambda m: m["models"][1].update(ignore=["hart"]), "`ignore` names 'hart', which the model does not have"),
    # both models give the liver
    (lambda m: m["models"][0].update(use=["lesion", "skeletal_muscle", "liver"], ignore=[]),
     "liver is given by segmentation.models[1] (lesions) and segmentation.models[2] (organs)"),
    # nobody gives a lesion
    (lambda m: m["models"][0].update(use=["skeletal_muscle"], ignore="rest"), "no model gives a lesion label"),
    (lambda m: m.update(precedence=["lesion", "liver", "skeletal_muscle"]),
     "spleen (given by segmentation.models[2] (organs)) is not in the list"),
    (lambda m: m.update(precedence=["lesion", "tumour", "liver"]), "lesion is listed twice (as 'tumour')"),
    (lambda m: m.update(precedence=["lesion", "kidneyy"]), "'kidneyy' is none of our labels"),
    (lambda m: m["models"][1].update(use=None), "`ignore: rest` needs a `use` list"),
    (lambda m: m["models"][0].update(name="organs"), "segmentation.models[2]: name 'organs' is also the name of segmentation.models[1]"),
    (lambda m: m["models"][1].update(bundle="/nowhere/organs"), "/nowhere/organs does not exist"),
    (lambda m: m["models"].append({"nnunet": "/nowhere/Dataset291"}), "nothing is downloaded at run time"),
    (lambda m: m["models"].append({"bundle": "x", "nnunet": "y"}), "name exactly one of"),
])
def test_a_bad_model_list_is_one_line_naming_the_key(models, change, message):
    settings = two_models(models)
    change(settings)
    with pytest.raises(ModelListError) as err:
        plan_models(settings)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_lesion_labels_are_checked_by_name_not_by_position(models, tmp_path):
    # a model whose lesion channel is called "tumor" and whose others are all ignored
    renamed = write_band_bundle(tmp_path / "tumour", {"tumor": 600.0, "muscle": 40.0})
    plan = plan_models({"models": [{"bundle": str(renamed), "use": ["tumor"], "ignore": ["muscle"]}]})
    assert plan.provides == {L.LESION}
    assert not plan.organ_model


def test_compose_takes_the_label_of_highest_precedence_at_each_voxel():
    rank = np.zeros(15, int)
    rank[[L.LESION, L.LIVER, L.MUSCLE]] = [3, 2, 1]
    a = np.array([L.MUSCLE, L.MUSCLE, 0, L.LESION, 0], np.uint8)
    b = np.array([L.LIVER, 0, L.LIVER, L.LIVER, L.SPLEEN], np.uint8)
    assert compose([a, b], rank, (L.LESION, L.LIVER, L.MUSCLE)).tolist() == [L.LIVER, L.MUSCLE, L.LIVER, L.LESION, 0]
    # order of the models does not matter
    assert compose([b, a], rank, (L.LESION, L.LIVER, L.MUSCLE)).tolist() == [L.LIVER, L.MUSCLE, L.LIVER, L.LESION, 0]
    # a label not kept is background (the spleen in the segmentation map)
    assert compose([b], rank, (L.LIVER,)).tolist() == [L.LIVER, 0, L.LIVER, L.LIVER, 0]


def _run(tmp_path, settings, name="P1"):
    image = tmp_path / "image.nii.gz"
    save_nifti(Volume(scene(), AFFINE), image)
    out = tmp_path / "S1" / "segmentation.nii.gz"
    record = segment_patient(name, [ScanJob("S1", image, out, dicom_source=False)], tmp_path / "record.tsv",
                             settings={**settings, "precision": "fp32", "device": "cpu"})
    organs = out.with_name("organs.nii.gz")
    return (load_nifti(out).array, load_nifti(organs).array if organs.exists() else None, record)


def test_two_models_composed_give_lesions_over_organs_over_muscle_and_an_organ_map(models, tmp_path):
    labels, organs, record = _run(tmp_path, two_models(models))
    lesions = box(LIVER_LESION, SPLEEN_LESION)
    liver = box(LIVER) & ~lesions
    muscle = box(BODY) & ~box(LIVER, SPLEEN, L3, HEART)
    expected = np.zeros_like(labels)
    expected[muscle] = L.MUSCLE
    expected[liver] = L.LIVER
    expected[lesions] = L.LESION
    np.testing.assert_array_equal(labels, expected)  # spleen, L3 (organ map only) and the heart are 0
    expected_organs = np.zeros_like(organs)
    expected_organs[box(LIVER)] = L.LIVER  # with its lesion under it
    expected_organs[box(SPLEEN) & ~box(SPLEEN_LESION)] = L.SPLEEN
    expected_organs[box(L3)] = L.VERTEBRA_L3
    np.testing.assert_array_equal(organs, expected_organs)
    # measurement (one patient's job) finds the organ map beside the segmentation: the spleen's lesion
    # is in the spleen, which no label of segmentation.nii.gz says
    from tumorburden import tables
    from tumorburden.lesions.measure import ScanFiles, measure_patient

    folder = tmp_path / "S1"
    measure_patient("P1", "S1", tmp_path / "image.nii.gz",
                    [ScanFiles("S1", tmp_path / "image.nii.gz", folder / "segmentation.nii.gz",
                               folder / "lesions.parquet", folder / "tissue.parquet", folder / "to_reference.json")],
                    tmp_path / "measure.tsv", settings={"registration": "none"})
    measured = tables.read(folder / "lesions.parquet", "scan_lesions")
    assert list(measured["organ"]) == ["liver", "spleen"]  # by volume: 64 then 27 voxels
    # and the L3 slice: the vertebra spans slices 4-7, its middle is slice 5; 4 x 4 mm pixels
    l3 = tables.read(folder / "l3.parquet", "scan_l3").iloc[0]
    assert l3["l3_reason"] == ""
    assert l3["l3_muscle_cm2"] == pytest.approx(muscle[:, :, 5].sum() * 16 / 100)
    assert l3["l3_slice_mm"] == pytest.approx(5 * 4.0)
    row = record.iloc[0]
    assert (row["engine"], row["lesions_from"], row["body_composition_from"]) == ("models:lesions+organs", "lesions",
                                                                                   "lesions")
    assert row["lesion_ml"] == pytest.approx(lesions.sum() * 0.064)


def test_the_precedence_decides_where_models_disagree(models, tmp_path):
    settings = two_models(models)
    settings["precedence"] = ["liver", "lesion", "skeletal_muscle", "spleen", "vertebra_L3"]
    labels, _, _ = _run(tmp_path, settings)
    assert (labels[LIVER_LESION] == L.LIVER).all()  # the organ model's liver now wins over the lesion
    assert (labels[SPLEEN_LESION] == L.LESION).all()


def test_without_an_organ_model_no_organ_map_and_a_stale_one_is_removed(models, tmp_path):
    lesions, _ = models
    stale = tmp_path / "S1" / "organs.nii.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier configuration")
    labels, organs, _ = _run(tmp_path, {"models": [{"bundle": str(lesions), "use": ["lesion", "skeletal_muscle"],
                                                    "ignore": ["liver"]}]})
    assert organs is None and not stale.exists()
    assert set(np.unique(labels)) == {0, L.LESION, L.MUSCLE}
