"""Design a synthetic trial: patients, lesions with Stein kinetics, survival with known hazard ratios.

`design_trial` draws everything that defines the trial without rendering a voxel, so the
Snakefile can call it at parse time to learn the scans. `write_trial` writes the study
tables a real trial would have (clinical.tsv, scans.tsv) and the truth they were drawn from.

Every draw comes from a per-patient generator, `SeedSequence(seed, spawn_key=(i,))`, so
patient i is the same patient whatever `n_patients` is, and the same seed gives the same
trial bit for bit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden.synth import phantom

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "size": "demo",
    "seed": 20261122,
    "n_patients": None,
    "matrix": None,
    "pixel_mm": None,
    "slice_mm": None,
    "cohorts": {"lung": 0.5, "melanoma": 0.5},
    "noise_hu": 12.0,
    "blur_mm": 1.2,
    "visit_interval_days": [42, 63],
    "max_followups": 10,
    "accrual_days": 365,
    "study_days": 1100,
    "dropout_per_year": 0.05,
    "kinetics": {
        "responder_fraction": {"lung": 0.35, "melanoma": 0.45},
        "responder": {"g": [0.0008, 0.5], "d": [0.012, 0.4]},
        "non_responder": {"g": [0.004, 0.5], "d": [0.002, 0.6]},
    },
    "survival_model": {
        "hr_per_log_volume": 1.5,
        "hr_per_growth": 1.3,
        "reference_volume_ml": 30.0,
        "reference_growth": 0.002,
        "weibull_shape": 1.2,
        "median_progression_days": {"lung": 220, "melanoma": 300},
        "median_death_days": {"lung": 600, "melanoma": 900},
    },
}

SIZES = {
    "demo": {"n_patients": 24, "matrix": 128, "pixel_mm": 3.0, "slice_mm": 3.0},
    "impact": {"n_patients": 600, "matrix": 512, "pixel_mm": 0.78, "slice_mm": 1.5},
}

# Where metastases go, per cohort (share of lesions per site); other cohort names get OTHER_SITES.
SITE_MIX = {
    "lung": {"lung": 0.45, "liver": 0.25, "node": 0.30},
    "melanoma": {"soft_tissue": 0.30, "node": 0.30, "lung": 0.25, "liver": 0.15},
}
OTHER_SITES = {"lung": 0.3, "liver": 0.3, "node": 0.3, "soft_tissue": 0.1}

MAX_SEMI_AXIS_MM = 45.0  # lesions stop growing at this semi-axis so they fit in the body
MIN_LESION_ML = 0.2
GROWTH_UNIT = 0.001  # hr_per_growth is per this much of g (1/day)
STUDY_START = dt.date(2020, 1, 6)  # calendar day 0 of accrual, for synthetic DICOM dates
PLACEMENT_CANDIDATES = 48
PLACEMENT_GAP_MM = 2.0


def resolve_settings(settings: dict | None) -> dict:
    """Defaults, then the size preset for keys left null, then explicit keys."""
    s = {**DEFAULTS, **(settings or {})}
    for key in ("kinetics", "survival_model"):  # partial overrides keep the other defaults
        s[key] = {**DEFAULTS[key], **(s.get(key) or {})}
    if s["size"] not in SIZES:
        raise ValueError(f"synthetic.size {s['size']!r} is unknown (use one of {', '.join(SIZES)})")
    for key, value in SIZES[s["size"]].items():
        if s.get(key) is None:
            s[key] = value
    s["n_patients"] = int(s["n_patients"])
    s["matrix"] = int(s["matrix"])
    if s["n_patients"] < 1 or s["n_patients"] > 9999:
        raise ValueError(f"synthetic.n_patients {s['n_patients']} is out of range (use 1 to 9999)")
    cohorts = s["cohorts"] or {}
    if not cohorts or any(float(v) < 0 for v in cohorts.values()) or sum(map(float, cohorts.values())) <= 0:
        raise ValueError("synthetic.cohorts must map cohort names to non-negative shares with a positive sum")
    for key, table in (
        ("kinetics.responder_fraction", s["kinetics"]["responder_fraction"]),
        ("survival_model.median_progression_days", s["survival_model"]["median_progression_days"]),
        ("survival_model.median_death_days", s["survival_model"]["median_death_days"]),
    ):
        missing = [c for c in cohorts if c not in table]
        if missing:
            raise ValueError(f"synthetic.{key} has no value for cohort(s) {', '.join(missing)} (add them)")
    lo, hi = s["visit_interval_days"]
    if not 0 < lo <= hi:
        raise ValueError(
            f"synthetic.visit_interval_days {s['visit_interval_days']} must be [low, high] with 0 < low <= high"
        )
    return s


def grid_of(s: dict) -> dict:
    """The voxel grid every scan of the trial is rendered on (DICOM LPS geometry)."""
    n, p, dz = s["matrix"], float(s["pixel_mm"]), float(s["slice_mm"])
    n_slices = max(1, int(round(phantom.SCAN_LENGTH_MM / dz)))
    # rounded so the DICOM decimal strings and the NIfTI affine hold the very same numbers
    x0 = round(-(n - 1) / 2.0 * p, 4)
    return {
        "matrix": n,
        "pixel_mm": p,
        "slice_mm": dz,
        "n_slices": n_slices,
        # centre of voxel (0, 0, 0), LPS mm = ImagePositionPatient of the first slice
        "origin_lps_mm": [x0, x0, round(phantom.Z_OF_U0_MM + dz / 2.0, 4)],
    }


def stein_volume(v0, g, d, t):
    """Stein model V(t) = V0 (exp(-d t) + exp(g t) - 1) for t >= 0 (treatment start at 0).

    Before treatment (t < 0, the baseline scan) the tumour only grows: V0 exp(g t).
    """
    t = np.asarray(t, dtype=float)
    treated = v0 * (np.exp(-d * np.maximum(t, 0.0)) + np.exp(g * np.maximum(t, 0.0)) - 1.0)
    return np.where(t >= 0, treated, v0 * np.exp(g * np.minimum(t, 0.0)))


def semi_axes(volume_ml, ratios):
    """Semi-axes (mm) of an ellipsoid of `volume_ml` with axes proportional to `ratios` (..., 3)."""
    volume_ml = np.asarray(volume_ml, dtype=float)[..., None]
    ratios = np.asarray(ratios, dtype=float)
    r = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi * ratios.prod(axis=-1, keepdims=True))) ** (1.0 / 3.0)
    return r * ratios


def volume_cap_ml(ratios):
    """Largest volume whose longest semi-axis is MAX_SEMI_AXIS_MM."""
    ratios = np.asarray(ratios, dtype=float)
    r = MAX_SEMI_AXIS_MM / ratios.max(axis=-1)
    return 4.0 / 3.0 * math.pi * r**3 * ratios.prod(axis=-1) / 1000.0


@dataclass
class Trial:
    clinical: pd.DataFrame  # one row per patient: the clinical.tsv a study would have
    scans: pd.DataFrame  # one row per scan: patient_id, scan_id, days, image
    patients: pd.DataFrame  # truth per patient: kinetics, survival times, body geometry
    lesions: pd.DataFrame  # truth per lesion x scan: volumes, diameters, centres, semi-axes
    model: dict  # the generative model: hazard ratios, Weibull scales, censoring, grid, seed

    def truth_scans(self) -> pd.DataFrame:
        """True burden per scan (every scan, including ones without lesions)."""
        les = self.lesions
        agg = les.groupby("scan_id", sort=False).agg(
            total_volume_ml=("volume_ml", "sum"),
            n_lesions=("track_id", "size"),
            n_new_lesions=("new", "sum"),
        )
        out = self.scans[["patient_id", "scan_id", "days"]].merge(
            agg, left_on="scan_id", right_index=True, how="left"
        )
        out["total_volume_ml"] = out["total_volume_ml"].fillna(0.0)
        out["n_lesions"] = out["n_lesions"].fillna(0).astype("int64")
        out["n_new_lesions"] = out["n_new_lesions"].fillna(0).astype("int64")
        return out.reset_index(drop=True)

    def scan(self, scan_id: str) -> pd.Series:
        row = self.scans[self.scans["scan_id"] == scan_id]
        if row.empty:
            raise ValueError(
                f"scan {scan_id!r} is not in the synthetic trial (check the scan id against synthetic/scans.tsv "
                "and that the synthetic settings are the ones the trial was written with)"
            )
        return row.iloc[0]


def _allocate_cohorts(cohorts: dict, n: int) -> list[str]:
    """Exact shares, prefix-stable: patient i's cohort does not depend on n_patients."""
    names = list(cohorts)
    shares = np.array([float(cohorts[c]) for c in names])
    shares = shares / shares.sum()
    counts = np.zeros(len(names))
    out = []
    for i in range(n):
        k = int(np.argmax(shares * (i + 1) - counts))
        counts[k] += 1
        out.append(names[k])
    return out


