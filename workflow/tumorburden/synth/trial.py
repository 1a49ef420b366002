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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.synth import phantom, visits

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
        "model": "visits",
        # visits: the faithful trial (synth/visits.py); baseline: Weibull times from baseline covariates
        "visit_every_days": 56,
        "visit_window_days": 7,
        "missed_visit_probability": 0.1,
        "new_lesion_median_days": {"lung": 450, "melanoma": 540},
        "death_hr_per_log_burden": 1.6,
        "death_hr_per_slope": 1.0,
        "hr_per_log_volume": 1.5,
        "hr_per_growth": 1.3,
        "reference_volume_ml": 30.0,
        "reference_growth": 0.002,
        "weibull_shape": 1.2,
        "median_progression_days": {"lung": 220, "melanoma": 300},
        "median_death_days": {"lung": 600, "melanoma": 900},
    },
}

SURVIVAL_MODELS = ("visits", "baseline")

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
    sm = s["survival_model"]
    if sm["model"] not in SURVIVAL_MODELS:
        raise ValueError(f"synthetic.survival_model.model {sm['model']!r} is unknown "
                         f"(use one of {', '.join(SURVIVAL_MODELS)})")
    if not 0.0 <= float(sm["missed_visit_probability"]) < 1.0:
        raise ValueError(f"synthetic.survival_model.missed_visit_probability {sm['missed_visit_probability']} "
                         "must be in [0, 1)")
    if not 0 <= 2 * int(sm["visit_window_days"]) < float(sm["visit_every_days"]):
        raise ValueError(f"synthetic.survival_model.visit_window_days {sm['visit_window_days']} must be >= 0 and "
                         f"under half of visit_every_days ({sm['visit_every_days']}) so visits keep their order")
    for key, table in (
        ("survival_model.new_lesion_median_days", s["survival_model"]["new_lesion_median_days"]),
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
    # per patient: what its true lesion volumes are made of (v0, g, d, cap, v_new, t_new), for true_volume
    courses: dict = field(default_factory=dict, repr=False)

    def true_volume(self, patient_id: str, t) -> np.ndarray:
        """The patient's true total tumour volume (mL) at any times t (days), new lesions included."""
        c = self.courses[patient_id]
        vol, _ = lesion_volumes(t, c["v0"], c["g"], c["d"], c["cap"], c["v_new"], c["t_new"])
        return np.nansum(vol, axis=1)

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


def _design_patient(i: int, cohort: str, s: dict, place: bool = True) -> dict:
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

    if sm["model"] == "visits":
        c = _visits_course(rng, cohort, s, g, d, v0, ratios, sites)
    else:
        c = _baseline_course(rng, cohort, s, g, d, v0, ratios, v0_total)
    days_arr, vol, new_ratios, n_new = c["days"], c["vol"], c["new_ratios"], c["n_new"]
    new_sites = c["new_sites"] if "new_sites" in c else _draw_sites(rng, cohort, n_new)
    v_new = c["v_new"]

    all_ratios = np.vstack([ratios, new_ratios])
    all_sites = sites + new_sites
    # placement needs each lesion's largest size over the scans it appears on
    never_seen = np.isnan(vol).all(axis=0)
    vmax = np.where(never_seen, np.concatenate([v0, v_new]), np.nan_to_num(vol, nan=0.0).max(axis=0))
    centres = _place_lesions(rng, body, all_sites, semi_axes(vmax, all_ratios), pid) if place \
        else np.full((len(all_sites), 3), np.nan)

    return {
        **c, "pid": pid, "cohort": cohort, "age": age, "sex": sex, "ecog": ecog, "body": body,
        "responder": responder, "g": g, "d": d, "n_base": n_base, "v0_total": v0_total,
        "ratios": all_ratios, "sites": all_sites, "centres": centres,
    }


def lesion_volumes(t, v0, g, d, cap, v_new=(), t_new=math.inf) -> tuple[np.ndarray, np.ndarray]:
    """(volume, d volume / dt) of every lesion at times t (rows): the baseline lesions' Stein
    curves and the new lesions' growth exp(g (t - t_new)) from their onset, each capped as
    rendered (a capped lesion does not grow). NaN volume = the new lesion is not there yet."""
    t = np.asarray(t, float)[:, None]
    v0, v_new = np.asarray(v0, float), np.asarray(v_new, float)
    tt = np.maximum(t, 0.0)
    base = np.where(t >= 0, v0 * (np.exp(-d * tt) + np.exp(g * tt) - 1.0), v0 * np.exp(g * np.minimum(t, 0.0)))
    base_rate = np.where(t >= 0, v0 * (-d * np.exp(-d * tt) + g * np.exp(g * tt)), g * base)
    new = v_new * np.exp(g * (t - t_new))
    vol = np.concatenate([base, np.where(t >= t_new, new, np.nan)], axis=1)
    rate = np.concatenate([base_rate, np.where(t >= t_new, g * new, 0.0)], axis=1)
    capped = vol >= cap
    return np.where(capped, cap, vol), np.where(capped, 0.0, rate)


def _visits_course(rng, cohort, s, g, d, v0, ratios, sites) -> dict:
    """The faithful trial (synth/visits.py): scheduled visits with windows and missed visits,
    progression = the first attended visit whose true lesions show RECIST PD or a new lesion, death
    drawn from a hazard on the current true burden and its slope."""
    sm = s["survival_model"]
    n_base = len(v0)
    shape = float(sm["weibull_shape"])
    u_death, u_new = 1.0 - rng.random(2)  # in (0, 1]
    accrual = float(rng.uniform(0.0, float(s["accrual_days"])))
    dropout_rate = float(s["dropout_per_year"]) / 365.25
    dropout = float(rng.exponential(1.0 / dropout_rate)) if dropout_rate > 0 else math.inf
    censor = max(min(float(s["study_days"]) - accrual, dropout), 0.0)
    baseline_day = -int(rng.integers(0, 15))
    n_sched = int(s["max_followups"])
    sched_days, attended = visits.schedule(rng, float(sm["visit_every_days"]), int(sm["visit_window_days"]),
                                           float(sm["missed_visit_probability"]), n_sched)
    n_new = int(rng.integers(1, 4))
    new_ratios = rng.uniform(0.7, 1.0, size=(n_new, 3))
    v_new = rng.uniform(0.2, 1.5, size=n_new)
    new_sites = _draw_sites(rng, cohort, n_new)

    # new lesions appear together at a Weibull time, sooner the faster the disease grows
    lp_new = math.log(sm["hr_per_growth"]) * (g - sm["reference_growth"]) / GROWTH_UNIT
    t_new = _weibull_time(u_new, float(sm["new_lesion_median_days"][cohort]), shape, lp_new)
    cap = volume_cap_ml(np.vstack([ratios, new_ratios]))

    # death: hazard on the current true burden, inverted on a one-day grid up to the study's end
    grid = np.arange(0.0, float(s["study_days"]) + visits.HAZARD_STEP_DAYS, visits.HAZARD_STEP_DAYS)
    vol_g, rate_g = lesion_volumes(grid, v0, g, d, cap, v_new, t_new)
    total = np.maximum(np.nansum(vol_g, axis=1), visits.MIN_BURDEN_ML)
    log_burden, slope = np.log(total), rate_g.sum(axis=1) / total
    alpha, beta = math.log(sm["death_hr_per_log_burden"]), math.log(sm["death_hr_per_slope"])
    scale = _weibull_scale(float(sm["median_death_days"][cohort]), shape)
    log_ref = math.log(sm["reference_volume_ml"])
    t_death = visits.death_time(u_death, grid, log_burden, slope, scale, shape, alpha, beta, log_ref, GROWTH_UNIT)
    lp = alpha * (log_burden[0] - log_ref) + beta * slope[0] / GROWTH_UNIT  # the hazard's at day 0

    # the attended visits while alive and on study; assessment stops at the first progression
    all_ratios = np.vstack([ratios, new_ratios])

    def diameters(days):
        vol, _ = lesion_volumes(days, v0, g, d, cap, v_new, t_new)
        semi = semi_axes(np.nan_to_num(vol, nan=0.0), all_ratios)
        return vol, 2.0 * semi[..., :2].max(axis=-1), 2.0 * semi[..., :2].min(axis=-1)

    _, longest0, short0 = diameters([float(baseline_day)])
    targets = visits.choose_targets(longest0[0, :n_base], short0[0, :n_base], sites)

    def sld_at(days):
        _, longest, short = diameters(days)
        return visits.sum_of_diameters(longest[:, :n_base], short[:, :n_base], sites, targets)

    a = visits.assess(baseline_day, sched_days, attended, min(t_death, censor), sld_at, t_new)
    days_arr, k, cause = a.days, a.visit, a.cause
    vol, _, _ = diameters(days_arr)
    if k is not None:
        pfs_days, pfs_event = float(days_arr[-1]), True
    elif t_death <= censor:
        pfs_days, pfs_event, cause = t_death, True, "death"
    else:  # censored at the last attended assessment (day 0 without one)
        pfs_days, pfs_event, cause = max(float(days_arr[-1]), 0.0), False, "censored"
    course = {"v0": v0, "g": g, "d": d, "cap": cap, "v_new": v_new, "t_new": t_new}
    return {"lp": lp, "t_prog": pfs_days if k is not None else math.nan, "t_death": t_death, "censor": censor,
            "accrual": accrual, "days": days_arr, "vol": vol, "new_ratios": new_ratios, "v_new": v_new,
            "new_sites": new_sites, "n_new": n_new, "progressed": k is not None,
            "progression_day": pfs_days if k is not None else math.nan,
            "progression_visit": k, "progression_cause": cause, "pfs_days": pfs_days, "pfs_event": pfs_event,
            "t_new_lesion": t_new, "missed_visits": a.missed, "course": course}


def _baseline_course(rng, cohort, s, g, d, v0, ratios, v0_total) -> dict:
    """Today's first model: progression and death as Weibull times of the baseline covariates; scans
    until the first one on or after the progression time. (New lesions' sites are drawn after.)"""
    sm = s["survival_model"]
    n_base = len(v0)
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

    # volume of every lesion at every scan (NaN = not there yet)
    cap = volume_cap_ml(np.vstack([ratios, new_ratios]))
    vol = np.full((len(days_arr), n_base + n_new), np.nan)
    vol[:, :n_base] = stein_volume(v0[None, :], g, d, days_arr[:, None])
    if n_new:
        after = days_arr >= t_prog
        grown = v_new[None, :] * np.exp(g * (days_arr[:, None] - t_prog))
        vol[:, n_base:] = np.where(after[:, None], grown, np.nan)
    vol = np.minimum(vol, cap[None, :])

    return {"lp": lp, "t_prog": t_prog, "t_death": t_death, "censor": censor, "accrual": accrual,
            "days": days_arr, "vol": vol, "new_ratios": new_ratios, "v_new": v_new, "n_new": n_new,
            "progressed": progressed,
            "progression_day": float(days_arr[-1]) if progressed else math.nan,
            "progression_visit": len(days_arr) - 1 if progressed else None,
            "progression_cause": "progression" if progressed
            else ("death" if t_death <= censor else "censored"),
            "pfs_days": min(t_prog, followup_end), "pfs_event": min(t_prog, t_death) <= censor,
            "t_new_lesion": t_prog if progressed else math.nan, "missed_visits": 0,
            "course": {"v0": v0, "g": g, "d": d, "cap": cap, "v_new": v_new,
                       "t_new": t_prog if progressed else math.inf}}


def _line_of_therapy(i: int, s: dict) -> int:
    """Line of therapy (1, 2, 3 = third or later), independent of survival. Its own stream
    (spawn_key (i, 1)) so that adding it changed none of the patient's other draws."""
    rng = np.random.default_rng(np.random.SeedSequence(int(s["seed"]), spawn_key=(i, 1)))
    return int(rng.choice(3, p=[0.6, 0.3, 0.1])) + 1


# Adult height by sex, normal: means of US adults (NHANES 2015-2018; Fryar et al., Anthropometric
# reference data for children and adults: United States, 2015-2018, Vital Health Stat 3(46), 2021:
# 175.3 cm men, 161.3 cm women) with SDs of about 7 cm, the spread of adult height within a sex.
HEIGHT_CM = {"M": (175.3, 7.5), "F": (161.3, 7.0)}


def _height_cm(i: int, sex: str, s: dict) -> float:
    """Height in cm by sex, independent of survival and of the body drawn for the phantom. Its own
    stream (spawn_key (i, 2)) so that adding it changed none of the patient's other draws."""
    rng = np.random.default_rng(np.random.SeedSequence(int(s["seed"]), spawn_key=(i, 2)))
    mean, sd = HEIGHT_CM[sex]
    return round(float(np.clip(mean + sd * rng.standard_normal(), 140.0, 210.0)), 1)


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
    return _trial(settings, place=True)


def simulate_trial(settings: dict | None) -> Trial:
    """The trial at table level: the same patients, visits, true lesion volumes and diameters, PFS
    and OS as `design_trial`, without placing the lesions in a body (centroids NaN) and so without
    anything to render. For simulation studies (joint-model recovery, study design)."""
    return _trial(settings, place=False)


def _trial(settings: dict | None, place: bool) -> Trial:
    s = resolve_settings(settings)
    grid = grid_of(s)
    cohorts = _allocate_cohorts(s["cohorts"], s["n_patients"])
    pats = [_design_patient(i, c, s, place) for i, c in enumerate(cohorts)]

    clinical_rows, scan_rows, patient_rows, lesion_parts = [], [], [], []
    for i, p in enumerate(pats):
        pid = p["pid"]
        stop = min(p["t_death"], p["censor"])
        clinical_rows.append({
            "patient_id": pid, "cohort": p["cohort"],
            "pfs_days": round(p["pfs_days"], 2), "pfs_event": int(p["pfs_event"]),
            "os_days": round(stop, 2), "os_event": int(p["t_death"] <= p["censor"]),
            "age": p["age"], "sex": p["sex"], "ecog": p["ecog"],
            "line_of_therapy": _line_of_therapy(i, s),
            "height_cm": _height_cm(i, p["sex"], s),
        })
        scan_ids = [f"{pid}-S{k}" for k in range(len(p["days"]))]
        for sid, day in zip(scan_ids, p["days"]):
            scan_rows.append({"patient_id": pid, "scan_id": sid, "days": float(day), "image": f"dicom/{pid}/{sid}"})

        vol = p["vol"]
        scan_idx, lesion_idx = np.nonzero(~np.isnan(vol))
        v = vol[scan_idx, lesion_idx]
        semi = semi_axes(v, p["ratios"][lesion_idx])
        c = p["centres"][lesion_idx]
        lesion_parts.append({  # columns; one frame for the whole trial is built at the end
            "patient_id": np.full(len(v), pid, dtype=object),
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
        })
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
            "progression_visit": p["progression_visit"], "progression_day": p["progression_day"],
            "progression_cause": p["progression_cause"], "t_new_lesion_days": p["t_new_lesion"],
            "missed_visits": p["missed_visits"],
            "body_a_mm": b.a, "body_b_mm": b.b, "sat_mm": b.sat, "muscle_mm": b.muscle,
        })

    lesions = pd.DataFrame({k: np.concatenate([part[k] for part in lesion_parts]) for k in lesion_parts[0]})
    lesions["new"] = lesions["new"].astype(bool)
    patients = pd.DataFrame(patient_rows)
    patients["progression_visit"] = patients["progression_visit"].astype("Int64")
    trial = Trial(
        clinical=pd.DataFrame(clinical_rows),
        scans=pd.DataFrame(scan_rows),
        patients=tables.check(patients, "truth_patients", "(synthetic trial)"),
        lesions=lesions,
        model=_model_description(s, grid),
        courses={p["pid"]: p["course"] for p in pats},
    )
    return trial


