"""`tumorburden survival score|rmst|validate` on a table, as a user runs them to check against R."""

import numpy as np
import pandas as pd
import pytest

from tumorburden.cli import main

from test_score_r_parity import R_DIR, ref


def run(tmp_path, *args):
    out = tmp_path / "out.csv"
    assert main(["survival", *args, "--out", str(out)]) in (0, None)
    return out


def test_score_command_on_rs_pbc_equals_score_of_coxph(tmp_path):
    table = tmp_path / "pbc.tsv"
    d = pd.read_csv(R_DIR / "pbc.csv")
    d.assign(log_bili=np.log(d["bili"]), log_protime=np.log(d["protime"])).to_csv(table, sep="\t", index=False)
    out = pd.read_csv(run(tmp_path, "score", "--table", str(table), "--duration", "time", "--event", "event",
                          "--covariates", "age,edema,log_bili,albumin,log_protime", "--times", "1825,3650"))
    assert set(out["model"]) == {"null model", "cox(age+edema+log_bili+albumin+log_protime)"}
    for _, row in out.iterrows():
        k = f"{'Null model' if row['model'] == 'null model' else 'cox'}|{row['time_days']:g}"
        assert row["brier"] == pytest.approx(ref("pbc", "brier", k, "Brier"), rel=1e-8)
        assert row["brier_lower"] == pytest.approx(ref("pbc", "brier", k, "lower"), rel=1e-7)
        if row["model"] != "null model":
            assert row["ipa"] == pytest.approx(ref("pbc", "brier", k, "IPA"), rel=1e-7)
            assert row["auc_upper"] == pytest.approx(ref("pbc", "auc", k, "upper"), rel=1e-7)


def test_rmst_command_writes_groups_and_their_contrast(tmp_path):
    out = run(tmp_path, "rmst", "--table", str(R_DIR / "lung.csv"), "--duration", "time", "--event", "event",
              "--group", "sex", "--tau", "365")
    groups = pd.read_csv(out)
    contrast = pd.read_csv(out.with_name("out_contrast.csv"))
    assert list(groups["group"]) == [1, 2]
    assert groups["rmst"].tolist() == pytest.approx([ref("lung", "rmst", f"sex|365|{g}", "rmean") for g in (1, 2)],
                                                    rel=1e-9)
    assert contrast["ratio"].iloc[0] == pytest.approx(ref("lung", "rmst_contrast", "sex|365|2-1", "ratio"), rel=1e-9)


def test_a_bad_event_code_stops_with_the_table_and_first_row_named(tmp_path, capsys):
    table = tmp_path / "t.tsv"
    pd.DataFrame({"time": [5, 8, 12], "status": [1, 2, 0], "x": [1.0, 2.0, 3.0]}).to_csv(table, sep="\t", index=False)
    code = main(["survival", "score", "--table", str(table), "--duration", "time", "--event", "status",
                 "--covariates", "x", "--times", "10", "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code != 0 and str(table) in err and "row 2" in err and "codes other than 0/1" in err


def test_validate_command_gives_rms_rows_with_apparent_optimism_corrected(tmp_path):
    pytest.importorskip("tumorburden.survival.validation")
    out = pd.read_csv(run(tmp_path, "validate", "--table", str(R_DIR / "lung.csv"), "--duration", "time",
                          "--event", "event", "--covariates", "age,sex,ph.ecog", "--horizon", "365",
                          "--bootstrap", "20", "--seed", "1"))
    assert {"Dxy", "C", "slope", "R2", "D"} <= set(out["index"])
    assert {"apparent", "optimism", "corrected"} <= set(out.columns)
    np.testing.assert_allclose(out["corrected"], out["apparent"] - out["optimism"], rtol=1e-9, atol=1e-12)
    assert (out["n"] == 227).all()  # one patient lacks ph.ecog
