"""Table schemas: checked where a table is written and where it is read."""

import pandas as pd
import pytest

from tumorburden import tables


def tissue_row(**overrides):
    row = {"patient_id": "P1", "scan_id": "S1", "muscle_ml": 1.0, "sat_ml": 2.0, "vat_ml": 3}
    row.update(overrides)
    return pd.DataFrame([row])


def test_round_trip_with_csv_twin(tmp_path):
    path = tmp_path / "t" / "tissue.parquet"
    tables.write(tissue_row(extra="kept"), path, "scan_tissue", csv=True)
    back = tables.read(path, "scan_tissue")
    assert list(back.columns[:5]) == list(tables.SCHEMAS["scan_tissue"])
    assert back["vat_ml"].dtype == "float64" and back.loc[0, "extra"] == "kept"
    assert pd.read_csv(path.with_suffix(".csv")).loc[0, "sat_ml"] == 2.0


def test_missing_column_is_named(tmp_path):
    with pytest.raises(tables.TableSchemaError, match=r"scan_tissue table .*: missing column\(s\) vat_ml"):
        tables.write(tissue_row().drop(columns="vat_ml"), tmp_path / "x.parquet", "scan_tissue")


def test_wrong_kind_is_named(tmp_path):
    with pytest.raises(ValueError):
        tables.write(tissue_row(muscle_ml="a lot"), tmp_path / "x.parquet", "scan_tissue")
    df = tables.conform(tissue_row(), "scan_tissue").assign(muscle_ml="a lot")
    with pytest.raises(tables.TableSchemaError, match="column 'muscle_ml' should be float"):
        tables.check(df, "scan_tissue")


def test_empty_table_keeps_dtypes(tmp_path):
    path = tmp_path / "lesions.parquet"
    tables.write(tables.empty("scan_lesions"), path, "scan_lesions")
    back = tables.read(path, "scan_lesions")
    assert len(back) == 0 and str(back["lesion"].dtype) == "Int64"


def test_identical_bytes_on_rewrite(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    tables.write(tissue_row(), a, "scan_tissue")
    tables.write(tissue_row(), b, "scan_tissue")
    assert a.read_bytes() == b.read_bytes()
