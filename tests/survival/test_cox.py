"""The non-proportional-hazards flag beside every Cox model, against R's cox.zph GLOBAL p."""

import math

import numpy as np
import pandas as pd
import pytest

from tumorburden.survival import cox

R_DIR = __import__("pathlib").Path(__file__).parent / "r"
REF = pd.read_csv(R_DIR / "reference.csv", keep_default_na=False, na_values=["NA"])


@pytest.mark.parametrize("name,key,terms", [
    ("lung", "age+sex+ph.ecog", ["age", "sex", "ph.ecog"]),
    ("lung", "wt.loss", ["wt.loss"]),
    ("melanoma", "log(thickness)+ulcer+age+sex", ["log_thickness", "ulcer", "age", "sex"]),
])
def test_every_term_row_carries_the_global_zph_p_and_the_flag_follows_r(name, key, terms):
    d = pd.read_csv(R_DIR / f"{name}.csv")
    if "thickness" in d:
        d["log_thickness"] = np.log(d["thickness"])
    rows, _ = cox.fit_cox(d, "time", "event", terms, ties="breslow")
    r = REF[(REF.dataset == name) & (REF.analysis == "zph") & (REF.key == f"{key}|breslow|GLOBAL")
            & (REF.statistic == "p")]["value"].iloc[0]
    for row in rows:
        assert row["zph_global_p"] == pytest.approx(r, rel=1e-6)
        assert row["nonproportional"] is bool(r < 0.05)
    # Melanoma's model is the one R flags (GLOBAL p 0.044); at alpha 0.01 it is not flagged
    if name == "melanoma":
        assert rows[0]["nonproportional"] is True
        assert cox.fit_cox(d, "time", "event", terms, ties="breslow", alpha=0.01)[0][0]["nonproportional"] is False


def test_a_model_not_fitted_has_no_flag():
    df = pd.DataFrame({"t": [1, 2, 3, 4], "e": [1, 0, 1, 0], "x": [1.0, 1.0, 1.0, 1.0]})
    rows, _ = cox.fit_cox(df, "t", "e", ["x"], min_patients=2, min_events=1)
    assert rows[0]["status"].startswith("not fitted")
    assert math.isnan(rows[0]["zph_global_p"]) and rows[0]["nonproportional"] is None
