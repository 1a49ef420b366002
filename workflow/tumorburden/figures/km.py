"""Kaplan-Meier figures with number at risk: figures/km_<cohort>_<endpoint>.pdf + .png.

Drawn only from the survival tables (km.csv, logrank.csv, cox.csv), so a figure always shows
what the tables say: step curves of the burden groups (stratifier baseline_volume_ml:median)
with their 95 % bands, censoring ticks, the number at risk at each x tick (read off km.csv),
the log-rank p and the Cox hazard ratio per unit of ln baseline volume. Time in months
(days / 30.4375). One figure per cohort x endpoint found in the tables.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from tumorburden import tables
from tumorburden.figures import style
from tumorburden.survival import km as km_stats

log = logging.getLogger(__name__)

DEFAULTS = {
    "stratifier": "baseline_volume_ml:median",
    "width_mm": style.SINGLE_COLUMN_MM,
    "height_mm": 78.0,
    "dpi": 300,
    "formats": ["pdf", "png"],
    "days_per_month": 30.4375,
}

GROUP_LABELS = {"low": "Burden \u2264 median", "high": "Burden > median", "all": "All patients"}
RISK_LABELS = {"low": "\u2264 median", "high": "> median", "all": "All"}
ENDPOINT_LABELS = {"pfs": "Progression-free survival", "os": "Overall survival"}


def read_survival_table(path: Path, name: str) -> pd.DataFrame:
    """A survival CSV with its key columns as strings (a cohort called '2024' stays '2024')."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: survival table not found (run `tumorburden survival` first)")
    keys = {c: str for c in ("cohort", "endpoint", "stratifier", "group", "groups", "model", "term", "status")}
    df = pd.read_csv(path, dtype=keys, keep_default_na=False, na_values=[""])
    return tables.check(tables.conform(df, name), name, str(path))


def format_p(p: float) -> str:
    if not np.isfinite(p):
        return "log-rank p not tested"
    if p < 0.001:
        return "log-rank p < 0.001"
    return f"log-rank p = {p:.2g}" if p < 0.1 else f"log-rank p = {p:.2f}"


def time_ticks(max_months: float) -> np.ndarray:
    """Round month ticks from 0 up to the first tick at or past the last follow-up time."""
    hi = max(max_months, 1.0)
    ticks = MaxNLocator(nbins=6, steps=[1, 2, 3, 6, 10], integer=True).tick_values(0, hi)
    ticks = ticks[ticks >= 0]
    past = np.flatnonzero(ticks >= hi - 1e-9)
    return ticks[: past[0] + 1] if len(past) else ticks


