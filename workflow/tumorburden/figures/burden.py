"""Burden over time: spaghetti, waterfall and swimmer plots (figures/spaghetti, waterfall,
swimmer_<cohort>_p<page>), each as .pdf + .png.

Inputs: tables/burden (per scan), tables/features (per patient: baseline scan, best % change,
best response) and clinical.tsv (cohort, PFS/OS).

- % change from baseline of a scan = 100 (V - V_B) / V_B, V = total_volume_ml, V_B the
  patient's baseline scan (features.baseline_scan_id); burden.pct_change_volume when the burden
  table has it. Time = days from the baseline scan, in months (days / days_per_month).
- Colour = the patient's best response, ``figures.response`` of the features table (RECIST 1.1
  best overall response by default), in the shared response colours.
- Values above ``pct_change_cap`` are drawn at the cap with an upward arrow head, so one patient
  whose burden grows from a tiny baseline does not squash everyone else.
- Patients left out of a plot (no baseline burden, no follow-up) are counted in the panel.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tumorburden import tables
from tumorburden.figures import names
from tumorburden.figures import settings as fsettings
from tumorburden.figures import style
from tumorburden.figures.km import time_ticks
from tumorburden.figures.settings import swimmer_pages
from tumorburden.study import read_clinical_table

log = logging.getLogger(__name__)


def pct_change_series(burden: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """patient_id, scan_id, days_from_baseline, pct_change for every scan from baseline on.

    Scans of patients without a features row, before the baseline scan, or with a baseline
    burden of 0 (percent change undefined) are not returned."""
    base = features[["patient_id", "baseline_scan_id", "baseline_volume_ml"]].dropna(subset=["baseline_scan_id"])
    b = burden.merge(base, on="patient_id", how="inner")
    base_days = b.loc[b["scan_id"] == b["baseline_scan_id"], ["patient_id", "days"]].rename(
        columns={"days": "baseline_days"})
    b = b.merge(base_days, on="patient_id", how="inner")
    b = b[b["days"] >= b["baseline_days"]].copy()
    b["days_from_baseline"] = b["days"] - b["baseline_days"]
    if "pct_change_volume" in b.columns:
        b["pct_change"] = b["pct_change_volume"].astype(float)
    else:
        bv = b.loc[b["scan_id"] == b["baseline_scan_id"], ["patient_id", "total_volume_ml"]].rename(
            columns={"total_volume_ml": "v_b"})
        b = b.merge(bv, on="patient_id")
        with np.errstate(divide="ignore", invalid="ignore"):
            b["pct_change"] = np.where(b["v_b"] > 0, 100.0 * (b["total_volume_ml"] - b["v_b"]) / b["v_b"], np.nan)
    b = b[np.isfinite(b["pct_change"].to_numpy(dtype=float))]
    return b.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")[
        ["patient_id", "scan_id", "days_from_baseline", "pct_change"]].reset_index(drop=True)


def _cohort_panels(cohorts) -> list[str]:
    return sorted({str(c) for c in cohorts} - {style.POOLED})


def _response_of(features: pd.DataFrame, column: str) -> dict:
    if column not in features.columns:
        raise ValueError(f"features table has no column {column!r} (set figures.response to one of "
                         f"recist_bor, volumetric_response)")
    return dict(zip(features["patient_id"], features[column].fillna("NE").astype(str)))


def _response_legend(where, categories, loc="upper right", ncol=1, **kw):
    """A legend of the response categories present, in clinical order, on a Figure or Axes."""
    cats = [c for c in style.RESPONSE_ORDER if c in set(categories)] + sorted(
        set(categories) - set(style.RESPONSE_ORDER))
    handles = [Patch(facecolor=style.response_colour(c), edgecolor="none", label=c) for c in cats]
    return where.legend(handles=handles, loc=loc, ncol=ncol, columnspacing=0.8, handlelength=1.0, **kw)


def _top(values, cap, s) -> float:
    """Upper y limit: the largest value (at most the cap), and the PD threshold in view."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    hi = min(float(v.max()) if len(v) else 0.0, cap)
    pd_line = float(s.get("volumetric_pd_pct") or 0.0)
    return max(hi, pd_line if pd_line <= cap else 0.0, 20.0) * 1.1 + 5.0


