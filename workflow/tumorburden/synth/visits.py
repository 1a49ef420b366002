"""The faithful trial: progression seen at scheduled visits, death driven by the current burden.

The simulator's own knowledge of RECIST 1.1 progression (Eisenhauer et al. 2009), applied to
its *true* lesions; it shares no code with the estimator's rules in `kinetics/recist.py` (the
two are checked against each other in the tests only):

- targets are chosen once, at the baseline scan: measurable lesions (longest axial diameter
  >= 10 mm; lymph nodes: short axis >= 15 mm), largest first (nodes by short axis), at most 5 in
  all and 2 per site (all nodes one site); ties go to the lower lesion number;
- the sum of diameters (SLD) adds the targets' longest diameters (short axes for nodes);
- a visit shows progression when SLD >= 1.2 x nadir and SLD - nadir >= 5 mm (nadir: the
  smallest SLD at the baseline and every earlier attended visit), or when a new lesion exists.

Death has the joint-model hazard h(t) = h0(t) exp(alpha (ln V(t) - ln V_ref) + beta V'(t)/V(t)
/ 0.001), V the true total volume (baseline and new lesions, each capped as rendered), h0 a
Weibull hazard; the time is drawn exactly by inverting the cumulative hazard, integrated on a
one-day grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PD_PCT = 20.0
PD_ABS_MM = 5.0
MIN_TARGET_MM = 10.0
MIN_NODE_TARGET_MM = 15.0
MAX_TARGETS = 5
MAX_TARGETS_PER_SITE = 2
NODE = "node"
MIN_BURDEN_ML = 1e-3  # ln V is taken of at least this, so a vanished tumour has a finite hazard
HAZARD_STEP_DAYS = 1.0


def choose_targets(longest_mm, short_mm, sites) -> np.ndarray:
    """Indices of the target lesions among the lesions present at the baseline scan."""
    longest_mm = np.asarray(longest_mm, float)
    short_mm = np.asarray(short_mm, float)
    node = np.array([s == NODE for s in sites], dtype=bool)
    measure = np.where(node, short_mm, longest_mm)
    measurable = np.isfinite(measure) & (measure >= np.where(node, MIN_NODE_TARGET_MM, MIN_TARGET_MM))
    order = sorted(np.flatnonzero(measurable), key=lambda j: (-measure[j], j))
    chosen, per_site = [], {}
    for j in order:
        if len(chosen) == MAX_TARGETS:
            break
        site = NODE if node[j] else sites[j]
        if per_site.get(site, 0) < MAX_TARGETS_PER_SITE:
            per_site[site] = per_site.get(site, 0) + 1
            chosen.append(j)
    return np.array(chosen, dtype=int)


def sum_of_diameters(longest_mm, short_mm, sites, targets) -> np.ndarray:
    """SLD per visit from (visits, lesions) diameters; an absent target (NaN) adds 0 mm."""
    longest_mm = np.atleast_2d(np.asarray(longest_mm, float))
    short_mm = np.atleast_2d(np.asarray(short_mm, float))
    if len(targets) == 0:
        return np.full(longest_mm.shape[0], np.nan)
    node = np.array([sites[j] == NODE for j in targets], dtype=bool)
    measure = np.where(node[None, :], short_mm[:, targets], longest_mm[:, targets])
    return np.nansum(measure, axis=1)


def first_progression(sld_mm, new_lesion) -> tuple[int | None, str | None]:
    """(index, cause) of the first follow-up (index >= 1; 0 is the baseline) that shows progression.

    cause is "pd" (sum of diameters; it wins when a new lesion appears at the same visit) or
    "new_lesion"; (None, None) when no visit does.
    """
    sld = np.asarray(sld_mm, float)
    new = np.asarray(new_lesion, bool)
    has_targets = np.isfinite(sld[0]) and sld[0] > 0
    for i in range(1, len(sld)):
        if has_targets:
            nadir = float(np.min(sld[:i]))
            if sld[i] >= nadir * (1.0 + PD_PCT / 100.0) and sld[i] - nadir >= PD_ABS_MM:
                return i, "pd"
        if new[i]:
            return i, "new_lesion"
    return None, None


@dataclass
class Assessment:
    days: np.ndarray  # the scans: the baseline and each attended visit up to the progression visit
    visit: int | None  # scheduled visit number (1-based) of the progression visit
    cause: str | None  # "pd" or "new_lesion"
    missed: int  # scheduled visits missed while on study, up to the progression visit


def assess(baseline_day: float, visit_days, attended, end_day: float, sld_at, t_new: float) -> Assessment:
    """Follow a patient through the schedule: the visits due by `end_day` (death or censoring) and
    attended, assessed in order until the first that shows progression. `sld_at(days)` gives the true
    sum of diameters on those days (the baseline's first); new lesions exist from `t_new`."""
    visit_days = np.asarray(visit_days, float)
    due = visit_days <= end_day  # the window keeps visits in order, so this is a prefix
    seen = np.asarray(attended, bool) & due
    days = np.concatenate([[float(baseline_day)], visit_days[seen]])
    k, cause = first_progression(sld_at(days), days >= t_new)
    skipped = due & ~np.asarray(attended, bool)
    if k is None:
        return Assessment(days, None, None, int(skipped.sum()))
    visit = int(np.flatnonzero(seen)[k - 1]) + 1
    return Assessment(days[: k + 1], visit, cause, int(skipped[:visit].sum()))


def schedule(rng: np.random.Generator, every_days: float, window_days: int, missed_probability: float,
             n_visits: int) -> tuple[np.ndarray, np.ndarray]:
    """(day, attended) of the n scheduled follow-ups: visit k is due on k x every_days and done
    within +- window_days of it (uniform whole days); each is missed with the given probability."""
    due = every_days * np.arange(1, n_visits + 1)
    jitter = rng.integers(-int(window_days), int(window_days) + 1, size=n_visits)
    attended = rng.random(n_visits) >= missed_probability
    return np.round(due + jitter).astype(float), attended


def death_time(u: float, t, log_burden, slope, scale: float, shape: float, alpha: float, beta: float,
               log_reference: float, slope_unit: float) -> float:
    """The time at which the cumulative hazard reaches -ln u (u in (0, 1]).

    `t` is an increasing grid from 0, `log_burden` ln V(t) and `slope` d ln V/dt on it. Past the
    grid's end the hazard is held at its last value (times there are beyond every censoring).
    """
    t = np.asarray(t, float)
    h0 = shape / scale * (np.maximum(t, 1e-9) / scale) ** (shape - 1.0)
    h = h0 * np.exp(alpha * (np.asarray(log_burden) - log_reference) + beta * np.asarray(slope) / slope_unit)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (h[1:] + h[:-1]) * np.diff(t))])
    target = -math.log(u)
    if target <= cum[-1]:
        k = int(np.searchsorted(cum, target, side="left"))
        if k == 0:
            return float(t[0])
        # the hazard is linear between grid points: solve the quadratic of the trapezoid exactly
        dt, h_a, h_b, rest = t[k] - t[k - 1], h[k - 1], h[k], target - cum[k - 1]
        slope_h = (h_b - h_a) / dt
        if abs(slope_h) < 1e-15:
            return float(t[k - 1] + rest / h_a)
        x = (-h_a + math.sqrt(h_a * h_a + 2.0 * slope_h * rest)) / slope_h
        return float(t[k - 1] + x)
    return float(t[-1] + (target - cum[-1]) / h[-1])
