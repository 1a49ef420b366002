"""Score a finished run of the synthetic trial against its truth, stage by stage.

Writes one tidy CSV: stage, metric, value, n, detail. A metric whose inputs are missing is
still written, with value NaN and the reason in `detail`, so a scores file always has the
same rows and a broken stage shows up as a visible gap rather than a silent omission.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd


from tumorburden import labels, tables
from tumorburden.baseline import baseline_scans
from tumorburden.imaging.volume import Volume, load_nifti
from tumorburden.synth.trial import truth_scan_dirs

log = logging.getLogger(__name__)

COLUMNS = ["stage", "metric", "value", "n", "detail"]
TRACK_SPHERE_MM = 5.0  # a measured lesion takes the true label most frequent within this radius
TRACK_NEAREST_MM = 15.0  # else the nearest true centroid, if this close
TISSUES = {"muscle": labels.MUSCLE, "sat": labels.SAT, "vat": labels.VAT, "lung": labels.LUNG, "liver": labels.LIVER}


class _Scores:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, stage, metric, value, n, detail=""):
        value = float(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else math.nan
        self.rows.append({"stage": stage, "metric": metric, "value": value, "n": int(n), "detail": detail})

    def skip(self, stage, metric, reason):
        self.add(stage, metric, math.nan, 0, f"skipped: {reason}")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)


def _dice(inter: float, total: float) -> float:
    return 2.0 * inter / total if total > 0 else math.nan


def _read_table(path: Path, schema: str | None):
    """(frame, None) or (None, reason)."""
    if not path.exists():
        return None, f"{path} not found"
    try:
        if schema is None:
            return pd.read_parquet(path), None
        return tables.read(path, schema), None
    except (ValueError, OSError) as exc:
        return None, f"{path} unreadable ({' '.join(str(exc).split())})"


def _sphere_offsets(spacing) -> np.ndarray:
    reach = [max(1, int(math.ceil(TRACK_SPHERE_MM / s))) for s in spacing]
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), axis=-1).reshape(-1, 3)
    dist = np.linalg.norm(grid * np.asarray(spacing), axis=1)
    return grid[dist <= max(TRACK_SPHERE_MM, max(spacing))]


def _map_to_truth(measured: pd.DataFrame, inst: Volume, true_scan: pd.DataFrame) -> list:
    """True track_id for each measured lesion of one scan (None where nothing true is near)."""
    if measured.empty:
        return []
    offsets = _sphere_offsets(inst.spacing)
    inv = np.linalg.inv(inst.affine)
    ras = measured[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    ijk = np.rint(ras @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    true_xyz = true_scan[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    out = []
    for centre, point in zip(ijk, ras):
        idx = centre[None, :] + offsets
        ok = np.all((idx >= 0) & (idx < np.array(inst.shape)), axis=1)
        vals = inst.array[tuple(idx[ok].T)]
        vals = vals[vals > 0]
        if vals.size:
            ids, counts = np.unique(vals, return_counts=True)
            out.append(int(ids[np.argmax(counts)]))
            continue
        if len(true_xyz):
            dist = np.linalg.norm(true_xyz - point[None], axis=1)
            j = int(np.argmin(dist))
            if dist[j] <= TRACK_NEAREST_MM:
                out.append(int(true_scan["track_id"].iloc[j]))
                continue
        out.append(None)
    return out


def _score_images(truth_dir: Path, results_dir: Path, true_scans: pd.DataFrame, true_lesions: pd.DataFrame,
                  measured: pd.DataFrame | None, sc: _Scores) -> pd.DataFrame | None:
    """Segmentation, detection, false positives; returns measured lesions with their true track."""
    inter = {k: 0.0 for k in ("lesion", *TISSUES)}
    total = {k: 0.0 for k in inter}
    pred_has = {k: False for k in TISSUES}
    per_scan_dice, fp_counts = [], []
    detected = {"ge10": [0, 0], "5to10": [0, 0]}  # [detected, total]
    unrendered = 0
    missing, off_grid = [], []
    mapped_parts = []
    rendered = truth_scan_dirs(truth_dir)
    for scan_id in true_scans["scan_id"]:
        seg_path = results_dir / "scans" / scan_id / "segmentation.nii.gz"
        truth_scan = rendered.get(scan_id)
        if truth_scan is None or not all(p.exists() for p in (seg_path, truth_scan / "labels.nii.gz",
                                                               truth_scan / "lesions.nii.gz")):
            missing.append(scan_id)
            continue
        truth = load_nifti(truth_scan / "labels.nii.gz", dtype=np.uint8)
        pred_arr = load_nifti(seg_path).array_on_grid_of(truth, atol=1e-2)
        if pred_arr is None:
            off_grid.append(scan_id)
            continue
        inst = load_nifti(truth_scan / "lesions.nii.gz", dtype=np.uint16)
        pred_lesion = np.isin(pred_arr, labels.LESION_LABELS)
        true_lesion = inst.array > 0
        i = float(np.count_nonzero(pred_lesion & true_lesion))
        t = float(np.count_nonzero(pred_lesion) + np.count_nonzero(true_lesion))
        inter["lesion"] += i
        total["lesion"] += t
        if t > 0:
            per_scan_dice.append(_dice(i, t))
        for name, lab in TISSUES.items():
            p, tr = pred_arr == lab, truth.array == lab
            pred_has[name] |= bool(p.any())
            inter[name] += float(np.count_nonzero(p & tr))
            total[name] += float(np.count_nonzero(p) + np.count_nonzero(tr))

        # detection: a true lesion is found if any predicted lesion voxel overlaps it
        hit_ids = set(np.unique(inst.array[pred_lesion]).tolist()) - {0}
        present = set(np.unique(inst.array).tolist()) - {0}
        for les in true_lesions[true_lesions["scan_id"] == scan_id].itertuples(index=False):
            if les.track_id not in present:
                unrendered += 1
                continue
            bucket = "ge10" if les.longest_diameter_mm >= 10 else "5to10" if les.longest_diameter_mm >= 5 else None
            if bucket:
                detected[bucket][1] += 1
                detected[bucket][0] += les.track_id in hit_ids
        components, n_comp = cc3d.connected_components(pred_lesion.astype(np.uint8), connectivity=26, return_N=True)
        touching = np.unique(components[true_lesion])
        fp_counts.append(n_comp - int(np.count_nonzero(touching)))

        if measured is not None:
            m = measured[measured["scan_id"] == scan_id].copy()
            m["true_track"] = _map_to_truth(m, inst, true_lesions[true_lesions["scan_id"] == scan_id])
            mapped_parts.append(m)

    n_scored = len(true_scans) - len(missing) - len(off_grid)
    note = f"{n_scored} of {len(true_scans)} scans scored"
    if missing:
        note += f"; {len(missing)} without segmentation or truth (e.g. {missing[0]})"
    if off_grid:
        note += f"; {len(off_grid)} on a different grid than the truth (e.g. {off_grid[0]})"
    if n_scored == 0:
        for metric in ("lesion_dice_pooled", "lesion_dice_median_per_scan", *(f"{k}_dice" for k in TISSUES),
                       "sensitivity_ge10mm", "sensitivity_5to10mm", "false_positives_per_scan"):
            sc.skip("lesions" if metric.startswith(("sens", "false")) else "segment", metric, note)
        return None
    sc.add("segment", "lesion_dice_pooled", _dice(inter["lesion"], total["lesion"]), n_scored, note)
    if per_scan_dice:
        sc.add("segment", "lesion_dice_median_per_scan", float(np.median(per_scan_dice)), len(per_scan_dice),
               "scans with a true or predicted lesion")
    else:
        sc.skip("segment", "lesion_dice_median_per_scan", "no scan has a true or predicted lesion")
    for name in TISSUES:
        if name in ("lung", "liver") and not pred_has[name]:
            sc.skip("segment", f"{name}_dice", f"the segmentation has no {name} label (optional)")
        else:
            sc.add("segment", f"{name}_dice", _dice(inter[name], total[name]), n_scored, f"pooled over scans; {note}")
    extra = f"; {unrendered} true lesion-timepoints smaller than a voxel excluded" if unrendered else ""
    for bucket, metric, text in (("ge10", "sensitivity_ge10mm", "longest diameter >= 10 mm"),
                                 ("5to10", "sensitivity_5to10mm", "longest diameter 5-10 mm")):
        hit, n = detected[bucket]
        if n:
            sc.add("lesions", metric, hit / n, n, f"true lesion-timepoints, {text}{extra}")
        else:
            sc.skip("lesions", metric, f"no true lesion with {text}")
    sc.add("lesions", "false_positives_per_scan", float(np.mean(fp_counts)), len(fp_counts),
           "mean predicted components (26-connected) touching no true lesion; "
           f"max {int(np.max(fp_counts))}")
    return pd.concat(mapped_parts, ignore_index=True) if mapped_parts else None


def _score_tracking(mapped: pd.DataFrame | None, reason: str | None, sc: _Scores) -> None:
    """tracking_accuracy: lesion-timepoints whose track's majority true lesion is their true
    lesion (every track pure). tracking_accuracy_strict: also their true lesion's majority track
    is their track, so a true lesion cut into several tracks (e.g. segmented in fragments at
    baseline) counts as errors too."""
    metrics = ("tracking_accuracy", "tracking_accuracy_strict")
    if mapped is None or mapped.empty:
        for m in metrics:
            sc.skip("lesions", m, reason or "no measured lesion on a scored scan")
        return
    ok = mapped[mapped["true_track"].notna()].copy()
    unmapped = len(mapped) - len(ok)
    if ok.empty:
        for m in metrics:
            sc.skip("lesions", m, "no measured lesion lies on a true lesion")
        return
    ok["true_track"] = ok["true_track"].astype(int)
    ok["track_id"] = ok["track_id"].astype(int)

    def majority(by, of):
        return (ok.groupby(["patient_id", by, of]).size().rename("k").reset_index()
                .sort_values(["patient_id", by, "k", of], ascending=[True, True, False, True])
                .drop_duplicates(["patient_id", by]).set_index(["patient_id", by])[of])

    keys_track = pd.MultiIndex.from_frame(ok[["patient_id", "track_id"]])
    keys_true = pd.MultiIndex.from_frame(ok[["patient_id", "true_track"]])
    pure = ok["true_track"].to_numpy() == majority("track_id", "true_track").reindex(keys_track).to_numpy()
    whole = ok["track_id"].to_numpy() == majority("true_track", "track_id").reindex(keys_true).to_numpy()
    note = f"; {unmapped} measured lesion-timepoints on no true lesion excluded" if unmapped else ""
    sc.add("lesions", "tracking_accuracy", float(pure.mean()), len(ok),
           "measured lesion-timepoints whose track maps to its majority true track" + note)
    split = ok.groupby(["patient_id", "true_track"])["track_id"].nunique()
    sc.add("lesions", "tracking_accuracy_strict", float((pure & whole).mean()), len(ok),
           "also the true lesion's majority track is theirs; "
           f"{int((split > 1).sum())} true lesion(s) on more than one track" + note)


def _abs_rel_error(measured: pd.Series, truth: pd.Series) -> pd.Series:
    return (measured - truth).abs() / truth


def _score_burden(truth_scans: pd.DataFrame, results_dir: Path, sc: _Scores) -> None:
    burden, reason = _read_table(results_dir / "tables" / "burden.parquet", "burden")
    names = ["total_volume_median_abs_rel_error", "total_volume_p90_abs_rel_error",
             "total_volume_median_abs_rel_error_ge5ml", "total_volume_p90_abs_rel_error_ge5ml"]
    if burden is None:
        for m in names:
            sc.skip("burden", m, reason)
        return
    both = truth_scans.merge(burden[["scan_id", "total_volume_ml"]], on="scan_id", suffixes=("_true", ""))
    both = both[both["total_volume_ml"].notna() & (both["total_volume_ml_true"] > 0)]
    note = f"{len(both)} of {len(truth_scans)} true scans in burden table"
    for suffix, subset in (("", both), ("_ge5ml", both[both["total_volume_ml_true"] >= 5.0])):
        if subset.empty:
            sc.skip("burden", f"total_volume_median_abs_rel_error{suffix}", f"no scan to compare ({note})")
            sc.skip("burden", f"total_volume_p90_abs_rel_error{suffix}", f"no scan to compare ({note})")
            continue
        err = _abs_rel_error(subset["total_volume_ml"], subset["total_volume_ml_true"])
        label = "true burden >= 5 mL; " if suffix else ""
        sc.add("burden", f"total_volume_median_abs_rel_error{suffix}", float(err.median()), len(err), label + note)
        sc.add("burden", f"total_volume_p90_abs_rel_error{suffix}", float(np.quantile(err, 0.9)), len(err),
               label + note)


def _score_features(truth_patients: pd.DataFrame, results_dir: Path, sc: _Scores) -> None:
    metric = "baseline_volume_median_abs_rel_error"
    feats, reason = _read_table(results_dir / "tables" / "features.parquet", "features")
    if feats is None:
        sc.skip("features", metric, reason)
        return
    both = truth_patients[["patient_id", "baseline_volume_ml"]].merge(
        feats[["patient_id", "baseline_volume_ml"]], on="patient_id", suffixes=("_true", ""))
    both = both[both["baseline_volume_ml"].notna() & (both["baseline_volume_ml_true"] > 0)]
    if both.empty:
        sc.skip("features", metric, "no patient with a measured baseline volume")
        return
    err = _abs_rel_error(both["baseline_volume_ml"], both["baseline_volume_ml_true"])
    sc.add("features", metric, float(err.median()), len(err),
           f"{len(both)} of {len(truth_patients)} patients; truth = total volume at the baseline scan")


def _truth_lesion_table(true_lesions: pd.DataFrame, true_scans: pd.DataFrame) -> pd.DataFrame:
    """The true lesions as a tables/lesions frame (statuses from first appearance vs baseline)."""
    les = true_lesions.merge(true_scans[["scan_id"]], on="scan_id").sort_values(
        ["patient_id", "days", "scan_id", "track_id"], kind="mergesort").reset_index(drop=True)
    day_of_scan = true_scans.set_index("scan_id")["days"]
    base_day = les["patient_id"].map(baseline_scans(true_scans).map(day_of_scan))
    first = les.groupby(["patient_id", "track_id"])["days"].transform("min")
    les["status"] = np.where(les["days"] > first, "persisting",
                             np.where(first <= base_day.fillna(-np.inf), "baseline", "new"))
    les["lesion"] = les.groupby("scan_id").cumcount() + 1
    les["organ"] = les["site"].astype(str)
    les["mean_hu"] = np.nan
    return les


def _score_kinetics(true_lesions: pd.DataFrame, true_scans: pd.DataFrame, true_patients: pd.DataFrame,
                    results_dir: Path, sc: _Scores) -> None:
    """Stein g and d and the % volume change against the truth; RECIST / volumetric responses
    checked for consistency with the same rules run on the true lesions."""
    from tumorburden.kinetics import stein
    from tumorburden.kinetics.burden import compute_burden
    from tumorburden.kinetics.features import compute_features

    feats, reason = _read_table(results_dir / "tables" / "features.parquet", "features")
    for param in ("growth_g", "decay_d"):
        metric = f"{param}_median_abs_rel_error"
        if feats is None:
            sc.skip("kinetics", metric, reason)
            continue
        both = true_patients[["patient_id", param]].merge(feats[["patient_id", param, "stein_model"]],
                                                          on="patient_id", suffixes=("_true", ""))
        fitted = both[both[param].notna() & (both[f"{param}_true"] > 0)]
        if fitted.empty:
            sc.skip("kinetics", metric, f"no patient with a fitted {param} ({len(both)} patients)")
            continue
        err = _abs_rel_error(fitted[param], fitted[f"{param}_true"])
        models = ", ".join(f"{k} {v}" for k, v in fitted["stein_model"].value_counts().sort_index().items())
        sc.add("kinetics", metric, float(err.median()), len(err),
               f"{len(fitted)} of {len(true_patients)} patients with {param} fitted (models: {models}); "
               f"p90 {float(np.quantile(err, 0.9)):.3g}")
    # the same fits on the true burden: what the data allow, whatever the segmentation
    truth_burden = true_scans.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")
    base = baseline_scans(true_scans)
    errs = {"growth_g": [], "decay_d": []}
    for pid, rows in truth_burden.groupby("patient_id", sort=True):
        if pid in base.index:  # from the baseline scan on
            rows = rows.iloc[int(np.flatnonzero(rows["scan_id"].to_numpy() == base[pid])[0]):]
        if len(rows) < 3 or rows["total_volume_ml"].iloc[0] <= 0:
            continue
        choice = stein.choose_model(rows["days"].to_numpy(float) - float(rows["days"].iloc[0]),
                                    rows["total_volume_ml"].to_numpy(float))
        truth = true_patients.set_index("patient_id").loc[pid]
        for param, value in (("growth_g", choice.g), ("decay_d", choice.d)):
            if np.isfinite(value) and truth[param] > 0:
                errs[param].append(abs(value - truth[param]) / truth[param])
    for param, e in errs.items():
        metric = f"{param}_median_abs_rel_error_true_volumes"
        if e:
            sc.add("kinetics", metric, float(np.median(e)), len(e),
                   "the same model choice on the true total volumes (the floor set by the schedule and model)")
        else:
            sc.skip("kinetics", metric, f"no patient with a fitted {param} on the true volumes")

    burden, reason = _read_table(results_dir / "tables" / "burden.parquet", "burden")
    _score_volume_change(true_scans, burden, reason, sc)
    names = ("recist_response_consistency", "volumetric_response_consistency", "recist_bor_consistency",
             "volumetric_bor_consistency")
    if burden is None or feats is None:
        for m in names:
            sc.skip("kinetics", m, reason or "features table missing")
        return
    # Consistency checks, not scores against a truth: the simulator knows volumes, diameters and
    # appearances but no response category, so the reference here is the pipeline's own response
    # rules run on the true lesions. They show what measurement and tracking change; whether the
    # rules are RECIST 1.1 is checked on hand-worked cases (tests/kinetics/test_recist.py).
    scans = true_scans[["patient_id", "scan_id", "days"]]
    lesions = _truth_lesion_table(true_lesions, true_scans)
    true_burden = compute_burden(lesions, tables.empty("scan_tissue"), scans)
    clinical = true_patients[["patient_id", "cohort"]]
    true_feats, _ = compute_features(true_burden, lesions, clinical)
    both = true_burden.merge(burden, on="scan_id", suffixes=("_true", ""))
    both = both[~both["recist_response_true"].isin(["pre-baseline", "baseline"])]
    for col, metric in (("recist_response", names[0]), ("volumetric_response", names[1])):
        if both.empty:
            sc.skip("kinetics", metric, "no follow-up scan")
            continue
        agree = (both[col] == both[f"{col}_true"]).mean()
        sc.add("kinetics", metric, float(agree), len(both),
               "consistency check: follow-up scans whose response equals the same rules run on the true lesions")
    pat = true_feats.merge(feats, on="patient_id", suffixes=("_true", ""))
    for col, metric in (("recist_bor", names[2]), ("volumetric_response", names[3])):
        if pat.empty:
            sc.skip("kinetics", metric, "no patient in both feature tables")
            continue
        table = pd.crosstab(pat[f"{col}_true"], pat[col])
        cells = "; ".join(f"{t}->{m}: {table.loc[t, m]}" for t in table.index for m in table.columns
                          if t != m and table.loc[t, m])
        sc.add("kinetics", metric, float((pat[col] == pat[f"{col}_true"]).mean()), len(pat),
               "consistency check: patients whose best overall response equals the same rules run on the "
               "true lesions" + (f"; disagreements (rules on true -> on measured) {cells}" if cells else ""))


def _score_volume_change(true_scans: pd.DataFrame, burden: pd.DataFrame | None, reason: str | None,
                         sc: _Scores) -> None:
    """% change of total volume vs baseline at follow-up scans against the simulator's own
    volumes (what volumetric response is decided on), in percentage points."""
    metric = "pct_change_volume_median_abs_error"
    if burden is None:
        sc.skip("kinetics", metric, reason)
        return
    base = baseline_scans(true_scans)
    volume = true_scans.set_index("scan_id")["total_volume_ml"]
    truth = true_scans[true_scans["patient_id"].isin(base.index)].copy()
    truth["baseline_ml"] = truth["patient_id"].map(base).map(volume)
    truth["baseline_day"] = truth["patient_id"].map(base).map(true_scans.set_index("scan_id")["days"])
    truth = truth[(truth["days"] > truth["baseline_day"]) & (truth["baseline_ml"] > 0)]
    truth["pct_true"] = 100.0 * (truth["total_volume_ml"] / truth["baseline_ml"] - 1.0)
    both = truth.merge(burden[["scan_id", "pct_change_volume"]], on="scan_id")
    both = both[both["pct_change_volume"].notna()]
    if both.empty:
        sc.skip("kinetics", metric, "no follow-up scan with a true and a measured % change")
        return
    err = (both["pct_change_volume"] - both["pct_true"]).abs()
    sc.add("kinetics", metric, float(err.median()), len(err),
           f"follow-up scans after a baseline with true volume > 0; percentage points; p90 {float(np.quantile(err, 0.9)):.3g}")


def _score_survival(model: dict | None, results_dir: Path, sc: _Scores) -> None:
    if model is None:
        sc.skip("survival", "hr_log_volume", "truth model.json not found")
        return
    cox, reason = _read_table(results_dir / "survival" / "cox.csv", "cox")
    if cox is None:
        sc.skip("survival", "hr_log_volume", reason)
        return
    term = cox["term"].astype(str).str.lower()
    if model.get("survival_model") == "visits":
        # the truth is the death hazard's association with the *current* burden: only the OS models
        # with the burden as a time-varying covariate estimate it
        rows = cox[term.str.contains("log") & term.str.contains("current") & term.str.contains("burden")
                   & (cox["endpoint"] == "os")]
        hr_ln = float(model["hazard_ratios"]["death_per_log_current_volume"])
        if rows.empty:
            sc.skip("survival", "hr_log_volume", "cox.csv has no OS row with a log current burden term "
                    "(the visits model's truth is the death hazard's association with the current burden)")
            return
    else:
        rows = cox[term.str.contains("log") & term.str.contains("volume")]
        hr_ln = float(model["hazard_ratios"]["per_log_volume"])
        if rows.empty:
            sc.skip("survival", "hr_log_volume", "cox.csv has no term with 'log' and 'volume'")
            return
    for r in rows.itertuples(index=False):
        t = str(r.term).lower()
        # the truth is per unit of ln(volume); a log2 / log10 term is per ln(2) / ln(10) of that
        unit = math.log(10.0) if "log10" in t else math.log(2.0) if "log2" in t else 1.0
        true_hr = hr_ln**unit
        where = f"cohort={r.cohort}; endpoint={r.endpoint}; model={r.model}; term={r.term}; true HR {true_hr:.4g}"
        if r.status not in (None, "ok") and not pd.notna(r.hr):
            sc.skip("survival", "hr_log_volume", f"{where}; status {r.status}")
            continue
        n = int(r.n) if pd.notna(r.n) else 0
        sc.add("survival", "hr_log_volume", r.hr, n, f"{where}; estimate")
        if pd.notna(r.hr_lower) and pd.notna(r.hr_upper):
            sc.add("survival", "hr_log_volume_ci_covers", float(r.hr_lower <= true_hr <= r.hr_upper), n,
                   f"{where}; 95% CI {r.hr_lower:.4g}-{r.hr_upper:.4g}")
        else:
            sc.skip("survival", "hr_log_volume_ci_covers", f"{where}; no confidence interval")


def write_scores(truth_dir: Path, results_dir: Path, out: Path) -> pd.DataFrame:
    """Score results/<name>/ against results/<name>/truth/ and write `out` (CSV)."""
    truth_dir, results_dir, out = Path(truth_dir), Path(results_dir), Path(out)
    for name in ("scans.parquet", "lesions.parquet", "patients.parquet"):
        if not (truth_dir / name).exists():
            raise FileNotFoundError(
                f"{truth_dir / name} not found (score needs the truth of a synthetic trial: run synth-trial first)"
            )
    true_scans = pd.read_parquet(truth_dir / "scans.parquet")
    true_lesions = pd.read_parquet(truth_dir / "lesions.parquet")
    true_patients = pd.read_parquet(truth_dir / "patients.parquet")
    model_path = truth_dir / "model.json"
    model = json.loads(model_path.read_text()) if model_path.exists() else None

    sc = _Scores()
    measured, reason = _read_table(results_dir / "tables" / "lesions.parquet", "lesions")
    mapped = _score_images(truth_dir, results_dir, true_scans, true_lesions, measured, sc)
    _score_tracking(mapped, reason, sc)
    _score_burden(true_scans, results_dir, sc)
    _score_features(true_patients, results_dir, sc)
    _score_kinetics(true_lesions, true_scans, true_patients, results_dir, sc)
    _score_survival(model, results_dir, sc)

    scores = sc.frame()
    tables.write(scores, out, "scores")
    log.info("scores: %d metrics -> %s", len(scores), out)
    return scores