def _capped(values, cap):
    v = np.asarray(values, dtype=float)
    return np.minimum(v, cap), v > cap


def spaghetti_figure(series: pd.DataFrame, features: pd.DataFrame, settings: dict | None = None,
                     cohort_colours: dict | None = None):
    """(Figure, {cohort: patients drawn}). One panel per cohort."""
    s = fsettings.resolve(settings)
    dpm, cap = float(s["days_per_month"]), float(s["pct_change_cap"])
    response = _response_of(features, s["response"])
    cohort_of = dict(zip(features["patient_id"], features["cohort"].astype(str)))
    cohorts = _cohort_panels(features["cohort"])
    colours = cohort_colours or style.cohort_colours(cohorts)
    drawn = {}
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM, 70.0)
        axes = fig.subplots(1, max(len(cohorts), 1), sharey=True, squeeze=False)[0]
        fig.subplots_adjust(left=0.09, right=0.985, top=0.80, bottom=0.16, wspace=0.08)
        xmax = max(float(series["days_from_baseline"].max()) / dpm if len(series) else 1.0, 1.0)
        ticks = time_ticks(xmax)
        # many patients: thinner lines without scan markers, so the bundle stays legible
        many = series["patient_id"].nunique() > 100
        thin = {"lw": 0.45, "marker": None} if many else {"lw": 0.8, "marker": "o", "markersize": 1.8}
        for ax, cohort in zip(axes, cohorts):
            ids = sorted(p for p, c in cohort_of.items() if c == cohort)
            shown = [p for p in ids if p in set(series["patient_id"])]
            drawn[cohort] = shown
            for p in shown:
                t = series[series["patient_id"] == p]
                x = t["days_from_baseline"].to_numpy() / dpm
                y, over = _capped(t["pct_change"], cap)
                c = style.response_colour(response.get(p, "NE"))
                ax.plot(x, y, color=c, alpha=0.9, gid=f"patient:{p}", **thin)
                if over.any():
                    ax.plot(x[over], y[over], ls="none", marker="^", markersize=3.5, color=c)
            ax.axhline(0, color="0.3", lw=0.5, zorder=0)
            for thr in (s.get("volumetric_pr_pct"), s.get("volumetric_pd_pct")):
                if thr is not None and -100 <= float(thr) <= cap:
                    ax.axhline(float(thr), color="0.5", lw=0.5, ls=(0, (3, 2)), zorder=0)
            ax.set_title(f"{style.cohort_title(cohort)} (n = {len(shown)})", loc="left", color=colours.get(cohort),
                         fontweight="bold")
            missing = len(ids) - len(shown)
            if missing:
                ax.text(0.99, 0.02, f"{missing} patient(s) without baseline burden not shown", transform=ax.transAxes,
                        ha="right", va="bottom", fontsize=5.5, color="0.35")
            ax.set_xticks(ticks)
            ax.set_xlim(0, ticks[-1])
            ax.set_xlabel("Months since baseline")
        axes[0].set_ylim(-105, _top(series["pct_change"], cap, s))
        axes[0].set_ylabel("Change in total tumour volume\nfrom baseline (%)")
        cats = {response.get(p, "NE") for ps in drawn.values() for p in ps}
        _response_legend(fig, cats or style.RESPONSE_ORDER, loc="upper right", ncol=6,
                         bbox_to_anchor=(0.985, 0.985))
        fig.text(0.09, 0.965, f"Burden over time, coloured by {_response_name(s['response'])}", fontweight="bold",
                 fontsize=7.5, va="top")
        note = "Dashed: volumetric PR / PD thresholds"
        if s.get("volumetric_pr_pct") is not None:
            note += f" ({float(s['volumetric_pr_pct']):+.0f} % / {float(s['volumetric_pd_pct']):+.0f} %)"
        fig.text(0.09, 0.905, note + f"; \u25b2 above {cap:.0f} %", fontsize=5.5, color="0.35", va="top")
    return fig, drawn