def _lognormal(rng, median_sdlog):
    median, sdlog = median_sdlog
    return float(median * math.exp(sdlog * rng.standard_normal()))


def _draw_sites(rng, cohort, n):
    mix = SITE_MIX.get(cohort, OTHER_SITES)
    names = list(mix)
    p = np.array([mix[k] for k in names], dtype=float)
    return [names[k] for k in rng.choice(len(names), size=n, p=p / p.sum())]


# Unit directions on which containment in the host organ is checked: 6 axes + 8 diagonals.
_PROBES = np.vstack([
    np.eye(3), -np.eye(3),
    np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) / math.sqrt(3.0),
])


def _place_lesions(rng, body, sites, semi_max, pid):
    """Centres (x, y, u) for lesions of given max semi-axes, inside their host, not overlapping.

    Rejection sampling, largest first: candidates whose centre and 14 surface probes lie in the
    host tissue and whose bounding sphere clears every placed lesion. If a lesion finds no such
    place (a large lesion in a small organ), containment is relaxed to the centre only.
    """
    n = len(sites)
    radius = semi_max.max(axis=1)
    centres = np.full((n, 3), np.nan)
    order = np.argsort(-radius, kind="stable")
    placed: list[int] = []
    pending = list(order)
    k = PLACEMENT_CANDIDATES
    for attempt in range(6):
        if not pending:
            break
        cand = np.empty((len(pending), k, 3))
        for row, j in enumerate(pending):
            (x0, x1), (y0, y1), (u0, u1) = phantom.site_box(sites[j], body)
            lo_u = max(u0, radius[j] + 2.0)
            hi_u = min(u1, phantom.SCAN_LENGTH_MM - radius[j] - 2.0)
            if lo_u > hi_u:
                lo_u, hi_u = u0, u1
            cand[row] = rng.uniform([x0, y0, lo_u], [x1, y1, hi_u], size=(k, 3))
        # centre + probes at 1.05 x the max semi-axes, for every candidate of every pending lesion
        probes = cand[:, :, None, :] + 1.05 * _PROBES[None, None] * semi_max[pending][:, None, None, :]
        pts = np.concatenate([cand[:, :, None, :], probes], axis=2)
        tissue = phantom.tissue_at(pts[..., 0], pts[..., 1], pts[..., 2], body)
        host = np.array([phantom.SITE_HOST[sites[j]] for j in pending])[:, None, None]
        inside = tissue == host
        strict = inside.all(axis=2) if attempt < 4 else inside[:, :, 0]
        still = []
        for row, j in enumerate(pending):
            ok = strict[row]
            if placed:
                pc = centres[placed]
                dist = np.linalg.norm(cand[row][:, None, :] - pc[None], axis=2)
                ok = ok & (dist > radius[j] + radius[placed][None] + PLACEMENT_GAP_MM).all(axis=1)
            hit = np.flatnonzero(ok)
            if hit.size:
                centres[j] = cand[row, hit[0]]
                placed.append(j)
            elif attempt == 5:
                centre_ok = np.flatnonzero(inside[row, :, 0])
                centres[j] = cand[row, centre_ok[0] if centre_ok.size else 0]
                log.warning("patient %s: lesion %d (%s) placed without room; it may touch another lesion",
                            pid, j + 1, sites[j])
                placed.append(j)
            else:
                still.append(j)
        pending = still
    return centres


