"""Score segmentation engines against the synthetic truth, per lesion site and size.

Every scan of a synthetic run (results/<name>/scans/<id>/image.nii.gz + truth/) is segmented
in-process by each engine (the bundle's model as configured, and the classical baseline), then
scored (every 10th scan also runs the model in the other precision, bf16 vs fp32, to check that
autocast keeps the labels):

  lesion Dice (pooled voxels, labels 1+5 vs truth 1+5), per-lesion Dice by site;
  detection: a true lesion is detected when a predicted lesion component overlaps it,
  by site and size (longest diameter >= 10 mm, 5-10 mm);
  false positives: predicted components (>= min_lesion_ml) that overlap no true lesion, per scan;
  total tumour volume per scan: median absolute relative error (scans with lesions);
  tissue Dice: muscle, SAT, VAT, lung, liver; node lesions labelled 5 (site accuracy).

Writes scores.csv (engine, metric, site, value, n), lesions.csv (one row per true lesion and
engine) and scores.md (the tables that go into the bundle's docs/README.md).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd

from tumorburden import labels as L
from tumorburden.imaging.volume import load_nifti
from tumorburden.segment import classical, engine
from tumorburden.segment.run import DEFAULTS as SEGMENT_DEFAULTS
from tumorburden.paths import resolve_bundle
from tumorburden.synth.trial import truth_scan_dirs

log = logging.getLogger(__name__)

MIN_LESION_ML = 0.05  # as lesions.min_volume_ml: smaller components are not lesions downstream
TISSUES = {"muscle": L.MUSCLE, "sat": L.SAT, "vat": L.VAT, "lung": L.LUNG, "liver": L.LIVER}
SITES = ("lung", "liver", "node", "soft_tissue")


PRECISION_CHECK_EVERY = 10  # every 10th scan is also run in fp32, to check that bf16 keeps the labels


def _engines(s: dict, bundle) -> dict:
    """name -> function(image Volume) -> labels."""
    out = {}
    if bundle is not None:
        out["monai"] = lambda img: engine.infer_labels(img, bundle, s)[0]
    out["classical"] = lambda img: classical.segment_volume(img, {**s, "lesions": True})
    return out


def score_scan(pred: np.ndarray, truth: np.ndarray, inst: np.ndarray, voxel_ml: float, true_lesions: pd.DataFrame):
    """Per-scan sums and per-lesion rows for one engine's labels."""
    p_les, t_les = np.isin(pred, L.LESION_LABELS), np.isin(truth, L.LESION_LABELS)
    sums = {"lesion_inter": float(np.count_nonzero(p_les & t_les)),
            "lesion_total": float(np.count_nonzero(p_les) + np.count_nonzero(t_les))}
    for name, label in TISSUES.items():
        p, t = pred == label, truth == label
        sums[f"{name}_inter"] = float(np.count_nonzero(p & t))
        sums[f"{name}_total"] = float(np.count_nonzero(p) + np.count_nonzero(t))
    node_true = truth == L.NODE_LESION
    sums["node_as_node"] = float(np.count_nonzero(node_true & (pred == L.NODE_LESION)))
    sums["node_as_lesion"] = float(np.count_nonzero(node_true & p_les))
    comps = cc3d.connected_components(p_les, connectivity=26)
    sizes = np.bincount(comps.ravel())
    small = np.nonzero(sizes * voxel_ml < MIN_LESION_ML)[0]
    if len(small) > 1 or (len(small) == 1 and small[0] != 0):
        comps[np.isin(comps, small[small > 0])] = 0
    # which predicted components touch which true lesions
    both = (comps > 0) & (inst > 0)
    pairs = np.unique(np.stack([comps[both], inst[both]]), axis=1) if both.any() else np.zeros((2, 0), int)
    matched_comps = set(pairs[0].tolist())
    kept = set(np.unique(comps[comps > 0]).tolist())
    sums["false_positives"] = float(len(kept - matched_comps))
    sums["pred_volume_ml"] = float(np.count_nonzero(comps > 0)) * voxel_ml
    sums["true_volume_ml"] = float(np.count_nonzero(t_les)) * voxel_ml
    rows = []
    for les in true_lesions.itertuples(index=False):
        t_k = inst == les.track_id
        n_t = int(np.count_nonzero(t_k))
        if n_t == 0:
            continue  # not rendered on this grid (outside the field of view or between voxel centres)
        touching = pairs[0][pairs[1] == les.track_id]
        p_k = np.isin(comps, touching) if len(touching) else np.zeros_like(t_k)
        n_p = int(np.count_nonzero(p_k))
        rows.append({"track_id": int(les.track_id), "site": les.site, "longest_diameter_mm": les.longest_diameter_mm,
                     "true_ml": n_t * voxel_ml, "pred_ml": n_p * voxel_ml, "detected": len(touching) > 0,
                     "dice": 2.0 * np.count_nonzero(p_k & t_k) / (n_p + n_t)})
    return sums, rows