def _response_name(column: str) -> str:
    return {"recist_bor": "RECIST 1.1 best overall response",
            "volumetric_response": "volumetric best response"}.get(column, column.replace("_", " "))


def waterfall_figure(features: pd.DataFrame, settings: dict | None = None, cohort_colours: dict | None = None):
    """(Figure, {cohort: best % change of the bars, left to right}). One panel per cohort."""
    s = fsettings.resolve(settings)
    cap = float(s["pct_change_cap"])
    response = _response_of(features, s["response"])
    cohorts = _cohort_panels(features["cohort"])
    colours = cohort_colours or style.cohort_colours(cohorts)
    counts = [int((features["cohort"] == c).sum()) for c in cohorts]
    drawn = {}
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM, 68.0)
        axes = fig.subplots(1, max(len(cohorts), 1), sharey=True, squeeze=False,
                            gridspec_kw={"width_ratios": [max(n, 1) for n in counts] or [1]})[0]
        fig.subplots_adjust(left=0.09, right=0.985, top=0.80, bottom=0.08, wspace=0.06)
        for ax, cohort in zip(axes, cohorts):
            f = features[features["cohort"] == cohort]
            has = f[np.isfinite(f["best_pct_change"].to_numpy(dtype=float))]
            has = has.sort_values(["best_pct_change", "patient_id"], ascending=[False, True], kind="mergesort")
            values = has["best_pct_change"].to_numpy(dtype=float)
            drawn[cohort] = values.tolist()
            y, over = _capped(values, cap)
            x = np.arange(len(values))
            cols = [style.response_colour(response.get(p, "NE")) for p in has["patient_id"]]
            ax.bar(x, y, width=0.8, color=cols, edgecolor="none", gid=f"bars:{cohort}")
            if over.any():
                ax.plot(x[over], y[over] + cap * 0.03, ls="none", marker="^", markersize=3, color="0.2")
            ax.axhline(0, color="0.2", lw=0.5)
            for thr in (s.get("volumetric_pr_pct"), s.get("volumetric_pd_pct")):
                if thr is not None and -100 <= float(thr) <= cap:
                    ax.axhline(float(thr), color="0.5", lw=0.5, ls=(0, (3, 2)), zorder=0)
            ax.set_xticks([])
            ax.spines["bottom"].set_visible(False)
            ax.set_xlim(-0.7, max(len(values), 1) - 0.3)
            ax.set_title(f"{style.cohort_title(cohort)} (n = {len(values)})", loc="left", color=colours.get(cohort),
                         fontweight="bold")
            left_out = len(f) - len(values)
            if left_out:
                ax.text(0.99, 0.98, f"{left_out} without follow-up\nnot shown", transform=ax.transAxes, ha="right",
                        va="top", fontsize=5.5, color="0.35")
        axes[0].set_ylim(-105, _top(features["best_pct_change"], cap, s))
        axes[0].set_ylabel("Best change in total tumour\nvolume from baseline (%)")
        cats = {response.get(p, "NE") for p in features.loc[features["best_pct_change"].notna(), "patient_id"]}
        _response_legend(fig, cats, loc="upper right", ncol=6, bbox_to_anchor=(0.985, 0.985))
        fig.text(0.09, 0.965, f"Best % change per patient, coloured by {_response_name(s['response'])}",
                 fontweight="bold", fontsize=7.5, va="top")
        fig.text(0.09, 0.905, "One bar per patient; dashed: volumetric PR / PD thresholds"
                 f"; \u25b2 above {cap:.0f} %", fontsize=5.5, color="0.35", va="top")
    return fig, drawn


