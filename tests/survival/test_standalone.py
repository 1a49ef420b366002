"""`tumorburden survival km|logrank|cox|zph|score|rmst|validate` on a table, as a user runs them to check against R."""

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


@pytest.mark.parametrize("action, options, column, values, row, said", [
    ("km", ["--group", "arm"], "time", [5, 8, -12, 3], 3, "negative or non-numeric"),
    ("logrank", ["--group", "arm"], "status", [1, 0, 0, 2], 4, "codes other than 0/1"),
    ("cox", ["--covariates", "x"], "time", ["abc", 8, 12, 3], 1, "negative or non-numeric"),
    ("zph", ["--covariates", "x"], "status", [1, 1, 3, 0], 3, "codes other than 0/1"),
])
def test_km_logrank_and_cox_stop_on_a_bad_table_naming_its_first_bad_row(tmp_path, capsys, action, options, column,
                                                                          values, row, said):
    """The same one-line error as score/rmst/validate, before anything is fitted or written."""
    good = {"time": [5, 8, 12, 3], "status": [1, 0, 1, 1], "arm": ["a", "b", "a", "b"], "x": [1.0, 2.0, 3.0, 4.0]}
    table = tmp_path / "t.tsv"
    pd.DataFrame({**good, column: values}).to_csv(table, sep="\t", index=False)
    out = tmp_path / "o.csv"
    code = main(["survival", action, "--table", str(table), "--duration", "time", "--event", "status", *options,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"tumorburden survival: error: {table}: ") and f"(first: row {row})" in err and said in err
    assert not out.exists()


def test_a_missing_column_names_the_table(tmp_path, capsys):
    table = tmp_path / "t.tsv"
    pd.DataFrame({"time": [5, 8], "status": [1, 0]}).to_csv(table, sep="\t", index=False)
    code = main(["survival", "km", "--table", str(table), "--duration", "time", "--event", "status", "--group", "arm",
                 "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 1 and f"{table}: column 'arm' is not in the table (columns: time, status)" in err
