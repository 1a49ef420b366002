"""Study design: design/power_curve.pdf + .png from design/power.csv.

Power (with its Clopper-Pearson 95 % CI) against the number of patients, one panel per follow-up
design (scans per patient), the true burden (open markers, dashed, drawn a little to the left)
beside the burden as the segmentation measures it (filled, solid, a little to the right), the
target power as a grey line. The gap between the two
curves is what the imaging error costs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tumorburden.figures import settings as fsettings
from tumorburden.figures import style

BURDEN_STYLE = {
    "true": {"color": style.OKABE_ITO["blue"], "linestyle": "--", "marker": "o", "markerfacecolor": "white",
             "label": "True burden"},
    "measured": {"color": style.OKABE_ITO["vermillion"], "linestyle": "-", "marker": "o",
                 "label": "Measured burden (segmentation error)"},
}


def power_curve(power: pd.DataFrame, stem: Path, target_power: float, settings: dict | None = None) -> list[Path]:
    s = fsettings.resolve(settings)
    designs = sorted(power["max_followups"].unique())
    with style.style_context():
        width = style.SINGLE_COLUMN_MM if len(designs) == 1 else style.DOUBLE_COLUMN_MM
        fig = style.new_figure(width, 70.0)
        axes = fig.subplots(1, len(designs), sharey=True, squeeze=False)[0]
        sizes = power["n_patients"]
        dodge = 0.012 * float(sizes.max() - sizes.min() or sizes.max())  # equal powers stay both visible
        for ax, f in zip(axes, designs):
            for shift, (name, kw) in zip((-dodge, dodge), BURDEN_STYLE.items()):
                g = power[(power["max_followups"] == f) & (power["burden"] == name)].sort_values("n_patients")
                if g.empty:
                    continue
                err = [g["power"] - g["power_lower"], g["power_upper"] - g["power"]]
                ax.errorbar(g["n_patients"] + shift, g["power"], yerr=err, capsize=2, **kw)
            ax.axhline(target_power, color=style.GREY, linewidth=0.8)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("Patients")
            hr = float(power["hr"].iloc[0])
            ax.set_title(f"HR {hr:.3g} per ln burden, up to {int(f)} follow-up scans")
        axes[0].set_ylabel("Power (95 % CI)")
        axes[0].legend(loc="best")
        fig.tight_layout()
    return style.save(fig, stem, s["formats"], int(s["dpi"]))
