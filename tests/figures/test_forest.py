import math

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.figures import forest


def cox_rows():
    """cox.csv as the survival stage writes it (issue-6 contract: uni- and multivariable models)."""
    rows = [
        ("lung", "univariable", "log_baseline_volume_ml", 1.6, 1.1, 2.3, 0.01, 40, 25, "ok"),
        ("lung", "multivariable", "log_baseline_volume_ml", 1.5, 1.0, 2.2, 0.04, 38, 24, "ok"),
        ("lung", "multivariable", "ecog", 0.8, 0.5, 1.3, 0.40, 38, 24, "ok"),
        ("melanoma", "univariable", "log_baseline_volume_ml", math.nan, math.nan, math.nan, math.nan, 6, 2,
         "not fitted: too few patients (6 < 10)"),
        ("all", "univariable", "log_baseline_volume_ml", 1.55, 1.2, 2.0, 0.0004, 46, 27, "ok"),
    ]
    df = pd.DataFrame(rows, columns=["cohort", "model", "term", "hr", "hr_lower", "hr_upper", "p", "n", "events",
                                     "status"]).assign(endpoint="pfs")
    df["coef"] = np.log(df["hr"])
    df["strata"] = np.where(df["cohort"] == "all", "cohort", None)
    df = df.assign(se=0.2, wald_p=df["p"], lr_p=df["p"], score_p=df["p"], zph_global_p=0.5, nonproportional=False)
    return tables.conform(df, "cox")


def texts(fig):
    return [t.get_text() for t in fig.texts]


def test_rows_are_cohort_then_model_then_term_with_the_pooled_set_last():
    rows = forest.forest_rows(cox_rows())
    kinds = [(r["kind"], r["label"]) for r in rows]
    assert kinds[:6] == [("cohort", "Lung"), ("model", "Univariable"), ("term", "ln baseline tumour volume (mL)"),
                         ("model", "Multivariable"), ("term", "ln baseline tumour volume (mL)"),
                         ("term", "ECOG performance status")]
    assert kinds[-3:] == [("cohort", "All cohorts"), ("model", "Univariable, stratified by cohort"),
                          ("term", "ln baseline tumour volume (mL)")]


def test_each_fitted_row_draws_its_hr_and_ci_on_a_log_axis_with_n_events_and_p():
    cox = cox_rows()
    fig, rows = forest.forest_figure(cox, "pfs")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    markers = {line.get_gid(): line.get_xdata()[0] for line in ax.get_lines() if line.get_gid()}
    assert markers == {"hr:lung:log_baseline_volume_ml": 1.5, "hr:lung:ecog": 0.8,
                       "hr:all:log_baseline_volume_ml": 1.55}  # the multivariable lung row comes after the uni
    t = texts(fig)
    assert "1.60 (1.10\u20132.30)" in t and "0.01" in t and "< 0.001" in t
    assert "38" in t and "24" in t and "46" in t and "27" in t
    # every HR and CI end is inside the axis
    lo, hi = ax.get_xlim()
    assert lo <= 0.5 and hi >= 2.3


def test_a_model_not_fitted_keeps_its_row_with_the_reason():
    fig, rows = forest.forest_figure(cox_rows(), "pfs")
    assert any("too few patients (6 < 10)" in t for t in texts(fig))
    mel = [r for r in rows if r["kind"] == "term" and r["cohort"] == "melanoma"]
    assert len(mel) == 1 and not np.isfinite(mel[0]["hr"])


def test_one_forest_per_endpoint_pfs_first(tmp_path):
    cox = pd.concat([cox_rows(), cox_rows().assign(endpoint="os")], ignore_index=True)
    tables.write(cox, tmp_path / "cox.csv", "cox")
    written = forest.write_forest_figures(tmp_path, tmp_path / "fig", {"formats": ["png"]})
    assert [p.name for p in written] == ["forest_pfs.png", "forest_os.png"]
    assert all(p.stat().st_size > 5000 for p in written)