def swimmer_figure(patients: pd.DataFrame, burden: pd.DataFrame, features: pd.DataFrame, title: str,
                   settings: dict | None = None, colour: str = "black"):
    """(Figure, rows top to bottom as dicts). ``patients``: clinical rows (patient_id, pfs_*, os_*)."""
    s = fsettings.resolve(settings)
    dpm = float(s["days_per_month"])
    response = _response_of(features, s["response"]) if len(features) else {}
    scans = burden.sort_values(["patient_id", "days"], kind="mergesort")
    rows = []
    for _, p in patients.iterrows():
        pid = p["patient_id"]
        ps = scans[scans["patient_id"] == pid]
        ends = [float(p.get(c)) for c in ("os_days", "pfs_days") if pd.notna(p.get(c))]
        end = max(ends + ps["days"].tolist() + [0.0])
        rows.append({"patient_id": pid, "end_days": end, "scan_days": ps["days"].tolist(),
                     "scan_response": ps["recist_response"].tolist() if "recist_response" in ps.columns else None,
                     "new_lesion_days": ps.loc[ps["n_new_lesions"].fillna(0) > 0, "days"].tolist(),
                     "progression_days": float(p["pfs_days"]) if p.get("pfs_event") == 1 else None,
                     "death_days": float(p["os_days"]) if p.get("os_event") == 1 else None,
                     "alive": p.get("os_event") == 0, "response": response.get(pid)})
    rows.sort(key=lambda r: (-r["end_days"], r["patient_id"]))
    n = max(len(rows), 1)
    cats = [c for c in style.RESPONSE_ORDER if c in {r["response"] for r in rows}]
    # mm, top to bottom: title, bars, time axis, legend (two rows)
    top_mm, axis_mm, legend_mm = 8.0, 10.0, 10.0
    row_mm = min(3.0, (style.MAX_HEIGHT_MM - top_mm - axis_mm - legend_mm) / n)  # a page at most
    height = top_mm + row_mm * n + axis_mm + legend_mm
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM, height)
        ax = fig.add_axes([0.085, (axis_mm + legend_mm) / height, 0.895, row_mm * n / height])
        ax.set_ylim(n - 0.5, -0.5)
        lo = min([0.0] + [d for r in rows for d in r["scan_days"]]) / dpm
        hi = max([1.0] + [r["end_days"] for r in rows]) / dpm
        for i, r in enumerate(rows):
            bar = style.response_colour(r["response"]) if r["response"] else "0.75"
            ax.barh(i, r["end_days"] / dpm, left=0, height=0.62, color=bar, alpha=0.45, edgecolor="none",
                    gid=f"bar:{r['patient_id']}")
            sd = np.asarray(r["scan_days"], dtype=float) / dpm
            if r["scan_response"] is not None:
                for x, resp in zip(sd, r["scan_response"]):
                    if resp in style.RESPONSE_COLOURS:
                        ax.plot(x, i, ls="none", marker="o", markersize=2.8, color=style.response_colour(resp),
                                markeredgecolor="black", markeredgewidth=0.3)
                    else:  # pre-baseline / baseline
                        ax.plot(x, i, ls="none", marker="|", markersize=4, color="black", markeredgewidth=0.7)
            else:
                ax.plot(sd, [i] * len(sd), ls="none", marker="|", markersize=4, color="black", markeredgewidth=0.7,
                        gid=f"scans:{r['patient_id']}")
            if r["new_lesion_days"]:
                nd = np.asarray(r["new_lesion_days"], dtype=float) / dpm
                ax.plot(nd, [i - 0.42] * len(nd), ls="none", marker="v", markersize=2.6, color="black")
            if r["progression_days"] is not None:
                ax.plot(r["progression_days"] / dpm, i, ls="none", marker="D", markersize=3,
                        markerfacecolor="white", markeredgecolor=style.RESPONSE_COLOURS["PD"], markeredgewidth=0.9)
            if r["death_days"] is not None:
                ax.plot(r["death_days"] / dpm, i, ls="none", marker="X", markersize=3.8, color="black",
                        markeredgewidth=0)
            elif r["alive"]:
                ax.plot(r["end_days"] / dpm + (hi - lo) * 0.012, i, ls="none", marker=">", markersize=2.6, color="0.3")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r["patient_id"] for r in rows], fontsize=5 if n > 40 else 5.5)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ticks = time_ticks(hi * 1.02)
        ax.set_xticks(ticks)
        ax.set_xlim(min(lo, 0) - (ticks[-1] - lo) * 0.01, ticks[-1])
        ax.set_xlabel("Months since baseline")
        ax.axvline(0, color="0.3", lw=0.5, zorder=0)
        fig.text(0.085, 1 - 2.0 / height, title, ha="left", va="top", fontweight="bold", color=colour, fontsize=7.5)
        handles = [Line2D([], [], ls="none", marker="|", markersize=4, color="black", markeredgewidth=0.7, label="Scan"),
                   Line2D([], [], ls="none", marker="v", markersize=2.6, color="black", label="New lesion"),
                   Line2D([], [], ls="none", marker="D", markersize=3, markerfacecolor="white",
                          markeredgecolor=style.RESPONSE_COLOURS["PD"], label="Progression (PFS event)"),
                   Line2D([], [], ls="none", marker="X", markersize=3.8, color="black", label="Death"),
                   Line2D([], [], ls="none", marker=">", markersize=2.6, color="0.3", label="Alive at last follow-up")]
        handles += [Patch(facecolor=style.response_colour(c), alpha=0.45, edgecolor="none",
                          label=f"{style.RESPONSE_LABELS[c]} ({c})") for c in cats]
        fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.085, 0.5 / height), ncol=5,
                   columnspacing=1.2, handletextpad=0.4, borderaxespad=0)
        fig.text(0.98, 1 - 2.0 / height, f"Bar colour: {_response_name(s['response'])}", ha="right", va="top",
                 fontsize=6, color="0.3")
    return fig, rows


