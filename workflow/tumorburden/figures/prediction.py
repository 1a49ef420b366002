"""Prediction-model figures: calibration_<endpoint>, decision_curve_<endpoint>, model_comparison
(.pdf + .png), from survival/calibration.csv, decision_curve.csv and validation.csv.

- Calibration: a panel per cohort (rows) x horizon (columns); per model set, the grouped
  Kaplan-Meier survival against the mean predicted survival with the KM's 95 % CI (points), the
  optimism-corrected group values (open points) and the smooth curve (line); the diagonal is
  perfect calibration.
- Decision curves: a panel per cohort x horizon; net benefit of each model set over the
  threshold probability, against treat all (grey) and treat none (0, black).
- Model comparison: per endpoint (columns) and cohort (blocks), each model set's apparent
  (open) and optimism-corrected (filled) C; with truth_comparison.csv the true model's C (star).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden.figures import names
from tumorburden.figures import settings as fsettings
from tumorburden.figures import style
from tumorburden.figures.km import read_survival_table

log = logging.getLogger(__name__)

SET_COLOURS = [style.OKABE_ITO[k] for k in ("sky", "orange", "vermillion", "blue", "purple", "green")]
TRUE_MODEL = "true model (simulator)"


def _cohorts(df):
    return sorted(df["cohort"].unique(), key=lambda c: (c == style.POOLED, c))


def _set_colours(sets):
    return {s: SET_COLOURS[i % len(SET_COLOURS)] for i, s in enumerate(sets)}


def _horizon_panels(cohorts, horizons, height_per_row: float, dpm: float, ylabel: str, xlabel: str, draw,
                    title: str, legend_columns: int):
    """The calibration and decision-curve layout: a row per cohort, a column per horizon (titled in
    months), shared axes, the legend of the first panel's lines at the top right (or "no model
    fitted"), the figure's title at the top left. `draw(ax, cohort, horizon, first)` fills one panel
    and returns {key: points drawn}; the figure and all those keys are returned."""
    fig = style.new_figure(style.DOUBLE_COLUMN_MM if len(horizons) > 1 else style.SINGLE_COLUMN_MM,
                           14.0 + height_per_row * len(cohorts))
    axes = fig.subplots(len(cohorts), len(horizons), squeeze=False, sharex=True, sharey=True)
    fig.subplots_adjust(left=0.08, right=0.985, top=1 - 12.0 / (14.0 + height_per_row * len(cohorts)), bottom=0.08,
                        wspace=0.08, hspace=0.25)
    drawn = {}
    for i, cohort in enumerate(cohorts):
        for j, h in enumerate(horizons):
            ax = axes[i, j]
            drawn.update(draw(ax, cohort, h, (i, j) == (0, 0)))
            if i == 0:
                ax.set_title(f"{h / dpm:.0f} months", loc="center")
            if j == 0:
                ax.set_ylabel(f"{style.cohort_title(cohort)}\n{ylabel}")
            if i == len(cohorts) - 1:
                ax.set_xlabel(xlabel)
    if drawn:
        fig.legend(loc="upper right", bbox_to_anchor=(0.985, 0.999), ncol=legend_columns)
    else:
        axes[0, 0].text(0.5, 0.5, "no model fitted", transform=axes[0, 0].transAxes, ha="center")
    fig.text(0.01, 0.995, title, va="top", fontweight="bold", fontsize=7.5)
    return fig, drawn


def calibration_figure(cal: pd.DataFrame, endpoint: str, dpm: float = 30.4375):
    cal = cal[(cal["endpoint"] == endpoint) & (cal["status"] == "ok")]
    cohorts = _cohorts(cal) or [style.POOLED]
    horizons = sorted(cal["horizon_days"].dropna().unique()) or [np.nan]
    sets = list(dict.fromkeys(cal["model_set"]))
    colours = _set_colours(sets)

    def draw(ax, cohort, h, first):
        drawn = {}
        ax.plot([0, 1], [0, 1], color="0.5", lw=0.6, ls="--", zorder=0)
        sub = cal[(cal["cohort"] == cohort) & (cal["horizon_days"] == h)]
        for k, s in enumerate(sets):
            g = sub[(sub["model_set"] == s) & (sub["method"] == "grouped")]
            sm = sub[(sub["model_set"] == s) & (sub["method"] == "smooth")].sort_values("predicted")
            if len(g):
                x = g["predicted"].to_numpy(float) + (k - (len(sets) - 1) / 2) * 0.008
                y = g["observed"].to_numpy(float)
                lo, hi = g["observed_lower"].to_numpy(float), g["observed_upper"].to_numpy(float)
                err = np.vstack([y - lo, hi - y])
                ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", ms=2.5, color=colours[s], lw=0.6,
                            capsize=0, label=s if first else None, gid=f"grouped:{cohort}:{h}:{s}")
                ax.plot(x, g["corrected"].to_numpy(float), "o", ms=2.5, mfc="white", mec=colours[s], mew=0.6)
                drawn[(cohort, h, s)] = len(g)
            if len(sm):
                ax.plot(sm["predicted"], sm["observed"], color=colours[s], lw=0.9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        return drawn

    with style.style_context():
        return _horizon_panels(cohorts, horizons, 48.0, dpm, "observed survival", "Predicted survival", draw,
                               f"Calibration: {fsettings.endpoint_label(endpoint).lower()}", min(len(sets), 3))


def decision_figure(dc: pd.DataFrame, endpoint: str, dpm: float = 30.4375, max_threshold: float = 0.8):
    dc = dc[(dc["endpoint"] == endpoint) & (dc["status"] == "ok") & (dc["threshold"] <= max_threshold)]
    cohorts = _cohorts(dc) or [style.POOLED]
    horizons = sorted(dc["time_days"].dropna().unique()) or [np.nan]
    sets = [m for m in dict.fromkeys(dc["model"]) if m not in ("treat all", "treat none")]
    colours = {**_set_colours(sets), "treat all": style.GREY, "treat none": style.OKABE_ITO["black"]}

    def draw(ax, cohort, h, first):
        drawn = {}
        sub = dc[(dc["cohort"] == cohort) & (dc["time_days"] == h)]
        top = 0.05
        for m in [*sets, "treat all", "treat none"]:
            c = sub[sub["model"] == m].sort_values("threshold")
            if c.empty:
                continue
            ax.plot(c["threshold"], c["net_benefit"], color=colours[m], lw=0.9 if m in sets else 0.7,
                    ls="-" if m in sets else ("--" if m == "treat all" else ":"),
                    label=m if first else None, gid=f"nb:{cohort}:{h}:{m}")
            top = max(top, float(np.nanmax(c["net_benefit"])))
            drawn[(cohort, h, m)] = len(c)
        ax.set_ylim(-0.05, top * 1.1)
        ax.set_xlim(0, max_threshold)
        return drawn

    with style.style_context():
        return _horizon_panels(cohorts, horizons, 42.0, dpm, "net benefit", "Threshold risk", draw,
                               f"Decision curves: {fsettings.endpoint_label(endpoint).lower()}",
                               min(len(sets) + 2, 5))


def comparison_figure(val: pd.DataFrame, truth: pd.DataFrame | None = None):
    c = val[(val["index"] == "C") & (val["status"] == "ok")]
    endpoints = fsettings.endpoint_order(c["endpoint"].unique()) or ["pfs"]
    cohorts = _cohorts(c) or [style.POOLED]
    sets = list(dict.fromkeys(c["model_set"]))
    colours = _set_colours(sets)
    rows = [(co, s) for co in cohorts for s in sets]
    drawn = {}
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM if len(endpoints) > 1 else style.SINGLE_COLUMN_MM,
                               24.0 + 4.5 * len(rows) + 4.0 * len(cohorts))
        axes = fig.subplots(1, len(endpoints), squeeze=False, sharey=True)[0]
        fig.subplots_adjust(left=0.3 if len(endpoints) > 1 else 0.45, right=0.985, top=0.9, bottom=0.12, wspace=0.08)
        ypos, labels, y = [], [], 0.0
        for co in cohorts:
            for s in sets:
                ypos.append(y)
                labels.append(f"{style.cohort_title(co)}: {s}")
                y -= 1.0
            y -= 0.6
        for ax, endpoint in zip(axes, endpoints):
            for (co, s), yy in zip(rows, ypos):
                r = c[(c["cohort"] == co) & (c["endpoint"] == endpoint) & (c["model_set"] == s)]
                if r.empty:
                    continue
                ax.plot(r["apparent"], [yy], "o", ms=3, mfc="white", mec=colours[s], mew=0.7)
                ax.plot(r["corrected"], [yy], "o", ms=3.5, color=colours[s], gid=f"c:{co}:{endpoint}:{s}")
                drawn[(co, endpoint, s)] = float(r["corrected"].iloc[0])
                if truth is not None and len(truth):
                    t = truth[(truth["cohort"] == co) & (truth["endpoint"] == endpoint)
                              & (truth["model_set"] == TRUE_MODEL)]
                    if len(t):
                        ax.plot(t["c_corrected"], [yy], "*", ms=4, color=style.OKABE_ITO["black"])
            ax.axvline(0.5, color="0.5", lw=0.6, ls="--", zorder=0)
            ax.set_xlabel("C-index")
            ax.set_title(fsettings.endpoint_label(endpoint), loc="left", fontweight="bold")
        axes[0].set_yticks(ypos)
        axes[0].set_yticklabels(labels)
        note = "open: apparent; filled: optimism-corrected" + ("; star: true model" if truth is not None else "")
        fig.text(0.01, 0.99, f"Model comparison ({note})", va="top", fontweight="bold", fontsize=7)
    return fig, drawn


def write_prediction_figures(survival_dir: Path, out_dir: Path, settings: dict | None = None) -> list[Path]:
    s = fsettings.resolve(settings)
    d = Path(survival_dir)
    dpm = float(s["days_per_month"])
    cal = read_survival_table(d / "calibration.csv", "calibration")
    dc = read_survival_table(d / "decision_curve.csv", "decision_curve")
    val = read_survival_table(d / "validation.csv", "validation")
    truth = read_survival_table(d / "truth_comparison.csv", "truth_comparison") \
        if (d / "truth_comparison.csv").exists() else None
    written = []
    for endpoint in fsettings.endpoint_order(val["endpoint"].unique()):
        fig, _ = calibration_figure(cal, endpoint, dpm)
        written += style.save(fig, Path(out_dir) / names.calibration_stem(endpoint), s["formats"], int(s["dpi"]))
        fig, _ = decision_figure(dc, endpoint, dpm)
        written += style.save(fig, Path(out_dir) / names.decision_curve_stem(endpoint), s["formats"], int(s["dpi"]))
    fig, _ = comparison_figure(val, truth)
    written += style.save(fig, Path(out_dir) / names.MODEL_COMPARISON_STEM, s["formats"], int(s["dpi"]))
    log.info("wrote %d prediction figure files", len(written))
    return written
