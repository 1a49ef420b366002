"""The power curve of design/power.csv (figures/design.py)."""

import pandas as pd

from tumorburden.figures.design import power_curve


def test_power_curve_writes_pdf_and_png_with_a_panel_per_follow_up_design(tmp_path):
    rows = []
    for f in (4, 10):
        for n, p in ((50, 0.3), (100, 0.6), (200, 0.9)):
            for burden, shift in (("true", 0.0), ("measured", -0.1)):
                rows.append({"hr": 1.2, "max_followups": f, "n_patients": n, "burden": burden, "power": p + shift,
                             "power_lower": p + shift - 0.1, "power_upper": p + shift + 0.1})
    written = power_curve(pd.DataFrame(rows), tmp_path / "power_curve", 0.8)
    assert [w.name for w in written] == ["power_curve.pdf", "power_curve.png"]
    assert all(w.stat().st_size > 5000 for w in written)
    again = power_curve(pd.DataFrame(rows), tmp_path / "again", 0.8)
    assert (tmp_path / "power_curve.pdf").read_bytes() == again[0].read_bytes()  # reproducible bytes