def _design_patient(i: int, cohort: str, s: dict) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence(int(s["seed"]), spawn_key=(i,)))
    pid = f"SYN-{i + 1:03d}"
    kin, sm = s["kinetics"], s["survival_model"]

    # covariates, drawn independently of everything that drives survival
    age = int(np.clip(round(63 + 10 * rng.standard_normal()), 25, 90))
    sex = "M" if rng.random() < 0.55 else "F"
    ecog = int(rng.choice(3, p=[0.45, 0.45, 0.10]))
    body = phantom.draw_body(rng)

    responder = bool(rng.random() < float(kin["responder_fraction"][cohort]))
    arm = kin["responder" if responder else "non_responder"]
    g = _lognormal(rng, arm["g"])
    d = _lognormal(rng, arm["d"])

    # baseline lesions: skewed count (median 4, up to 30), log-normal volumes with a patient factor
    n_base = int(min(30, 1 + math.floor(3.0 * math.exp(0.8 * rng.standard_normal()))))
    patient_factor = math.exp(0.7 * rng.standard_normal())
    ratios = rng.uniform(0.7, 1.0, size=(n_base, 3))
    v0 = np.exp(math.log(4.0) + 1.2 * rng.standard_normal(n_base)) * patient_factor
    v0 = np.clip(v0, MIN_LESION_ML, 0.4 * volume_cap_ml(ratios))  # room to grow before the cap
    sites = _draw_sites(rng, cohort, n_base)
    v0_total = float(v0.sum())

    # survival: Weibull PH for progression and death with one linear predictor
    shape = float(sm["weibull_shape"])
    lp = math.log(sm["hr_per_log_volume"]) * (math.log(v0_total) - math.log(sm["reference_volume_ml"])) + math.log(
        sm["hr_per_growth"]
    ) * (g - sm["reference_growth"]) / GROWTH_UNIT
    u_prog, u_death = 1.0 - rng.random(2)  # in (0, 1]
    t_prog = _weibull_time(u_prog, float(sm["median_progression_days"][cohort]), shape, lp)
    t_death = _weibull_time(u_death, float(sm["median_death_days"][cohort]), shape, lp)
    accrual = float(rng.uniform(0.0, float(s["accrual_days"])))
    dropout_rate = float(s["dropout_per_year"]) / 365.25
    dropout = float(rng.exponential(1.0 / dropout_rate)) if dropout_rate > 0 else math.inf
    censor = min(float(s["study_days"]) - accrual, dropout)
    censor = max(censor, 0.0)

    # visit schedule: baseline before day 0, follow-ups while alive and on study, stop after PD scan
    days = [-int(rng.integers(0, 15))]
    lo, hi = (int(v) for v in s["visit_interval_days"])
    followup_end = min(t_death, censor)
    for _ in range(int(s["max_followups"])):
        nxt = days[-1] + int(rng.integers(lo, hi + 1))
        if nxt > followup_end:
            break
        days.append(nxt)
        if nxt >= t_prog:
            break
    days_arr = np.array(days, dtype=float)

    # new lesions at progression, if progression is seen before death or censoring
    progressed = t_prog < followup_end
    n_new = int(rng.integers(1, 4)) if progressed else 0
    new_ratios = rng.uniform(0.7, 1.0, size=(n_new, 3))
    v_new = rng.uniform(0.2, 1.5, size=n_new)
    new_sites = _draw_sites(rng, cohort, n_new)

    # volume of every lesion at every scan (NaN = not there yet)
    cap = volume_cap_ml(np.vstack([ratios, new_ratios]))
    vol = np.full((len(days_arr), n_base + n_new), np.nan)
    vol[:, :n_base] = stein_volume(v0[None, :], g, d, days_arr[:, None])
    if n_new:
        after = days_arr >= t_prog
        grown = v_new[None, :] * np.exp(g * (days_arr[:, None] - t_prog))
        vol[:, n_base:] = np.where(after[:, None], grown, np.nan)
    vol = np.minimum(vol, cap[None, :])

    all_ratios = np.vstack([ratios, new_ratios])
    all_sites = sites + new_sites
    # placement needs each lesion's largest size over the scans it appears on
    never_seen = np.isnan(vol).all(axis=0)
    vmax = np.where(never_seen, np.concatenate([v0, v_new]), np.nan_to_num(vol, nan=0.0).max(axis=0))
    centres = _place_lesions(rng, body, all_sites, semi_axes(vmax, all_ratios), pid)

    return {
        "pid": pid, "cohort": cohort, "age": age, "sex": sex, "ecog": ecog, "body": body,
        "responder": responder, "g": g, "d": d, "n_base": n_base, "v0_total": v0_total, "lp": lp,
        "t_prog": t_prog, "t_death": t_death, "censor": censor, "accrual": accrual,
        "days": days_arr, "vol": vol, "ratios": all_ratios, "sites": all_sites, "centres": centres,
        "progressed": progressed, "n_new": n_new,
    }