def _model_description(s: dict, grid: dict) -> dict:
    if s["survival_model"]["model"] == "visits":
        return _visits_description(s, grid)
    return {"survival_model": "baseline", **_baseline_description(s, grid)}


def _trial_size(s: dict) -> dict:
    return {"seed": int(s["seed"]), "size": s["size"], "n_patients": s["n_patients"],
            "cohorts": {c: float(v) for c, v in s["cohorts"].items()}}


def _shared_description(s: dict, grid: dict, new_lesions_from: str) -> dict:
    """What both survival models' descriptions say alike: censoring, kinetics, lesions, image, grid."""
    return {
        "censoring": {
            "accrual_days": float(s["accrual_days"]),
            "study_days": float(s["study_days"]),
            "dropout_per_year": float(s["dropout_per_year"]),
            "rule": "min(study_days - accrual (uniform in [0, accrual_days]), exponential dropout)",
        },
        "kinetics": s["kinetics"],
        "lesion_model": "stein: V0 (exp(-d t) + exp(g t) - 1) for t >= 0, V0 exp(g t) before; "
        f"new lesions V exp(g (t - {new_lesions_from})); semi-axes capped at {MAX_SEMI_AXIS_MM} mm",
        "image": {"noise_hu": float(s["noise_hu"]), "blur_mm": float(s["blur_mm"])},
        "grid": grid,
    }