def km_figure(km: pd.DataFrame, logrank: dict | None, cox: dict | None, title: str, endpoint: str,
              settings: dict | None = None):
    """(Figure, {group: numbers at risk drawn at the x ticks}, ticks in months)."""
    s = {**DEFAULTS, **(settings or {})}
    dpm = float(s["days_per_month"])
    groups = [g for g in ("low", "high", "all") if g in set(km["group"])]
    with style.style_context():
        fig = style.new_figure(s["width_mm"], s["height_mm"])
        gs = fig.add_gridspec(2, 1, height_ratios=[4.2, 0.35 + 0.3 * max(len(groups), 1)], hspace=0.32,
                              left=0.2, right=0.96, top=0.91, bottom=0.03)
        ax = fig.add_subplot(gs[0])
        ax_risk = fig.add_subplot(gs[1], sharex=ax)
        ax.set_title(title, loc="left", fontweight="bold")
        max_months = float(km["time_days"].max()) / dpm if len(km) else 1.0
        ticks = time_ticks(max_months)
        at_risk = {}
        for g in groups:
            t = km[km["group"] == g].sort_values("time_days", kind="mergesort")
            colour = style.GROUP_COLOURS.get(g, style.OKABE_ITO["black"])
            x = t["time_days"].to_numpy() / dpm
            n0 = int(t["at_risk"].iloc[0])
            ax.step(x, t["survival"], where="post", color=colour, label=f"{GROUP_LABELS.get(g, g)} (n = {n0})")
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
        ax.set_ylabel(ENDPOINT_LABELS.get(endpoint, endpoint.upper()) + " probability")
        ax.set_xlabel("Months since baseline", labelpad=2)
        if groups:
            ax.legend(loc="upper right", handlelength=1.4, borderaxespad=0.2)
        lines = [format_p(logrank["p"]) if logrank else "log-rank p not tested"]
        if cox and cox.get("status") == "ok":
            lines.append(f"HR {cox['hr']:.2f} (95% CI {cox['hr_lower']:.2f}\u2013{cox['hr_upper']:.2f})"
                         " per ln mL")
        elif cox:
            lines.append("HR " + str(cox.get("status", "not fitted")))
        # statistics above the plot, where they hide no curve
        ax.set_title("\n".join(lines), loc="right", fontsize=6.5, pad=3)

        # number-at-risk table, one row per group, numbers centred on the x ticks
        ax_risk.set_ylim(max(len(groups), 1) - 0.5, -0.5)
        for row, g in enumerate(groups):
            colour = style.GROUP_COLOURS.get(g, style.OKABE_ITO["black"])
            for tick, n in zip(ticks, at_risk[g]):
                ax_risk.text(tick, row, str(n), ha="center", va="center_baseline", fontsize=6.5, color=colour,
                             gid=f"at_risk:{g}")
        ax_risk.set_yticks(range(len(groups)))
        ax_risk.set_yticklabels([RISK_LABELS.get(g, g) for g in groups])
        for lab, g in zip(ax_risk.get_yticklabels(), groups):
            lab.set_color(style.GROUP_COLOURS.get(g, "black"))
        ax_risk.tick_params(axis="both", length=0, labelbottom=False)
        ax_risk.tick_params(axis="y", pad=9)  # clear of the numbers centred on x = 0
        for side in ("top", "right", "bottom", "left"):
            ax_risk.spines[side].set_visible(False)
        ax_risk.set_title("Number at risk", loc="left", fontsize=6.5, pad=2)
    return fig, at_risk, ticks


def figure_keys(km: pd.DataFrame, logrank: pd.DataFrame, cox: pd.DataFrame) -> list[tuple[str, str]]:
    """Every (cohort, endpoint) in the tables: a set without patients still gets its figure."""
    keys = set()
    for df in (km, logrank, cox):
        keys |= set(zip(df["cohort"], df["endpoint"]))
    cohorts = sorted({c for c, _ in keys}, key=lambda c: (c == "all", c))
    return [(c, e) for c in cohorts for e in sorted({e for cc, e in keys if cc == c})]


def write_km_figures(survival_dir: Path, out_dir: Path, settings: dict | None = None) -> list[Path]:
    """Write km_<cohort>_<endpoint>.pdf/.png under out_dir; return the files written."""
    s = {**DEFAULTS, **(settings or {})}
    survival_dir, out_dir = Path(survival_dir), Path(out_dir)
    km = read_survival_table(survival_dir / "km.csv", "km")
    logrank = read_survival_table(survival_dir / "logrank.csv", "logrank")
    cox = read_survival_table(survival_dir / "cox.csv", "cox")
    written = []
    for cohort, endpoint in figure_keys(km, logrank, cox):
        sel = km[(km["cohort"] == cohort) & (km["endpoint"] == endpoint) & (km["stratifier"] == s["stratifier"])]
        lr = logrank[(logrank["cohort"] == cohort) & (logrank["endpoint"] == endpoint)
                     & (logrank["stratifier"] == s["stratifier"])]
        cx = cox[(cox["cohort"] == cohort) & (cox["endpoint"] == endpoint)
                 & (cox["term"] == "log_baseline_volume_ml")]
        title = "All cohorts" if cohort == "all" else cohort.replace("_", " ").capitalize()
        fig, _, _ = km_figure(sel, lr.iloc[0].to_dict() if len(lr) else None,
                              cx.iloc[0].to_dict() if len(cx) else None, title, endpoint, s)
        written += style.save(fig, out_dir / f"km_{cohort}_{endpoint}", s["formats"], int(s["dpi"]))
        log.info("wrote km_%s_%s", cohort, endpoint)
    return written