def _line_of_therapy(i: int, s: dict) -> int:
    """Line of therapy (1, 2, 3 = third or later), independent of survival. Its own stream
    (spawn_key (i, 1)) so that adding it changed none of the patient's other draws."""
    rng = np.random.default_rng(np.random.SeedSequence(int(s["seed"]), spawn_key=(i, 1)))
    return int(rng.choice(3, p=[0.6, 0.3, 0.1])) + 1


def _weibull_scale(median: float, shape: float) -> float:
    """Scale so that the median is `median` at lp = 0: S(t) = exp(-(t/scale)^shape)."""
    return median / math.log(2.0) ** (1.0 / shape)


def _weibull_time(u: float, median: float, shape: float, lp: float) -> float:
    """Inverse of S(t | lp) = exp(-(t/scale)^shape * exp(lp)) at S = u."""
    return _weibull_scale(median, shape) * (-math.log(u) * math.exp(-lp)) ** (1.0 / shape)


def truth_scan_dirs(truth_dir: Path) -> dict[str, Path]:
    """scan_id -> truth/scans/<patient_id>/<scan_id>/ (labels.nii.gz, lesions.nii.gz) of every rendered scan."""
    return {p.name: p for p in sorted(Path(truth_dir, "scans").glob("*/*")) if p.is_dir()}


