"""Per-patient dynamic prediction figure: ``dynamic_<patient_id>_<endpoint>`` (.pdf + .png), from
survival/dynamic_predictions.parquet and tables/burden.parquet.

One column per scan with a prediction (at most MAX_COLUMNS, the latest ones dropped): on top the
patient's total tumour volume over time, the scans known at that column's scan in colour and the
later ones in grey; below, each model's predicted survival from the scan's day (day 0 for the
baseline scan) over the window, i.e. the updated prediction. The patient is named by study ID
only; predictions come from the patient's own cohort's models.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.figures import names
from tumorburden.figures import settings as fsettings
from tumorburden.figures import style

log = logging.getLogger(__name__)

MAX_COLUMNS = 8
MODEL_COLOURS = [style.OKABE_ITO[k] for k in ("blue", "orange", "green", "purple", "vermillion")]


def dynamic_figure(patient_id: str, endpoint: str, predictions: pd.DataFrame, burden: pd.DataFrame,
                   outcome: tuple[float, int] | None = None, dpm: float = 30.4375):
    """The figure and what was drawn: {scan_id: {model: number of curve points}}."""
    scans = burden[burden["patient_id"] == patient_id].sort_values("days", kind="mergesort")
    p = predictions[(predictions["patient_id"] == patient_id) & (predictions["endpoint"] == endpoint)
                    & (predictions["cohort"] != style.POOLED)]
    p = p[np.isclose(p["landmark_days"], p["scan_id"].map(scans.set_index("scan_id")["days"]).clip(lower=0.0))]
    columns = [s for s in scans["scan_id"] if s in set(p["scan_id"])][:MAX_COLUMNS]
    models = list(dict.fromkeys(p["model"]))
    colours = {m: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, m in enumerate(models)}
    drawn: dict = {}
    n = max(1, len(columns))
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM if n > 2 else style.SINGLE_COLUMN_MM, 92.0)
        axes = fig.subplots(2, n, squeeze=False, sharey="row", sharex=True)
        fig.subplots_adjust(left=0.09 if n > 2 else 0.16, right=0.985, top=0.87, bottom=0.19, wspace=0.08,
                            hspace=0.12)
        months = scans["days"].to_numpy(float) / dpm
        volume = scans["total_volume_ml"].to_numpy(float)
        window = float(p["window_days"].max()) if len(p) else 0.0
        right = max([months.max() if len(months) else 0.0] + [(float(p["landmark_days"].max()) + window) / dpm
                                                              if len(p) else 0.0])
        for j, scan_id in enumerate(columns or [None]):
            top, bottom = axes[0, j], axes[1, j]
            if scan_id is None:
                bottom.text(0.5, 0.5, "no prediction", transform=bottom.transAxes, ha="center")
                break
            day = float(scans.loc[scans["scan_id"] == scan_id, "days"].iloc[0])
            known = scans["days"].to_numpy(float) <= day
            top.plot(months, volume, color=style.GREY, lw=0.6, marker="o", ms=2, zorder=1)
            top.plot(months[known], volume[known], color=style.OKABE_ITO["black"], lw=0.9, marker="o", ms=2.5,
                     zorder=2, gid=f"burden:{scan_id}")
            top.axvline(day / dpm, color=style.GREY, lw=0.5, ls="--")
            top.set_title(f"{day / dpm:.1f} mo", loc="center")
            drawn[scan_id] = {}
            for m in models:
                c = p[(p["scan_id"] == scan_id) & (p["model"] == m)].sort_values("window_days")
                if c.empty:
                    continue
                s = float(c["landmark_days"].iloc[0])
                x = np.concatenate([[s], s + c["window_days"].to_numpy(float)]) / dpm
                y = np.concatenate([[1.0], c["predicted_survival"].to_numpy(float)])
                bottom.plot(x, y, color=colours[m], lw=0.9, marker="o", ms=1.8, label=m if j == 0 else None,
                            gid=f"prediction:{scan_id}:{m}")
                drawn[scan_id][m] = len(c)
            if outcome is not None:
                t, event = outcome
                bottom.axvline(t / dpm, color=style.OKABE_ITO["vermillion"] if event else style.GREY, lw=0.6,
                               ls="-" if event else ":")
            bottom.set_ylim(0, 1.02)
            bottom.set_xlim(min(0.0, months.min() if len(months) else 0.0), right * 1.02)
            bottom.set_xlabel("Months")
        axes[0, 0].set_ylabel("Tumour volume (mL)")
        axes[1, 0].set_ylabel(f"Predicted\n{endpoint.upper()}")
        if models:
            fig.legend(loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(models), 3))
        fig.text(0.01, 0.995, f"{patient_id}: {fsettings.endpoint_label(endpoint).lower()}, updated at each scan",
                 va="top", fontweight="bold", fontsize=7.5)
    return fig, drawn


def write_dynamic_figures(predictions: Path, burden: Path, clinical: Path | None, out_dir: Path, patients,
                          endpoints, settings: dict | None = None) -> dict:
    s = fsettings.resolve(settings)
    pred = tables.read(predictions, "dynamic_prediction")
    scans = tables.read(burden, "burden")
    clin = pd.read_csv(clinical, sep="\t", dtype={"patient_id": str}) if clinical else None
    missing = [p for p in patients if p not in set(scans["patient_id"])]
    if missing:
        raise ValueError(f"figures dynamic: patient {missing[0]!r} has no scan in {burden} "
                         "(figures.dynamic_patients names study IDs of clinical.tsv)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for patient in patients:
        for endpoint in endpoints:
            outcome = None
            if clin is not None and f"{endpoint}_days" in clin:
                row = clin[clin["patient_id"] == patient]
                if len(row) and pd.notna(row[f"{endpoint}_days"].iloc[0]):
                    outcome = (float(row[f"{endpoint}_days"].iloc[0]), int(row[f"{endpoint}_event"].iloc[0]))
            fig, drawn = dynamic_figure(patient, endpoint, pred, scans, outcome, float(s["days_per_month"]))
            stem = out_dir / names.dynamic_stem(patient, endpoint)
            style.save(fig, stem, s["formats"], int(s["dpi"]))
            result[(patient, endpoint)] = drawn
            log.info("%s %s: %d scan column(s)", patient, endpoint, len(drawn))
    return result
