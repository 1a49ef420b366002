import math

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.figures import discrimination as disc


def performance():
    rows = []
    for cohort in ("lung", "melanoma", "all"):
        for endpoint in ("os", "pfs"):
            for k, feature in enumerate(("baseline_volume_ml", "baseline_sld_mm")):
                c = 0.6 + 0.05 * k + (0.01 if endpoint == "pfs" else 0)
                rows.append({"cohort": cohort, "endpoint": endpoint, "feature": feature, "n": 40, "events": 20,
                             "c_index": c, "c_index_lower": c - 0.1, "c_index_upper": c + 0.1, "c_index_uno": c - 0.01,
                             "c_index_uno_lower": c - 0.12, "c_index_uno_upper": c + 0.1, "status": "ok"})
    rows.append({"cohort": "melanoma", "endpoint": "os", "feature": "tgr_post", "n": 3, "events": 1,
                 **{k: math.nan for k in ("c_index", "c_index_lower", "c_index_upper", "c_index_uno",
                                          "c_index_uno_lower", "c_index_uno_upper")},
                 "status": "not computed: too few patients (3 < 10)"})
    return tables.conform(pd.DataFrame(rows), "performance")


def test_every_computed_c_index_is_drawn_at_its_value():
    perf = performance()
    fig, drawn = disc.c_index_figure(perf)
    ok = perf[perf["status"] == "ok"]
    assert drawn == {(r.cohort, r.endpoint, r.feature): r.c_index for r in ok.itertuples()}
    # pfs panel first, then os
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["Progression-free survival", "Overall survival"]
    assert any("too few patients (3 < 10)" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_recist_versus_volumetric_difference_panel_from_the_difference_table():
    diff = pd.DataFrame({"cohort": ["lung", "lung"], "endpoint": ["pfs", "os"], "feature_a": "baseline_volume_ml",
                         "feature_b": "baseline_sld_mm", "difference": [0.04, -0.02], "lower": [-0.05, -0.1],
                         "upper": [0.12, 0.06]})
    fig, drawn = disc.c_index_figure(performance(), diff)
    assert drawn[("lung", "pfs", "baseline_volume_ml - baseline_sld_mm")] == 0.04
    assert drawn[("lung", "os", "baseline_volume_ml - baseline_sld_mm")] == -0.02
    assert len(fig.axes) == 4
    diff_axes = [ax for ax in fig.axes if ax.get_xlabel().startswith("Difference")]
    assert len(diff_axes) == 2
    labels = " ".join(t.get_text() for t in diff_axes[0].texts)
    assert "Baseline tumour volume (mL)" in labels and "Baseline RECIST sum of diameters (mm)" in labels


def test_td_auc_curves_per_cohort_in_months(tmp_path):
    times = np.array([90.0, 180.0, 365.0])
    td = pd.DataFrame([{"cohort": c, "endpoint": "os", "feature": f, "time_days": t, "auc": 0.7}
                       for c in ("lung", "melanoma") for f in ("baseline_volume_ml", "baseline_sld_mm") for t in times])
    td.loc[(td["cohort"] == "melanoma") & (td["feature"] == "baseline_sld_mm") & (td["time_days"] == 365.0),
           "auc"] = np.nan
    fig, drawn = disc.td_auc_figure(td, "os")
    assert drawn == {("lung", "baseline_volume_ml"): 3, ("lung", "baseline_sld_mm"): 3,
                     ("melanoma", "baseline_volume_ml"): 3, ("melanoma", "baseline_sld_mm"): 2}
    line = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "auc:lung:baseline_volume_ml"][0]
    assert np.allclose(line.get_xdata(), times / 30.4375)
    td.to_csv(tmp_path / "td_auc.csv", index=False)
    written = disc.write_td_auc_figures(tmp_path / "td_auc.csv", tmp_path / "fig", {"formats": ["png"]})
    assert [p.name for p in written] == ["td_auc_os.png"]
