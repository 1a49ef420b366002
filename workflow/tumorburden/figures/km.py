"""Kaplan-Meier figures: figures/km_<cohort>_<endpoint>_<grouping>.pdf + .png.

Drawn only from the survival tables (km.csv, logrank.csv, cox.csv, and km_summary.csv when
there is one), so a figure always shows what the tables say. One figure per cohort x endpoint x
grouping (a ``stratifier`` of km.csv named in ``figures.km_groupings``):

- step curves of the groups with their 95 % confidence bands (the table's ci_lower/ci_upper),
  censoring ticks at the times with censored patients;
- the number at risk at each x tick, read off km.csv (patients with time >= the tick), in a
  table aligned under the time axis;
- the median survival of each group in the legend (km_summary.csv, else the first time the
  curve reaches 0.5, or "not reached");
- the log-rank p of the grouping (logrank.csv) and the univariable Cox HR (95 % CI) of
  ``figures.km_hr_term`` (cox.csv).

Time in months: days / ``days_per_month`` (kinetics.days_per_month, 30.4375).
"""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from tumorburden import tables
from tumorburden.figures import names
from tumorburden.figures import settings as fsettings
from tumorburden.figures import style
from tumorburden.survival import km as km_stats

log = logging.getLogger(__name__)

OVERALL = fsettings.KM_OVERALL
MEDIAN_GROUP_LABELS = {"low": "\u2264 median", "high": "> median", "all": "All patients"}
KEYS = ("cohort", "endpoint", "stratifier", "group", "groups", "model", "term", "status", "test",
        "feature", "feature_a", "feature_b", "conf_type")


