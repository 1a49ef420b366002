"""Discrimination: figures/c_index.pdf + .png and figures/td_auc_<endpoint>.pdf + .png.

- C-index plot, from performance.csv: per endpoint (columns) and cohort (blocks), a row per
  feature with Harrell's C and its bootstrap 95 % CI (filled circle) and Uno's C with its CI
  (open circle, offset below); 0.5 = no discrimination. A feature that was not computed keeps
  its row with the table's reason. With c_index_difference.csv (issue contract: cohort,
  endpoint, feature_a, feature_b, difference, lower, upper) a second panel row shows each
  difference of C with its 95 % CI, e.g. volumetric burden minus RECIST sum of diameters.
- Time-dependent AUC, from td_auc.csv (cohort, endpoint, feature, time_days, auc): one panel
  per cohort, a curve per feature over time in months.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.transforms import blended_transform_factory

from tumorburden.figures import names
from tumorburden.figures import settings as fsettings
from tumorburden.figures import style
from tumorburden.figures.km import read_survival_table, time_ticks

log = logging.getLogger(__name__)

FEATURE_COLOURS = [style.OKABE_ITO[k] for k in ("blue", "vermillion", "green", "purple", "orange", "sky", "black")]


def _cohorts(df: pd.DataFrame) -> list[str]:
    return sorted(df["cohort"].unique(), key=lambda c: (c == style.POOLED, c))


def c_index_rows(perf: pd.DataFrame) -> list[dict]:
    """Rows top to bottom: cohort headers and (cohort, feature) rows, shared by all endpoints."""
    rows = []
    features = list(dict.fromkeys(perf["feature"]))
    for cohort in _cohorts(perf):
        rows.append({"kind": "cohort", "cohort": cohort})
        present = set(perf.loc[perf["cohort"] == cohort, "feature"])
        rows += [{"kind": "feature", "cohort": cohort, "feature": f} for f in features if f in present]
    return rows


def c_index_figure(perf: pd.DataFrame, difference: pd.DataFrame | None = None, cohort_colours: dict | None = None):
    """(Figure, {(cohort, endpoint, feature): Harrell's C drawn})."""
    endpoints = fsettings.endpoint_order(perf["endpoint"].unique()) or ["pfs"]
    rows = c_index_rows(perf)
    colours = cohort_colours or style.cohort_colours(perf["cohort"].unique())
    has_diff = difference is not None and len(difference) > 0
    diff_rows = []
    if has_diff:
        for cohort in _cohorts(difference):
            for _, r in difference[difference["cohort"] == cohort][["feature_a", "feature_b"]].drop_duplicates().iterrows():
                diff_rows.append((cohort, r["feature_a"], r["feature_b"]))
    n = max(len(rows), 1)
    nd = len(diff_rows)
    # mm, top to bottom: key, C-index panels, (axis, difference panels), axis
    top_mm, row_mm, axis_mm, diff_row_mm, gap_mm = 12.0, 4.2, 11.0, 7.0, 13.0
    diff_mm = diff_row_mm * max(nd, 1) if has_diff else 0.0
    height = top_mm + row_mm * n + axis_mm + ((gap_mm + diff_mm) if has_diff else 0.0)
    drawn = {}
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM, height)
        left, right, wspace = 0.34, 0.985, 0.045
        width = (right - left - wspace * (len(endpoints) - 1)) / len(endpoints)

        def panel(j, bottom_mm, height_mm):
            return fig.add_axes([left + j * (width + wspace), bottom_mm / height, width, height_mm / height])
        # every estimate and CI end in view: from 0.2, or lower when a small cohort needs it
        ends = perf[["c_index", "c_index_lower", "c_index_uno", "c_index_uno_lower"]].to_numpy(dtype=float)
        lowest = float(np.nanmin(ends)) if np.isfinite(ends).any() else 0.2
        x_lo = max(0.0, min(0.2, np.floor((lowest - 0.02) * 10) / 10))
        for j, endpoint in enumerate(endpoints):
            ax = panel(j, height - top_mm - row_mm * n, row_mm * n)
            ax.set_ylim(n - 0.5, -0.5)
            ax.axvline(0.5, color="0.4", lw=0.6, ls="--", zorder=0)
            sub = perf[perf["endpoint"] == endpoint]
            for i, r in enumerate(rows):
                if r["kind"] != "feature":
                    continue
                hit = sub[(sub["cohort"] == r["cohort"]) & (sub["feature"] == r["feature"])]
                if hit.empty:
                    continue
                h = hit.iloc[0]
                colour = colours.get(r["cohort"], "black")
                if h["status"] != "ok" or not np.isfinite(h["c_index"]):
                    ax.text((x_lo + 1.02) / 2, i, str(h["status"]), ha="center", va="center", fontsize=5.5,
                            color="0.35")
                    continue
                ax.plot([h["c_index_lower"], h["c_index_upper"]], [i - 0.12] * 2, color=colour, lw=1.0)
                ax.plot([h["c_index"]], [i - 0.12], marker="o", markersize=3.5, color=colour,
                        gid=f"c:{r['cohort']}:{endpoint}:{r['feature']}")
                drawn[(r["cohort"], endpoint, r["feature"])] = float(h["c_index"])
                if np.isfinite(h.get("c_index_uno", np.nan)):
                    ax.plot([h["c_index_uno_lower"], h["c_index_uno_upper"]], [i + 0.22] * 2, color=colour, lw=0.6,
                            ls=(0, (2, 1)))
                    ax.plot([h["c_index_uno"]], [i + 0.22], marker="o", markersize=3.2, markerfacecolor="white",
                            markeredgecolor=colour, markeredgewidth=0.8)
            ax.set_xlim(x_lo, 1.02)
            ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0] if x_lo < 0.2 else [0.3, 0.5, 0.7, 0.9])
            ax.set_yticks([])
            ax.spines["left"].set_visible(False)
            ax.set_title(fsettings.endpoint_label(endpoint), loc="left", fontweight="bold")
            ax.set_xlabel("C-index (95% CI)")
            if j == 0:
                label_at = blended_transform_factory(fig.transFigure, ax.transData)
                for i, r in enumerate(rows):
                    if r["kind"] == "cohort":
                        ax.text(0.01, i, style.cohort_title(r["cohort"]), transform=label_at, ha="left",
                                va="center", fontweight="bold", color=colours.get(r["cohort"], "black"))
                    else:
                        ax.text(0.325, i, fsettings.term_label(r["feature"]), transform=label_at, ha="right",
                                va="center")
            if has_diff:
                axd = panel(j, axis_mm, diff_mm)
                axd.set_ylim(max(nd, 1) - 0.5, -0.5)
                axd.axvline(0.0, color="0.4", lw=0.6, ls="--", zorder=0)
                dsub = difference[difference["endpoint"] == endpoint]
                for i, (cohort, fa, fb) in enumerate(diff_rows):
                    hit = dsub[(dsub["cohort"] == cohort) & (dsub["feature_a"] == fa) & (dsub["feature_b"] == fb)]
                    if hit.empty or not np.isfinite(hit.iloc[0]["difference"]):
                        continue
                    h = hit.iloc[0]
                    colour = colours.get(cohort, "black")
                    axd.plot([h["lower"], h["upper"]], [i, i], color=colour, lw=1.0)
                    axd.plot([h["difference"]], [i], marker="D", markersize=3, color=colour)
                    drawn[(cohort, endpoint, f"{fa} - {fb}")] = float(h["difference"])
                ends = difference[["lower", "upper", "difference"]].abs().to_numpy(dtype=float)
                span = max(0.2, float(np.ceil(np.nanmax(ends) * 10) / 10) if np.isfinite(ends).any() else 0.2)
                axd.set_xlim(-span * 1.08, span * 1.08)
                axd.set_xticks(np.round(np.linspace(-span, span, 5), 2))
                axd.set_yticks([])
                axd.spines["left"].set_visible(False)
                axd.set_xlabel("Difference in Harrell's C (95% CI)")
                if j == 0:
                    label_at = blended_transform_factory(fig.transFigure, axd.transData)
                    for i, (cohort, fa, fb) in enumerate(diff_rows):
                        axd.text(0.325, i, f"{style.cohort_title(cohort)}: {fsettings.term_label(fa)}\n"
                                 f"minus {fsettings.term_label(fb)}", transform=label_at, ha="right", va="center",
                                 fontsize=6)
        fig.text(0.01, 1 - 2.0 / height, "\u25cf Harrell's C   \u25cb Uno's C   (bootstrap 95% CI)   "
                 "0.5 = no discrimination", va="top", fontsize=6, color="0.2")
    return fig, drawn