def design_trial(settings: dict | None) -> Trial:
    """Draw the whole trial (no images): fast enough for Snakemake parse time."""
    s = resolve_settings(settings)
    grid = grid_of(s)
    cohorts = _allocate_cohorts(s["cohorts"], s["n_patients"])
    pats = [_design_patient(i, c, s) for i, c in enumerate(cohorts)]

    clinical_rows, scan_rows, patient_rows, lesion_parts = [], [], [], []
    for i, p in enumerate(pats):
        pid = p["pid"]
        stop = min(p["t_death"], p["censor"])
        pfs_event = min(p["t_prog"], p["t_death"]) <= p["censor"]
        clinical_rows.append({
            "patient_id": pid, "cohort": p["cohort"],
            "pfs_days": round(min(p["t_prog"], stop), 2), "pfs_event": int(pfs_event),
            "os_days": round(stop, 2), "os_event": int(p["t_death"] <= p["censor"]),
            "age": p["age"], "sex": p["sex"], "ecog": p["ecog"],
            "line_of_therapy": _line_of_therapy(i, s),
        })
        scan_ids = [f"{pid}-S{k}" for k in range(len(p["days"]))]
        for sid, day in zip(scan_ids, p["days"]):
            scan_rows.append({"patient_id": pid, "scan_id": sid, "days": float(day), "image": f"dicom/{pid}/{sid}"})

        vol = p["vol"]
        scan_idx, lesion_idx = np.nonzero(~np.isnan(vol))
        v = vol[scan_idx, lesion_idx]
        semi = semi_axes(v, p["ratios"][lesion_idx])
        c = p["centres"][lesion_idx]
        lesion_parts.append(pd.DataFrame({
            "patient_id": pid,
            "scan_id": np.array(scan_ids, dtype=object)[scan_idx],
            "days": p["days"][scan_idx],
            "track_id": (lesion_idx + 1).astype("int64"),
            "site": np.array(p["sites"], dtype=object)[lesion_idx],
            "volume_ml": v,
            "longest_diameter_mm": 2.0 * semi[:, :2].max(axis=1),
            "short_axis_mm": 2.0 * semi[:, :2].min(axis=1),
            # RAS = LPS with x and y negated
            "centroid_x_mm": -c[:, 0],
            "centroid_y_mm": -c[:, 1],
            "centroid_z_mm": c[:, 2] + phantom.Z_OF_U0_MM,
            "new": lesion_idx >= p["n_base"],
            "semi_x_mm": semi[:, 0], "semi_y_mm": semi[:, 1], "semi_z_mm": semi[:, 2],
        }))
        baseline_volume = float(np.nansum(vol[0, : p["n_base"]]))
        day0 = STUDY_START + dt.timedelta(days=int(p["accrual"]))
        b = p["body"]
        patient_rows.append({
            "patient_id": pid, "cohort": p["cohort"], "growth_g": p["g"], "decay_d": p["d"],
            "responder": p["responder"], "baseline_volume_ml": baseline_volume,
            "v0_total_ml": p["v0_total"], "n_lesions_baseline": p["n_base"], "lp": p["lp"],
            "t_progression_days": p["t_prog"], "t_death_days": p["t_death"], "censor_days": p["censor"],
            "accrual_days": p["accrual"], "day0_date": day0.isoformat(),
            "progression_observed": bool(p["progressed"]), "n_new_lesions": p["n_new"],
            "body_a_mm": b.a, "body_b_mm": b.b, "sat_mm": b.sat, "muscle_mm": b.muscle,
        })

    lesions = pd.concat(lesion_parts, ignore_index=True)
    lesions["new"] = lesions["new"].astype(bool)
    trial = Trial(
        clinical=pd.DataFrame(clinical_rows),
        scans=pd.DataFrame(scan_rows),
        patients=pd.DataFrame(patient_rows),
        lesions=lesions,
        model=_model_description(s, grid),
    )
    return trial