def write_burden_figures(burden_path: Path, features_path: Path, clinical_path: Path, out_dir: Path,
                         settings: dict | None = None) -> list[Path]:
    from tumorburden.kinetics.burden import DEFAULTS as KINETICS

    # the thresholds are kinetics' (the rule passes the config's; these are their defaults)
    s = fsettings.resolve({"volumetric_pr_pct": KINETICS["volumetric_pr_pct"],
                           "volumetric_pd_pct": KINETICS["volumetric_pd_pct"], **(settings or {})})
    out_dir = Path(out_dir)
    burden = tables.read(burden_path, "burden")
    features = tables.read(features_path, "features")
    clinical = read_clinical_table(clinical_path)
    features = features.drop(columns=["cohort"]).merge(clinical[["patient_id", "cohort"]], on="patient_id")
    colours = style.cohort_colours(clinical["cohort"].unique(), s["cohort_colours"])
    written = []
    series = pct_change_series(burden, features)
    fig, _ = spaghetti_figure(series, features, s, colours)
    written += style.save(fig, out_dir / names.SPAGHETTI_STEM, s["formats"], int(s["dpi"]))
    fig, _ = waterfall_figure(features, s, colours)
    written += style.save(fig, out_dir / names.WATERFALL_STEM, s["formats"], int(s["dpi"]))
    per_page = int(s["swimmer_max_patients"])
    for cohort, pages in swimmer_pages(clinical, per_page).items():
        pts = clinical[clinical["cohort"].astype(str) == cohort].sort_values("patient_id", kind="mergesort")
        for page in range(pages):
            chunk = pts.iloc[page * per_page:(page + 1) * per_page]
            title = style.cohort_title(cohort) + (f" (page {page + 1} of {pages})" if pages > 1 else "")
            fig, _ = swimmer_figure(chunk, burden[burden["patient_id"].isin(chunk["patient_id"])],
                                    features[features["patient_id"].isin(chunk["patient_id"])], title, s,
                                    colours.get(cohort, "black"))
            written += style.save(fig, out_dir / names.swimmer_stem(cohort, page + 1), s["formats"], int(s["dpi"]))
    log.info("wrote %d burden figures", len(written) // max(len(s["formats"]), 1))
    return written