def td_auc_figure(td: pd.DataFrame, endpoint: str, settings: dict | None = None, cohort_colours: dict | None = None):
    """(Figure, {(cohort, feature): number of time points drawn}) for one endpoint."""
    s = fsettings.resolve(settings)
    dpm = float(s["days_per_month"])
    td = td[td["endpoint"] == endpoint]
    cohorts = _cohorts(td) or [style.POOLED]
    colours = cohort_colours or style.cohort_colours(cohorts)
    features = list(dict.fromkeys(td["feature"]))
    fcol = {f: FEATURE_COLOURS[i % len(FEATURE_COLOURS)] for i, f in enumerate(features)}
    drawn = {}
    with style.style_context():
        width = style.SINGLE_COLUMN_MM if len(cohorts) == 1 else style.DOUBLE_COLUMN_MM
        fig = style.new_figure(width, 62.0)
        axes = fig.subplots(1, len(cohorts), sharey=True, squeeze=False)[0]
        fig.subplots_adjust(left=0.09 if len(cohorts) > 1 else 0.16, right=0.985, top=0.78, bottom=0.17, wspace=0.08)
        for ax, cohort in zip(axes, cohorts):
            sub = td[td["cohort"] == cohort]
            for f in features:
                t = sub[sub["feature"] == f].sort_values("time_days", kind="mergesort")
                t = t[np.isfinite(t["auc"].to_numpy(dtype=float))]
                if t.empty:
                    continue
                ax.plot(t["time_days"] / dpm, t["auc"], color=fcol[f], marker="o", markersize=2,
                        label=fsettings.term_label(f), gid=f"auc:{cohort}:{f}")
                drawn[(cohort, f)] = len(t)
            ax.axhline(0.5, color="0.4", lw=0.6, ls="--", zorder=0)
            ax.set_ylim(0.3, 1.0)
            ticks = time_ticks(float(td["time_days"].max()) / dpm if len(td) else 1.0)
            ax.set_xticks(ticks)
            ax.set_xlim(0, ticks[-1])
            ax.set_xlabel("Months since baseline")
            ax.set_title(style.cohort_title(cohort), loc="left", fontweight="bold", color=colours.get(cohort))
        axes[0].set_ylabel("Time-dependent AUC")
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.985, 0.995), ncol=min(len(labels), 3))
        fig.text(0.01, 0.99, f"Time-dependent AUC: {fsettings.endpoint_label(endpoint).lower()}", va="top",
                 fontweight="bold", fontsize=7.5)
        if not drawn:
            axes[0].text(0.5, 0.5, "no time-dependent AUC computed", transform=axes[0].transAxes, ha="center")
    return fig, drawn


