"""Tracking lesions across a patient's scans."""

from __future__ import annotations

import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.lesions.track import track_study


def lesion_table(patient, scan, rows):
    """rows: (x, y, z, volume_ml, organ)."""
    return pd.DataFrame([
        {"patient_id": patient, "scan_id": scan, "lesion": i, "volume_ml": v, "longest_diameter_mm": 10.0,
         "short_axis_mm": 8.0, "centroid_x_mm": x, "centroid_y_mm": y, "centroid_z_mm": z,
         "mean_hu": 40.0, "organ": organ}
        for i, (x, y, z, v, organ) in enumerate(rows, start=1)
    ])


@pytest.fixture
def study(tmp_path):
    scans = pd.DataFrame({
        "patient_id": ["A", "A", "A", "A", "B"],
        "scan_id": ["A2", "A0", "A1", "A3", "B0"],
        "days": [120.0, -3.0, 60.0, 180.0, 0.0],
        "image": ["x"] * 5,  # extra columns are ignored
    })
    scans.to_csv(tmp_path / "scans.tsv", sep="\t", index=False)
    tabs = {
        "A0": [(0, 0, 0, 5.0, "lung"), (100, 0, 0, 2.0, "liver")],
        "A1": [(4, 3, 0, 4.0, "lung"), (-80, 50, 10, 1.0, "node")],  # liver lesion gone, a new node
        "A2": [(101, 2, 1, 0.5, "liver"), (3, 2, 0, 3.5, "lung"), (-79, 50, 10, 1.5, "node")],  # back
        "A3": [],
        "B0": [(7, 7, 7, 1.0, "other")],
    }
    paths = []
    for scan, rows in tabs.items():
        path = tmp_path / "scans" / scan / "lesions.parquet"
        table = lesion_table(scan[0], scan, rows) if rows else tables.empty("scan_lesions")
        tables.write(table, path, "scan_lesions")
        paths.append(path)
    out = tmp_path / "tables" / "lesions.parquet"
    track_study(tmp_path / "scans.tsv", paths, out, settings={"match_distance_mm": 20.0})
    return tables.read(out, "lesions"), out


def test_statuses_and_track_ids(study):
    df, out = study
    a = df[df["patient_id"] == "A"]
    got = {(r.scan_id, r.track_id): r.status for r in a.itertuples()}
    assert got == {
        ("A0", 1): "baseline", ("A0", 2): "baseline",
        ("A1", 1): "persisting", ("A1", 2): "disappeared", ("A1", 3): "new",
        ("A2", 1): "persisting", ("A2", 2): "persisting", ("A2", 3): "persisting",
        ("A3", 1): "disappeared", ("A3", 2): "disappeared", ("A3", 3): "disappeared",
    }
    gone = a[(a["scan_id"] == "A1") & (a["track_id"] == 2)].iloc[0]
    assert gone["volume_ml"] == 0 and pd.isna(gone["lesion"]) and gone["organ"] == "liver"
    assert list(a["days"].drop_duplicates()) == [-3.0, 60.0, 120.0, 180.0]
    b = df[df["patient_id"] == "B"]
    assert list(b["status"]) == ["baseline"] and list(b["track_id"]) == [1]
    assert out.with_suffix(".csv").exists()


def test_far_lesion_is_not_matched(tmp_path):
    pd.DataFrame({"patient_id": ["A", "A"], "scan_id": ["S0", "S1"], "days": [0, 50]}).to_csv(
        tmp_path / "scans.tsv", sep="\t", index=False)
    p0, p1 = tmp_path / "S0.parquet", tmp_path / "S1.parquet"
    tables.write(lesion_table("A", "S0", [(0, 0, 0, 1.0, "lung")]), p0, "scan_lesions")
    tables.write(lesion_table("A", "S1", [(25, 0, 0, 1.0, "lung")]), p1, "scan_lesions")
    df = track_study(tmp_path / "scans.tsv", [p0, p1], tmp_path / "out.parquet", settings={})
    assert list(df["status"]) == ["baseline", "disappeared", "new"]
    assert list(df["track_id"]) == [1, 1, 2]


def test_bad_scans_table_is_an_error(tmp_path):
    pd.DataFrame({"patient_id": ["A"], "scan_id": ["S0"]}).to_csv(tmp_path / "scans.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"scans\.tsv: missing column\(s\) days"):
        track_study(tmp_path / "scans.tsv", [], tmp_path / "out.parquet")
