"""Forest plots of the Cox models: figures/forest_<endpoint>.pdf + .png.

One figure per endpoint, from cox.csv: a block per cohort (the pooled set last), within it a
block per model (univariable first, then multivariable, then the others in the table's order)
and a row per term with its hazard ratio and 95 % CI on a log axis, the number of patients and
events the model used, the HR (95 % CI) as text and its p-value. A model that was not fitted
keeps its row, with the table's reason instead of an estimate.
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

MODEL_ORDER = ["univariable", "univariable_strata_cohort", "multivariable", "multivariable_strata_cohort",
               "landmark", "time_varying"]
MODEL_LABELS = {"univariable": "Univariable", "univariable_strata_cohort": "Univariable, stratified by cohort",
                "multivariable": "Multivariable", "multivariable_strata_cohort": "Multivariable, stratified by cohort",
                "landmark": "Landmark", "time_varying": "Time-varying"}


def format_p(p) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "< 0.001" if p < 0.001 else (f"{p:.2g}" if p < 0.1 else f"{p:.2f}")


def forest_rows(cox: pd.DataFrame, cohort_order: list[str] | None = None) -> list[dict]:
    """The rows of the plot, top to bottom: headers (kind 'cohort' / 'model') and terms."""
    cohorts = cohort_order or sorted(cox["cohort"].unique(), key=lambda c: (c == style.POOLED, c))
    rows = []
    for cohort in cohorts:
        sub = cox[cox["cohort"] == cohort]
        if sub.empty:
            continue
        rows.append({"kind": "cohort", "cohort": cohort, "label": style.cohort_title(cohort)})
        models = list(dict.fromkeys(sub["model"]))
        models.sort(key=lambda m: MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER))
        for model in models:
            label = MODEL_LABELS.get(model, model)
            strata = sub.loc[sub["model"] == model, "strata"] if "strata" in sub.columns else pd.Series([], dtype=object)
            if strata.notna().any() and "stratified" not in label:  # the survival stage names its strata
                label += f", stratified by {strata.dropna().iloc[0]}"
            rows.append({"kind": "model", "cohort": cohort, "label": label})
            for _, r in sub[sub["model"] == model].iterrows():
                rows.append({"kind": "term", "cohort": cohort, "model": model, "term": r["term"],
                             "label": fsettings.term_label(r["term"]), "hr": r["hr"], "lower": r["hr_lower"],
                             "upper": r["hr_upper"], "p": r["p"], "n": r["n"], "events": r["events"],
                             "status": r["status"]})
    return rows


def forest_figure(cox: pd.DataFrame, endpoint: str, cohort_colours: dict | None = None):
    """(Figure, rows drawn top to bottom) for the cox rows of one endpoint."""
    rows = forest_rows(cox)
    colours = cohort_colours or style.cohort_colours(cox["cohort"].unique())
    n = max(len(rows), 1)
    row_mm = 4.0
    height = 14.0 + row_mm * n + 11.0
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM, height)
        top, bottom = 1 - 13.0 / height, 11.0 / height
        # columns: label | forest | n | events | HR (95% CI) | p
        ax = fig.add_axes([0.36, bottom, 0.30, top - bottom])
        ax.set_ylim(n - 0.5, -0.5)
        ok = [r for r in rows if r["kind"] == "term" and r["status"] == "ok" and np.isfinite(r["hr"])]
        if ok:
            lo = min(min(r["lower"] for r in ok), 0.8)
            hi = max(max(r["upper"] for r in ok), 1.25)
        else:
            lo, hi = 0.5, 2.0
        ax.set_xscale("log")
        grid = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 4, 5, 10, 20, 50, 100)
        lo = max([t for t in grid if t <= lo] or [lo])
        hi = min([t for t in grid if t >= hi] or [hi])
        ax.set_xlim(lo / 1.05, hi * 1.05)
        ax.axvline(1.0, color="0.4", lw=0.6, ls="--", zorder=0)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_xlabel("Hazard ratio (95% CI), log scale")
        fig.text(0.02, 1 - 2.0 / height, f"Cox models: {fsettings.endpoint_label(endpoint).lower()}", ha="left",
                 va="top", fontweight="bold", fontsize=7.5)
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if lo <= t <= hi]
        if len(ticks) > 7:  # a wide range: decades, and the halving/doubling next to 1
            ticks = [t for t in ticks if t in (0.01, 0.1, 0.5, 1, 2, 10, 100)]
        ax.set_xticks(ticks)
        ax.set_xticks([], minor=True)
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        cols = {"n": 0.71, "events": 0.77, "hr": 0.855, "p": 0.965}
        fig_text = dict(transform=fig.transFigure, va="center", fontsize=6.5)
        y_of = lambda i: ax.transData.transform((1, i))[1] / fig.bbox.height  # noqa: E731
        head_y = 1 - 8.5 / height
        fig.text(0.02, head_y, "Cohort / model / covariate", fontweight="bold", ha="left", **fig_text)
        for key, label in (("n", "n"), ("events", "Events"), ("hr", "HR (95% CI)"), ("p", "p")):
            fig.text(cols[key], head_y, label, fontweight="bold", ha="center", **fig_text)
        reasons_shown = set()
        for i, r in enumerate(rows):
            y = y_of(i)
            colour = colours.get(r["cohort"], "black")
            if r["kind"] == "cohort":
                fig.text(0.02, y, r["label"], fontweight="bold", color=colour, ha="left", **fig_text)
                continue
            if r["kind"] == "model":
                fig.text(0.035, y, r["label"], fontstyle="italic", ha="left", **fig_text)
                continue
            fig.text(0.05, y, r["label"], ha="left", **fig_text)
            if r["status"] == "ok" and np.isfinite(r["hr"]):
                fig.text(cols["n"], y, f"{int(r['n'])}" if pd.notna(r["n"]) else "", ha="center", **fig_text)
                fig.text(cols["events"], y, f"{int(r['events'])}" if pd.notna(r["events"]) else "", ha="center",
                         **fig_text)
                ax.plot([r["lower"], r["upper"]], [i, i], color=colour, lw=1.0, solid_capstyle="butt")
                ax.plot([r["hr"]], [i], marker="s", color=colour, markersize=3.5, gid=f"hr:{r['cohort']}:{r['term']}")
                fig.text(cols["hr"], y, f"{r['hr']:.2f} ({r['lower']:.2f}\u2013{r['upper']:.2f})", ha="center",
                         **fig_text)
                fig.text(cols["p"], y, format_p(r["p"]), ha="center", **fig_text)
            elif (r["cohort"], r["model"]) not in reasons_shown:
                # one line per unfitted model, across the n .. p columns, so rows never overlap
                reasons_shown.add((r["cohort"], r["model"]))
                fig.text(cols["n"] - 0.03, y, str(r["status"]), ha="left", color="0.35",
                         **{**fig_text, "fontsize": 5.5})
        if not rows:
            ax.text(0.5, 0.5, f"no Cox model for {endpoint}", ha="center", va="center", transform=ax.transAxes)
    return fig, rows


def write_forest_figures(survival_dir: Path, out_dir: Path, settings: dict | None = None,
                         cohorts: list[str] | None = None, endpoints: list[str] | None = None) -> list[Path]:
    s = fsettings.resolve(settings)
    cox = read_survival_table(Path(survival_dir) / "cox.csv", "cox")
    colours = style.cohort_colours(cohorts or cox["cohort"].unique(), s["cohort_colours"])
    written = []
    for endpoint in endpoints or fsettings.endpoint_order(cox["endpoint"].unique()):
        fig, _ = forest_figure(cox[cox["endpoint"] == endpoint], endpoint, colours)
        written += style.save(fig, Path(out_dir) / names.forest_stem(endpoint), s["formats"], int(s["dpi"]))
        log.info("wrote forest_%s", endpoint)
    return written