def read_survival_table(path: Path, name: str | None) -> pd.DataFrame:
    """A survival CSV with its key columns as text (a cohort called '2024' stays '2024');
    checked against its schema when it has one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: survival table not found (run `tumorburden survival` first)")
    df = pd.read_csv(path, dtype={k: str for k in KEYS}, keep_default_na=False, na_values=[""])
    if name is None or name not in tables.SCHEMAS:
        return df
    return tables.check(tables.conform(df, name), name, str(path))


def format_p(p: float, prefix: str = "log-rank p") -> str:
    if p is None or not np.isfinite(p):
        return f"{prefix} not tested"
    if p < 0.001:
        return f"{prefix} < 0.001"
    return f"{prefix} = {p:.2g}" if p < 0.1 else f"{prefix} = {p:.2f}"


def time_ticks(max_months: float) -> np.ndarray:
    """Round month ticks from 0 up to the first tick at or past the last follow-up time."""
    hi = max(max_months, 1.0)
    ticks = MaxNLocator(nbins=6, steps=[1, 2, 3, 6, 10], integer=True).tick_values(0, hi)
    ticks = ticks[ticks >= 0]
    past = np.flatnonzero(ticks >= hi - 1e-9)
    return ticks[: past[0] + 1] if len(past) else ticks


def group_order(groups) -> list[str]:
    """low/high first, then response categories in clinical order, then the rest sorted."""
    groups = list(dict.fromkeys(str(g) for g in groups))
    fixed = ["low", "high", *style.RESPONSE_ORDER, "all"]
    return [g for g in fixed if g in groups] + sorted(g for g in groups if g not in fixed)


def group_colours(groups, cohort_colours: dict | None = None) -> dict[str, str]:
    palette = [style.OKABE_ITO[k] for k in ("green", "purple", "orange", "sky", "yellow", "blue")]
    out, k = {}, 0
    for g in groups:
        if g in style.GROUP_COLOURS:
            out[g] = style.GROUP_COLOURS[g]
        elif g in style.RESPONSE_COLOURS:
            out[g] = style.RESPONSE_COLOURS[g]
        elif cohort_colours and g in cohort_colours:
            out[g] = cohort_colours[g]
        else:
            out[g] = palette[k % len(palette)]
            k += 1
    return out


def grouping_title(stratifier: str) -> str:
    if stratifier in OVERALL:
        return ""
    var = stratifier.split(":")[0]
    for suffix in ("_median", "_tertiles", "_quartiles"):
        var = var[: -len(suffix)] if var.endswith(suffix) else var
    return fsettings.GROUPING_LABELS.get(var, var.replace("_", " ").capitalize())


def format_months(m: float) -> str:
    return "not reached" if not np.isfinite(m) else f"{m:.1f} mo"


def km_figure(km: pd.DataFrame, logrank: dict | None, cox: dict | None, title: str, endpoint: str,
              settings: dict | None = None, medians: dict | None = None, stratifier: str = "",
              cohort_colours: dict | None = None):
    """(Figure, {group: numbers at risk drawn at the x ticks}, ticks in months).

    ``km`` holds the rows of one cohort x endpoint x stratifier; ``medians`` maps group ->
    median survival in days (read off the curves where not given)."""
    s = fsettings.resolve(settings)
    dpm = float(s["days_per_month"])
    groups = group_order(km["group"]) if len(km) else []
    colours = group_colours(groups, cohort_colours)
    median_group_names = set(groups) <= {"low", "high"}
    lines = []
    if len(groups) > 1:
        stratified = bool(logrank) and logrank.get("test") == "stratified"
        lines.append(format_p(logrank.get("p") if logrank else None,
                              "log-rank p (stratified by cohort)" if stratified else "log-rank p"))
    if cox and len(groups) > 1:
        term = fsettings.term_label(str(cox.get("term", "")))
        if cox.get("status") == "ok":
            lines.append(f"Cox HR {cox['hr']:.2f} (95% CI {cox['hr_lower']:.2f}\u2013{cox['hr_upper']:.2f})"
                         f" per unit {term}")
        else:
            lines.append(f"Cox HR {cox.get('status', 'not fitted')}")
    # a long covariate name or reason wraps instead of running off the figure
    lines = [w for text in lines for w in textwrap.wrap(text, 72)]
    # layout in mm, top to bottom: title, statistics, legend, curves, time axis, number at risk
    n_rows = max(len(groups), 1)
    line = 3.2
    stats_lines = len(lines)
    legend_lines = n_rows + (1 if grouping_title(stratifier) else 0)
    top_mm = 2.0 + 4.5 + line * stats_lines + line * legend_lines + 3.0
    plot_mm, axis_mm, risk_mm = 40.0, 10.0, 4.5 + 3.0 * n_rows
    height = top_mm + plot_mm + axis_mm + risk_mm + 1.5
    with style.style_context():
        fig = style.new_figure(style.SINGLE_COLUMN_MM, height)
        frac = lambda mm: mm / height  # noqa: E731
        left, width = 0.19, 0.76
        ax = fig.add_axes([left, frac(height - top_mm - plot_mm), width, frac(plot_mm)])
        ax_risk = fig.add_axes([left, frac(1.5), width, frac(3.0 * n_rows)], sharex=ax)
        fig.text(0.02, 1 - frac(2.0), title, ha="left", va="top", fontweight="bold", fontsize=7.5)
        max_months = float(km["time_days"].max()) / dpm if len(km) else 1.0
        ticks = time_ticks(max_months)
        at_risk = {}
        for g in groups:
            t = km[km["group"] == g].sort_values("time_days", kind="mergesort")
            colour = colours[g]
            x = t["time_days"].to_numpy() / dpm
            n0 = int(t["at_risk"].iloc[0])
            med = (medians or {}).get(g)
            if med is None:
                med = km_stats.km_median(t)
            label = MEDIAN_GROUP_LABELS.get(g, g) if median_group_names or g == "all" else g
            ax.step(x, t["survival"], where="post", color=colour,
                    label=f"{label}: n = {n0}, median {format_months(med / dpm)}")
            ax.fill_between(x, t["ci_lower"], t["ci_upper"], step="post", color=colour, alpha=0.15, lw=0)
            cens = t["censored"].to_numpy() > 0
            ax.plot(x[cens], t["survival"].to_numpy()[cens], ls="none", marker="|", color=colour,
                    markersize=3.5, markeredgewidth=0.7)
            at_risk[g] = [int(v) for v in km_stats.at_risk_at(t, ticks * dpm)]
        if not groups:
            ax.text(0.5, 0.5, f"no patients with {endpoint} data", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(0, 1.03)
        ax.set_xlim(0, ticks[-1] if len(ticks) else 1)
        ax.set_xticks(ticks)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_ylabel(fsettings.endpoint_label(endpoint))
        ax.set_xlabel("Months since baseline", labelpad=2)
        if groups:
            # above the curves, where it hides none of them
            ax.legend(loc="upper left", bbox_to_anchor=(0.02, 1 - frac(6.5 + line * stats_lines + 0.5)),
                      bbox_transform=fig.transFigure, borderaxespad=0,
                      title=grouping_title(stratifier) or None, alignment="left", labelspacing=0.25,
                      handletextpad=0.5, title_fontproperties={"size": 6.5})
        # statistics between title and plot, where they hide no curve
        if lines:
            fig.text(0.02, 1 - frac(6.3), "\n".join(lines), ha="left", va="top", fontsize=6.5, linespacing=1.25)

        # number-at-risk table, one row per group, numbers centred on the x ticks
        ax_risk.set_ylim(n_rows - 0.5, -0.5)
        for row, g in enumerate(groups):
            for tick, n in zip(ticks, at_risk[g]):
                ax_risk.text(tick, row, str(n), ha="center", va="center_baseline", fontsize=6,
                             color=colours[g], gid=f"at_risk:{g}", clip_on=False)
        ax_risk.set_yticks(range(len(groups)))
        ax_risk.set_yticklabels(["All" if g == "all" else MEDIAN_GROUP_LABELS.get(g, g) for g in groups])
        for lab, g in zip(ax_risk.get_yticklabels(), groups):
            lab.set_color(colours[g])
        ax_risk.tick_params(axis="both", length=0, labelbottom=False)
        ax_risk.tick_params(axis="y", pad=10)  # clear of the numbers centred on x = 0
        for side in ("top", "right", "bottom", "left"):
            ax_risk.spines[side].set_visible(False)
        fig.text(0.02, frac(1.5 + 3.0 * n_rows + 0.6), "Number at risk", ha="left", va="bottom", fontsize=6.5)
    return fig, at_risk, ticks


def figure_keys(km: pd.DataFrame, logrank: pd.DataFrame, cox: pd.DataFrame) -> list[tuple[str, str]]:
    """Every (cohort, endpoint) in the tables: a set without patients still gets its figure."""
    keys = set()
    for df in (km, logrank, cox):
        keys |= set(zip(df["cohort"], df["endpoint"]))
    cohorts = sorted({c for c, _ in keys}, key=lambda c: (c == style.POOLED, c))
    return [(c, e) for c in cohorts for e in sorted({e for cc, e in keys if cc == c})]


def _stratifier_rows(df: pd.DataFrame, grouping: str) -> pd.Series:
    return df["stratifier"].isin(fsettings.km_stratifier_names(grouping))


def cox_row(cox: pd.DataFrame, cohort: str, endpoint: str, term: str) -> dict | None:
    """The univariable Cox row of ``term`` (stratified by cohort for the pooled set)."""
    sel = cox[(cox["cohort"] == cohort) & (cox["endpoint"] == endpoint) & (cox["term"] == term)
              & cox["model"].str.startswith("univariable")]
    sel = sel.sort_values("model", key=lambda m: m != "univariable", kind="mergesort")
    return sel.iloc[0].to_dict() if len(sel) else None


def medians_of(summary: pd.DataFrame | None, cohort, endpoint, grouping) -> dict | None:
    if summary is None or summary.empty:
        return None
    sel = summary[(summary["cohort"] == cohort) & (summary["endpoint"] == endpoint)
                  & _stratifier_rows(summary, grouping)]
    out = {}
    for _, r in sel.iterrows():
        out[r["group"]] = float(r["median_days"]) if pd.notna(r["median_days"]) else math.inf
    return out


def write_km_figures(survival_dir: Path, out_dir: Path, settings: dict | None = None,
                     cohorts: list[str] | None = None) -> list[Path]:
    """Write km_<cohort>_<endpoint>_<grouping>.pdf/.png under out_dir; return the files written."""
    s = fsettings.resolve(settings)
    survival_dir, out_dir = Path(survival_dir), Path(out_dir)
    km = read_survival_table(survival_dir / "km.csv", "km")
    logrank = read_survival_table(survival_dir / "logrank.csv", "logrank")
    cox = read_survival_table(survival_dir / "cox.csv", "cox")
    summary_path = survival_dir / "km_summary.csv"
    summary = read_survival_table(summary_path, None) if summary_path.exists() else None
    present = set(km["stratifier"])
    for grouping in s["km_groupings"]:
        if len(km) and not fsettings.km_stratifier_names(grouping) & present:
            raise ValueError(f"{survival_dir / 'km.csv'}: no stratifier {grouping!r} (it has "
                             f"{', '.join(sorted(present))}; set figures.km_groupings to those)")
    colours = style.cohort_colours(cohorts or km["cohort"].unique(), s["cohort_colours"])
    written = []
    for cohort, endpoint in figure_keys(km, logrank, cox):
        for grouping in s["km_groupings"]:
            sel = km[(km["cohort"] == cohort) & (km["endpoint"] == endpoint) & _stratifier_rows(km, grouping)]
            lr = logrank[(logrank["cohort"] == cohort) & (logrank["endpoint"] == endpoint)
                         & _stratifier_rows(logrank, grouping)]
            if "test" in lr.columns:  # the pooled set is stratified by cohort, as its Cox model is
                pooled = (lr["test"] == "stratified").any() and cohort == style.POOLED
                lr = lr[lr["test"] == ("stratified" if pooled else "logrank")]
            fig, _, _ = km_figure(sel, lr.iloc[0].to_dict() if len(lr) else None,
                                  cox_row(cox, cohort, endpoint, s["km_hr_term"]), style.cohort_title(cohort),
                                  endpoint, s, medians_of(summary, cohort, endpoint, grouping), grouping, colours)
            stem = out_dir / names.km_stem(cohort, endpoint, grouping)
            written += style.save(fig, stem, s["formats"], int(s["dpi"]))
            log.info("wrote %s", stem.name)
    return written
