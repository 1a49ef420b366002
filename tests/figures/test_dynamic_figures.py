"""The per-patient dynamic-prediction figure draws what the predictions table holds."""

import pandas as pd
import pytest

from tumorburden.figures import dynamic


def frames():
    burden = pd.DataFrame({"patient_id": "P1", "scan_id": ["P1-S0", "P1-S1", "P1-S2", "P1-S3"],
                           "days": [-5.0, 60.0, 120.0, 400.0], "total_volume_ml": [10.0, 8.0, 12.0, 20.0]})
    rows = []
    for scan, s in (("P1-S0", 0.0), ("P1-S1", 60.0), ("P1-S2", 120.0), ("P1-S1", 90.0)):  # 90: a grid landmark
        for model, base in (("landmark super-model", 0.9), ("baseline Cox", 0.8)):
            for k, u in enumerate((45.0, 90.0, 135.0, 180.0)):
                rows.append({"cohort": "lung", "endpoint": "os", "patient_id": "P1", "scan_id": scan,
                             "landmark_days": s, "window_days": u, "model": model,
                             "predicted_survival": base - 0.05 * k})
    pred = pd.DataFrame(rows)
    pooled = pred.assign(cohort="all", predicted_survival=0.1)  # the pooled model's rows are not drawn
    return burden, pd.concat([pred, pooled], ignore_index=True)


def test_one_column_per_scan_with_a_prediction_and_each_model_s_curve():
    burden, pred = frames()
    fig, drawn = dynamic.dynamic_figure("P1", "os", pred, burden, (300.0, 1))
    # S3 (day 400) has no prediction; the landmark at day 90 is not a scan's column
    assert list(drawn) == ["P1-S0", "P1-S1", "P1-S2"]
    assert all(d == {"landmark super-model": 4, "baseline Cox": 4} for d in drawn.values())
    curve = next(line for ax in fig.axes for line in ax.get_lines()
                 if line.get_gid() == "prediction:P1-S1:baseline Cox")
    # starts at 1 on the scan's day, then the predicted values (not the pooled model's)
    assert list(curve.get_ydata()) == pytest.approx([1.0, 0.8, 0.75, 0.7, 0.65], abs=1e-12)
    assert curve.get_xdata()[0] * 30.4375 == 60.0
    known = next(line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "burden:P1-S1")
    assert list(known.get_ydata()) == [10.0, 8.0]  # the scans known at S1, not the later ones


def test_a_patient_without_predictions_gets_a_figure_that_says_so():
    burden, pred = frames()
    _, drawn = dynamic.dynamic_figure("P1", "pfs", pred, burden)
    assert drawn == {}
