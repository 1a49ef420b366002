"""Training writes a loadable bundle (a smoke run of a few steps); evaluation scores known answers."""

import json

import numpy as np
import pandas as pd
import pytest

from tumorburden import labels as L
from tumorburden.segment import engine, evaluate, train
from tumorburden.segment.bundle import load_bundle
from tumorburden.imaging.volume import Volume


SMOKE = {"n_patients": 2, "scans_per_grid": 1, "grids": [[40, 10.0, 10.0]], "spacing_mm": [10.0, 10.0, 10.0],
         "roi_size": [16, 16, 16], "channels": [4, 8], "steps": 2, "batch_size": 1}


def test_training_writes_a_bundle_the_engine_runs(tmp_path):
    summary = train.train(SMOKE, tmp_path / "bundle")
    assert summary["n_scans"] == 1 and summary["settings"]["steps"] == 2
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.lut == list(range(len(L.NAMES)))
    assert bundle.declared and bundle.spacing_mm == (10.0, 10.0, 10.0) and bundle.roi_size == (16, 16, 16)
    meta = json.loads((tmp_path / "bundle/configs/metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] == "lesion"
    assert "4242" in meta["data_source"]
    assert "tumorburden" not in meta  # MONAI has keys for all of it: configs/inference.json declares it
    # the training window is the bundle's window: inference scales HU as training did
    inference = json.loads((tmp_path / "bundle/configs/inference.json").read_text())
    window = [t for t in inference["preprocessing"]["transforms"] if t["_target_"] == "ScaleIntensityRanged"]
    assert [(t["a_min"], t["a_max"], t["b_min"], t["b_max"], t["clip"]) for t in window] == [(-300.0, 300.0, -1.0, 1.0, True)]
    hu = np.array([-1000.0, -300.0, 0.0, 150.0, 300.0, 2000.0], np.float32).reshape(6, 1, 1)
    scaled = bundle.preprocess(engine.to_metatensor(Volume(hu, np.diag([10.0, 10.0, 10.0, 1.0])))).as_tensor()
    np.testing.assert_allclose(scaled[0, :, 0, 0].numpy(), [-1.0, -1.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    image = Volume(np.full((20, 20, 10), -100.0, np.float32), np.diag([-20.0, -20.0, 20.0, 1.0]))
    labels, _ = engine.infer_labels(image, bundle)
    assert labels.shape == image.shape


def test_training_trial_is_not_the_demo_trial():
    assert train.DEFAULTS["trial_seed"] != 20261122  # config synthetic.seed: the held-out trial


def _scan(pred_boxes, true_boxes, shape=(30, 30, 30)):
    pred = np.zeros(shape, np.uint8)
    truth = np.zeros(shape, np.uint8)
    inst = np.zeros(shape, np.int64)
    for (sl, label) in pred_boxes:
        pred[sl] = label
    for k, (sl, label) in enumerate(true_boxes, 1):
        truth[sl] = label
        inst[sl] = k
    return pred, truth, inst


def test_score_scan_counts_detections_and_false_positives():
    a = (slice(2, 8), slice(2, 8), slice(2, 8))
    b = (slice(20, 23), slice(20, 23), slice(20, 23))
    fp = (slice(12, 15), slice(2, 5), slice(2, 5))
    pred, truth, inst = _scan([((slice(3, 8), slice(2, 8), slice(2, 8)), L.LESION), (fp, L.LESION)],
                              [(a, L.LESION), (b, L.NODE_LESION)])
    lesions = pd.DataFrame({"track_id": [1, 2], "site": ["liver", "node"], "longest_diameter_mm": [12.0, 6.0]})
    sums, rows = evaluate.score_scan(pred, truth, inst, 1.0, lesions)  # 1 mL voxels
    assert sums["false_positives"] == 1
    assert [r["detected"] for r in rows] == [True, False]
    assert rows[0]["dice"] == pytest.approx(2 * 180 / (180 + 216))
    assert sums["true_volume_ml"] == 216 + 27 and sums["pred_volume_ml"] == 180 + 27
    summary = evaluate.summarise(pd.DataFrame([{"engine": "x", "scan_id": "s", **sums}]),
                                 pd.DataFrame([{"engine": "x", "scan_id": "s", **r} for r in rows]), {"x": 1.0}, 1)
    value = summary.set_index(["metric", "site"])["value"]
    assert value[("sensitivity_ge10mm", "liver")] == 1.0
    assert value[("sensitivity_5to10mm", "node")] == 0.0
    assert value[("false_positives_per_scan", "all")] == 1.0
    md = evaluate.markdown(summary, None, 1, 2)
    assert "| sensitivity_ge10mm | liver | 1 | 1.000 |" in md


def test_components_below_the_lesion_minimum_are_not_false_positives():
    speck = (slice(12, 13), slice(2, 3), slice(2, 3))
    pred, truth, inst = _scan([(speck, L.LESION)], [])
    sums, rows = evaluate.score_scan(pred, truth, inst, 0.001, pd.DataFrame(columns=["track_id", "site", "longest_diameter_mm"]))
    assert sums["false_positives"] == 0 and rows == []


def test_lesions_per_training_patch_are_drawn_per_lesion_not_per_voxel():
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[1:11, 1:11, 1:11] = L.LESION  # 1,000 voxels
    lab[15, 15, 15] = L.NODE_LESION  # one voxel
    lesions = train.lesion_voxels(lab)
    assert sorted(len(v) for v in lesions) == [1, 1000]
    assert any((v == [15, 15, 15]).all() for v in lesions)


def test_inserted_small_lesions_stay_in_their_host_with_soft_tissue_density():
    s = {**train.DEFAULTS, "inserted_hu": [40.0, 40.0], "inserted_diameter_mm": [9.0, 9.0]}
    lab = np.full((32, 32, 32), L.LIVER, np.uint8)
    lab[:, :16] = L.VAT
    lab[:, :, :4] = L.MUSCLE  # not a host
    scale = 2.0 / 600.0  # the -300..300 HU window to -1..1
    img = np.where(lab == L.LIVER, 120.0, np.where(lab == L.VAT, -100.0, 50.0)).astype(np.float32) * scale
    before_lab, before_img = lab.copy(), img.copy()
    rng = np.random.default_rng(3)
    for _ in range(20):
        train.insert_small_lesions(img, lab, rng, s)
    changed = lab != before_lab
    assert changed.any()
    # a lesion in visceral fat is a node, one in the liver a lesion; muscle never receives one
    assert set(lab[changed & (before_lab == L.VAT)]) == {L.NODE_LESION}
    assert set(lab[changed & (before_lab == L.LIVER)]) == {L.LESION}
    assert not (changed & (before_lab == L.MUSCLE)).any()
    assert (img[before_lab == L.MUSCLE] == before_img[before_lab == L.MUSCLE]).all()
    # the labelled voxels carry the lesion's density (partial volume at the rim, noise of 12 HU)
    assert abs(float(np.median(img[changed] / scale)) - 40.0) < 25.0