def _model_description(s: dict, grid: dict) -> dict:
    sm = s["survival_model"]
    shape = float(sm["weibull_shape"])
    cohorts = list(s["cohorts"])
    scale_p = {c: _weibull_scale(float(sm["median_progression_days"][c]), shape) for c in cohorts}
    scale_d = {c: _weibull_scale(float(sm["median_death_days"][c]), shape) for c in cohorts}
    # PFS = min(T_prog, T_death): Weibull hazards with one shape add, so PFS is Weibull PH too
    scale_pfs = {c: (scale_p[c] ** -shape + scale_d[c] ** -shape) ** (-1.0 / shape) for c in cohorts}
    return {
        "seed": int(s["seed"]),
        "size": s["size"],
        "n_patients": s["n_patients"],
        "cohorts": {c: float(v) for c, v in s["cohorts"].items()},
        "linear_predictor": "ln(hr_per_log_volume) * (ln v0_total_ml - ln reference_volume_ml)"
        " + ln(hr_per_growth) * (growth_g - reference_growth) / 0.001",
        "hazard_ratios": {
            "per_log_volume": float(sm["hr_per_log_volume"]),
            "per_growth_0.001_per_day": float(sm["hr_per_growth"]),
        },
        "coefficients": {
            "log_volume": math.log(sm["hr_per_log_volume"]),
            "growth_per_0.001_per_day": math.log(sm["hr_per_growth"]),
        },
        "reference": {"volume_ml": float(sm["reference_volume_ml"]), "growth_per_day": float(sm["reference_growth"])},
        "baseline_hazard": {
            "family": "weibull, S(t | lp) = exp(-(t / scale)^shape * exp(lp))",
            "shape": shape,
            "scale_progression_days": scale_p,
            "scale_death_days": scale_d,
            "scale_pfs_days": scale_pfs,
            "median_progression_days": {c: float(sm["median_progression_days"][c]) for c in cohorts},
            "median_death_days": {c: float(sm["median_death_days"][c]) for c in cohorts},
        },
        "endpoints": {"pfs": "min(t_progression, t_death), censored", "os": "t_death, censored"},
        "censoring": {
            "accrual_days": float(s["accrual_days"]),
            "study_days": float(s["study_days"]),
            "dropout_per_year": float(s["dropout_per_year"]),
            "rule": "min(study_days - accrual (uniform in [0, accrual_days]), exponential dropout)",
        },
        "kinetics": s["kinetics"],
        "lesion_model": "stein: V0 (exp(-d t) + exp(g t) - 1) for t >= 0, V0 exp(g t) before; "
        f"new lesions V exp(g (t - t_progression)); semi-axes capped at {MAX_SEMI_AXIS_MM} mm",
        "image": {"noise_hu": float(s["noise_hu"]), "blur_mm": float(s["blur_mm"])},
        "grid": grid,
    }


def write_trial(settings: dict | None, out_dir: Path) -> Trial:
    """Write synthetic/{clinical,scans}.tsv and truth/{patients,lesions,scans}.parquet + model.json."""
    out_dir = Path(out_dir)
    trial = design_trial(settings)
    syn, truth = out_dir / "synthetic", out_dir / "truth"
    syn.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    trial.clinical.to_csv(syn / "clinical.tsv", sep="\t", index=False, float_format="%.6g")
    trial.scans.to_csv(syn / "scans.tsv", sep="\t", index=False, float_format="%.6g")
    trial.patients.to_parquet(truth / "patients.parquet", index=False, engine="pyarrow")
    trial.lesions.to_parquet(truth / "lesions.parquet", index=False, engine="pyarrow")
    trial.truth_scans().to_parquet(truth / "scans.parquet", index=False, engine="pyarrow")
    (truth / "model.json").write_text(json.dumps(trial.model, indent=2, sort_keys=True) + "\n")
    log.info("synthetic trial: %d patients, %d scans, %d lesion-timepoints -> %s",
             len(trial.clinical), len(trial.scans), len(trial.lesions), out_dir)
    return trial