def evaluate(scans_dir: Path, truth_dir: Path, out_dir: Path, settings: dict | None = None,
             threads: int | None = None) -> pd.DataFrame:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    s = {**SEGMENT_DEFAULTS, **(settings or {})}
    from tumorburden.segment.bundle import load_bundle

    bundle = load_bundle(resolve_bundle(s["bundle"])) if s["engine"] == "monai" or s.get("bundle") else None
    engines = _engines(s, bundle)
    true_lesions = pd.read_parquet(Path(truth_dir) / "lesions.parquet")
    rendered = truth_scan_dirs(truth_dir)
    scan_ids = sorted(p.name for p in Path(scans_dir).iterdir() if (p / "image.nii.gz").exists()
                      and p.name in rendered and (rendered[p.name] / "labels.nii.gz").exists())
    if not scan_ids:
        raise ValueError(f"{scans_dir}: no scan with both image.nii.gz and truth labels; run the synthetic trial first")
    per_scan, lesion_rows, seconds, checks = [], [], {k: 0.0 for k in engines}, []
    for n, scan_id in enumerate(scan_ids, 1):
        image = load_nifti(Path(scans_dir) / scan_id / "image.nii.gz", dtype=np.float32)
        truth = load_nifti(rendered[scan_id] / "labels.nii.gz", dtype=np.uint8).array
        inst = load_nifti(rendered[scan_id] / "lesions.nii.gz").array.astype(np.int64)
        tl = true_lesions[true_lesions["scan_id"] == scan_id]
        for name, fn in engines.items():
            t0 = time.perf_counter()
            pred = fn(image)
            seconds[name] += time.perf_counter() - t0
            sums, rows = score_scan(pred, truth, inst, image.voxel_ml, tl)
            per_scan.append({"engine": name, "scan_id": scan_id, **sums})
            lesion_rows += [{"engine": name, "scan_id": scan_id, **r} for r in rows]
            if name == "monai" and (n - 1) % PRECISION_CHECK_EVERY == 0:
                used = engine.autocast_dtype(s["precision"], engine.pick_device(s["device"]))
                other = "fp32" if used is not None else "bf16"
                alt = engine.infer_labels(image, bundle, {**s, "precision": other})[0]
                t_les = np.isin(truth, L.LESION_LABELS)
                checks.append({"agreement": float(np.mean(alt == pred)), "other": other,
                               **{f"{k}_{tag}": v for tag, lab in (("used", pred), ("other", alt))
                                  for k, v in (("inter", np.count_nonzero(np.isin(lab, L.LESION_LABELS) & t_les)),
                                               ("total", np.count_nonzero(np.isin(lab, L.LESION_LABELS))
                                                + np.count_nonzero(t_les)))}})
        if n % 10 == 0 or n == len(scan_ids):
            log.info("%d/%d scans scored (%s)", n, len(scan_ids),
                     ", ".join(f"{k} {v / n:.2f} s/scan" for k, v in seconds.items()))
    scans = pd.DataFrame(per_scan)
    lesions = pd.DataFrame(lesion_rows)
    scores = summarise(scans, lesions, seconds, len(scan_ids))
    if checks:
        c = pd.DataFrame(checks)
        extra = [("precision_check_label_agreement", c["agreement"].mean()),
                 ("precision_check_lesion_dice_as_run", _dice(c["inter_used"].sum(), c["total_used"].sum())),
                 (f"precision_check_lesion_dice_{c['other'].iloc[0]}", _dice(c["inter_other"].sum(), c["total_other"].sum()))]
        scores = pd.concat([scores, pd.DataFrame([{"engine": "monai", "metric": m, "site": "all", "value": float(v),
                                                   "n": len(c)} for m, v in extra])], ignore_index=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out_dir / "scores.csv", index=False)
    lesions.to_csv(out_dir / "lesions.csv", index=False)
    (out_dir / "scores.md").write_text(markdown(scores, bundle, len(scan_ids), len(lesions) // max(1, len(engines))))
    log.info("scores -> %s", out_dir)
    return scores


def _dice(inter, total):
    return 2.0 * inter / total if total > 0 else math.nan


def summarise(scans: pd.DataFrame, lesions: pd.DataFrame, seconds: dict, n_scans: int) -> pd.DataFrame:
    rows = []

    def add(eng, metric, site, value, n):
        rows.append({"engine": eng, "metric": metric, "site": site, "value": float(value), "n": int(n)})

    for eng, sc in scans.groupby("engine", sort=False):
        les = lesions[lesions["engine"] == eng] if not lesions.empty else lesions
        add(eng, "lesion_dice_pooled", "all", _dice(sc["lesion_inter"].sum(), sc["lesion_total"].sum()), len(sc))
        for name in TISSUES:
            add(eng, f"{name}_dice", "all", _dice(sc[f"{name}_inter"].sum(), sc[f"{name}_total"].sum()), len(sc))
        add(eng, "false_positives_per_scan", "all", sc["false_positives"].mean(), len(sc))
        with_lesions = sc[sc["true_volume_ml"] > 0]
        err = (with_lesions["pred_volume_ml"] - with_lesions["true_volume_ml"]).abs() / with_lesions["true_volume_ml"]
        add(eng, "total_volume_median_abs_rel_error", "all", err.median(), len(err))
        big = with_lesions["true_volume_ml"] >= 5.0
        add(eng, "total_volume_median_abs_rel_error_ge5ml", "all", err[big].median(), int(big.sum()))
        node = sc["node_as_lesion"].sum()
        add(eng, "node_lesions_labelled_node", "node", sc["node_as_node"].sum() / node if node else math.nan, len(sc))
        add(eng, "seconds_per_scan", "all", seconds[eng] / n_scans, n_scans)
        for site in ("all", *SITES):
            part = les if site == "all" else les[les["site"] == site]
            ge10 = part[part["longest_diameter_mm"] >= 10]
            mid = part[(part["longest_diameter_mm"] >= 5) & (part["longest_diameter_mm"] < 10)]
            add(eng, "sensitivity_ge10mm", site, ge10["detected"].mean() if len(ge10) else math.nan, len(ge10))
            add(eng, "sensitivity_5to10mm", site, mid["detected"].mean() if len(mid) else math.nan, len(mid))
            add(eng, "lesion_dice_mean_ge10mm", site, ge10["dice"].mean() if len(ge10) else math.nan, len(ge10))
    return pd.DataFrame(rows)


def markdown(scores: pd.DataFrame, bundle, n_scans: int, n_lesions: int) -> str:
    engines = list(dict.fromkeys(scores["engine"]))
    name = f"{bundle.name} {bundle.version}" if bundle is not None else "(no bundle)"
    lines = [f"Held-out synthetic scans: {n_scans} scans, {n_lesions} rendered true lesions. Model: {name}.", "",
             "| metric | site | n | " + " | ".join(engines) + " |", "|---|---|---|" + "---|" * len(engines)]
    keyed = scores.set_index(["engine", "metric", "site"])
    for (metric, site), group in scores.groupby(["metric", "site"], sort=False):
        cells = []
        for e in engines:
            v = keyed["value"].get((e, metric, site), math.nan)
            cells.append("–" if isinstance(v, float) and math.isnan(v) else f"{v:.3f}")
        lines.append(f"| {metric} | {site} | {int(group['n'].iloc[0])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