def write_c_index_figure(survival_dir: Path, out_dir: Path, settings: dict | None = None,
                         cohorts: list[str] | None = None, difference_path: Path | None = None) -> list[Path]:
    s = fsettings.resolve(settings)
    perf = read_survival_table(Path(survival_dir) / "performance.csv", "performance")
    diff = read_survival_table(difference_path, None) if difference_path else None
    colours = style.cohort_colours(cohorts or perf["cohort"].unique(), s["cohort_colours"])
    fig, _ = c_index_figure(perf, diff, colours)
    log.info("wrote c_index")
    return style.save(fig, Path(out_dir) / names.C_INDEX_STEM, s["formats"], int(s["dpi"]))


def write_td_auc_figures(td_auc_path: Path, out_dir: Path, settings: dict | None = None,
                         cohorts: list[str] | None = None, endpoints: list[str] | None = None) -> list[Path]:
    s = fsettings.resolve(settings)
    td = read_survival_table(td_auc_path, None)
    colours = style.cohort_colours(cohorts or td["cohort"].unique(), s["cohort_colours"])
    written = []
    for endpoint in endpoints or fsettings.endpoint_order(td["endpoint"].unique()):
        fig, _ = td_auc_figure(td, endpoint, s, colours)
        written += style.save(fig, Path(out_dir) / names.td_auc_stem(endpoint), s["formats"], int(s["dpi"]))
    return written