def _visits_description(s: dict, grid: dict) -> dict:
    sm = s["survival_model"]
    shape = float(sm["weibull_shape"])
    cohorts = list(s["cohorts"])
    alpha, beta = math.log(sm["death_hr_per_log_burden"]), math.log(sm["death_hr_per_slope"])
    return {
        "survival_model": "visits",
        **_trial_size(s),
        "death_hazard": "h0(t) exp(alpha (ln V(t) - ln reference_volume_ml) + beta (dV/dt / V)(t) / 0.001), "
        "V(t) the true total volume of every lesion present (mL), h0 Weibull; drawn by inverting the "
        f"cumulative hazard on a {visits.HAZARD_STEP_DAYS:g}-day grid, held constant after study_days",
        "association": {"log_burden": alpha, "slope_per_0.001_per_day": beta},
        "hazard_ratios": {
            "death_per_log_current_volume": float(sm["death_hr_per_log_burden"]),
            "death_per_slope_0.001_per_day": float(sm["death_hr_per_slope"]),
        },
        "reference": {"volume_ml": float(sm["reference_volume_ml"])},
        "linear_predictor": "lp in truth/patients: the death hazard's log relative hazard at day 0",
        "baseline_hazard": {
            "family": "weibull, H0(t) = (t / scale)^shape",
            "shape": shape,
            "scale_death_days": {c: _weibull_scale(float(sm["median_death_days"][c]), shape) for c in cohorts},
            "median_death_days": {c: float(sm["median_death_days"][c]) for c in cohorts},
        },
        "new_lesions": {
            "rule": "1-3 new lesions appear together at a Weibull time (shape weibull_shape) with relative "
            "hazard hr_per_growth per 0.001/day of g above reference_growth",
            "median_days": {c: float(sm["new_lesion_median_days"][c]) for c in cohorts},
            "hr_per_growth_0.001_per_day": float(sm["hr_per_growth"]),
        },
        "progression": {
            "rule": f"first attended visit at which the true target lesions' sum of diameters is >= "
            f"{1 + visits.PD_PCT / 100:g} x nadir and >= nadir + {visits.PD_ABS_MM:g} mm (RECIST 1.1 PD), or a "
            "new lesion exists; targets: <= 5 measurable lesions at baseline (>= 10 mm; nodes short axis "
            ">= 15 mm), <= 2 per site",
            "visit_every_days": float(sm["visit_every_days"]),
            "visit_window_days": int(sm["visit_window_days"]),
            "missed_visit_probability": float(sm["missed_visit_probability"]),
            "max_followups": int(s["max_followups"]),
        },
        "endpoints": {
            "pfs": "day of the progression visit; else death, if before censoring; else censored at the last "
            "attended visit (day 0 without one)",
            "os": "t_death, censored",
        },
        **_shared_description(s, grid, new_lesions_from="t_new_lesion"),
    }


def _baseline_description(s: dict, grid: dict) -> dict:
    sm = s["survival_model"]
    shape = float(sm["weibull_shape"])
    cohorts = list(s["cohorts"])
    scale_p = {c: _weibull_scale(float(sm["median_progression_days"][c]), shape) for c in cohorts}
    scale_d = {c: _weibull_scale(float(sm["median_death_days"][c]), shape) for c in cohorts}
    # PFS = min(T_prog, T_death): Weibull hazards with one shape add, so PFS is Weibull PH too
    scale_pfs = {c: (scale_p[c] ** -shape + scale_d[c] ** -shape) ** (-1.0 / shape) for c in cohorts}
    return {
        **_trial_size(s),
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
        **_shared_description(s, grid, new_lesions_from="t_progression"),
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
