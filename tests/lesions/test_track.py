"""Tracking lesions across a patient's scans."""

from __future__ import annotations

import numpy as np
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


# --- harder cases: motion between scans, missed lesions, merges, splits, pre-baseline scans ---

from tumorburden.lesions.track import sphere_radius_mm, track_patient  # noqa: E402


def visit(scan, days, rows, matrix=None, patient="P"):
    table = lesion_table(patient, scan, rows) if rows else tables.empty("scan_lesions")
    return (scan, float(days), table, matrix)


def shift(dx=0.0, dy=0.0, dz=0.0):
    m = np.eye(4)
    m[:3, 3] = [dx, dy, dz]
    return m


def by_scan(df):
    return {(r.scan_id, r.track_id): (r.status, r.event) for r in df.itertuples()}


def test_table_moved_between_scans_is_undone_by_the_transform():
    # the follow-up was taken with the table 35 mm further in: every centroid is off by 35 mm in z
    base = [(0, 0, 0, 5.0, "lung"), (60, 0, 0, 3.0, "liver")]
    moved = [(0, 0, 35, 5.0, "lung"), (60, 0, 35, 3.0, "liver")]
    naive = track_patient([visit("S0", 0, base), visit("S1", 60, moved)], {})
    assert (naive.loc[naive["scan_id"] == "S1", "status"] != "persisting").all()
    aligned = track_patient([visit("S0", 0, base), visit("S1", 60, moved, shift(dz=-35.0))], {})
    s1 = aligned[aligned["scan_id"] == "S1"]
    assert list(s1["status"]) == ["persisting", "persisting"] and list(s1["track_id"]) == [1, 2]
    assert s1["aligned_z_mm"].tolist() == pytest.approx([0.0, 0.0])
    assert s1["centroid_z_mm"].tolist() == pytest.approx([35.0, 35.0])  # measurements stay in the scan's mm


def test_missed_at_one_visit_is_picked_up_again():
    got = by_scan(track_patient([
        visit("S0", 0, [(0, 0, 0, 2.0, "lung"), (50, 0, 0, 2.0, "liver")]),
        visit("S1", 50, [(1, 0, 0, 2.0, "lung")]),
        visit("S2", 100, [(1, 1, 0, 2.0, "lung"), (51, 1, 0, 2.5, "liver")]),
    ], {}))
    assert got[("S1", 2)] == ("disappeared", "") and got[("S2", 2)] == ("persisting", "")
    assert len(got) == 6  # no new track


def test_two_lesions_merging():
    # 2 mL each (radius 7.8 mm) 14 mm apart; then one 6 mL lesion (radius 11.3 mm) between them
    df = track_patient([
        visit("S0", 0, [(0, 0, 0, 2.0, "liver"), (14, 0, 0, 2.0, "liver")]),
        visit("S1", 60, [(6, 0, 0, 6.0, "liver")]),
        visit("S2", 120, [(6, 0, 0, 7.0, "liver")]),
    ], {})
    got = by_scan(df)
    assert got[("S1", 1)] == ("persisting", "")
    assert got[("S1", 2)] == ("disappeared", "merged")
    assert df.loc[(df["scan_id"] == "S1") & (df["track_id"] == 2), "linked_track_id"].item() == 1
    assert got[("S2", 1)] == ("persisting", "") and got[("S2", 2)] == ("disappeared", "")  # closed, no revival
    assert df["track_id"].max() == 2


def test_a_lesion_splitting_keeps_its_track():
    # 10 mL (radius 13.4 mm) splits into two 4 mL fragments 16 mm apart
    df = track_patient([
        visit("S0", 0, [(0, 0, 0, 10.0, "lung")]),
        visit("S1", 60, [(-8, 0, 0, 4.0, "lung"), (8, 0, 0, 4.0, "lung")]),
        visit("S2", 120, [(-8, 0, 0, 3.0, "lung"), (8, 0, 0, 3.0, "lung")]),
    ], {})
    s1 = df[df["scan_id"] == "S1"]
    assert list(s1["track_id"]) == [1, 1] and set(s1["status"]) == {"persisting"}
    assert sorted(s1["event"]) == ["", "split"]
    assert (df["track_id"] == 1).all()


def test_lopsided_growth_beyond_the_distance_cutoff_keeps_its_track():
    # a 30 mL lesion (radius 19 mm) grows to 60 mL (radius 24 mm), its centroid moving 22 mm
    df = track_patient([visit("S0", 0, [(0, 0, 0, 30.0, "liver")]),
                        visit("S1", 60, [(22, 0, 0, 60.0, "liver")])], {"match_distance_mm": 20.0})
    assert list(df["status"]) == ["baseline", "persisting"]


def test_pre_baseline_scans_new_lesions_and_late_appearance():
    df = track_patient([
        visit("P", -60, [(0, 0, 0, 1.0, "lung")]),
        visit("B", -2, [(0, 0, 0, 1.5, "lung"), (70, 0, 0, 1.0, "liver")]),  # liver first seen at baseline
        visit("F1", 50, [(0, 0, 0, 1.5, "lung"), (70, 0, 0, 1.0, "liver"), (-70, 30, 0, 0.5, "node")]),
    ], {}, reference_scan="B")
    got = by_scan(df)
    assert got[("P", 1)][0] == "baseline" and got[("B", 1)][0] == "persisting"
    assert got[("B", 2)][0] == "baseline"  # at or before the reference scan: not a new lesion
    assert got[("F1", 3)][0] == "new"


def test_no_lesion_at_baseline_then_lesions_appear():
    df = track_patient([visit("S0", 0, []), visit("S1", 60, [(0, 0, 0, 1.0, "lung")]),
                        visit("S2", 120, [(1, 0, 0, 1.2, "lung")])], {})
    assert list(df["status"]) == ["new", "persisting"] and list(df["scan_id"]) == ["S1", "S2"]


def test_every_lesion_disappearing():
    df = track_patient([visit("S0", 0, [(0, 0, 0, 1.0, "lung"), (40, 0, 0, 1.0, "liver")]),
                        visit("S1", 60, [])], {})
    s1 = df[df["scan_id"] == "S1"]
    assert list(s1["status"]) == ["disappeared", "disappeared"] and (s1["volume_ml"] == 0).all()


def simulated_patient(rng, n_lesions=8, n_scans=5, miss=0.1, noise_mm=1.5, reg_error_mm=0.5):
    """Lesions with true tracks seen through random table motion, missed detections and noisy
    centroids; the transforms are the true ones up to reg_error_mm."""
    centres = []
    while len(centres) < n_lesions:
        c = rng.uniform([-120, -80, -150], [120, 80, 150])
        if all(np.linalg.norm(c - o) > 20 for o in centres):
            centres.append(c)
    centres = np.array(centres)
    vol0 = rng.lognormal(np.log(3.0), 1.0, n_lesions)
    growth = rng.normal(0, 0.004, n_lesions)
    visits, truth = [], []
    for k in range(n_scans):
        days = 0.0 if k == 0 else 45.0 * k + rng.integers(-7, 8)
        a = np.radians(rng.uniform(-4, 4))
        motion = np.eye(4)
        motion[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
        motion[:3, 3] = rng.uniform(-30, 30, 3)
        rows, ids = [], []
        for j in range(n_lesions):
            if k > 0 and rng.random() < miss:
                continue
            p = np.r_[centres[j] + rng.normal(0, noise_mm, 3), 1.0] @ motion.T
            rows.append((*p[:3], vol0[j] * np.exp(growth[j] * days), "lung"))
            ids.append(j)
        estimate = np.linalg.inv(motion)
        estimate[:3, 3] += rng.normal(0, reg_error_mm, 3)
        visits.append(visit(f"S{k}", days, rows, estimate))
        truth += [(f"S{k}", i + 1, j) for i, j in enumerate(ids)]
    return visits, pd.DataFrame(truth, columns=["scan_id", "lesion", "true"])


def test_tracking_accuracy_on_simulated_patients_with_motion_and_missed_lesions():
    rng = np.random.default_rng(5)
    right = total = 0
    for _ in range(20):
        visits, truth = simulated_patient(rng)
        df = track_patient(visits, {})
        got = df[df["lesion"].notna()].astype({"lesion": int}).merge(truth, on=["scan_id", "lesion"])
        # right: the track's majority true lesion is this one, and the true lesion's majority
        # track is this one (a true lesion cut into several tracks is wrong, too)
        true_of_track = got.groupby("track_id")["true"].agg(lambda x: x.mode().iloc[0])
        track_of_true = got.groupby("true")["track_id"].agg(lambda x: x.mode().iloc[0])
        ok = (got["true"] == got["track_id"].map(true_of_track)) & (got["track_id"] == got["true"].map(track_of_true))
        right += int(ok.sum())
        total += len(got)
    assert total > 600 and right / total >= 0.98, right / total


def test_sphere_radius():
    assert sphere_radius_mm(4.0 / 3.0 * np.pi) == pytest.approx(10.0)  # 4.19 mL: a 10 mm radius


def test_a_poor_pair_is_not_forced_to_avoid_a_forbidden_one():
    # track 2 (tiny, z=13.5) cannot reach the tiny lesion at z=31.5 (24 mm); the solver must not
    # give track 1's lesion (z=21.3, same size as track 1) to track 2 just to match everything
    df = track_patient([
        visit("S0", 0, [(0, 0, 19.8, 1.8, "liver"), (0, 0, 13.5, 0.08, "liver")]),
        visit("S1", 60, [(0, 0, 21.3, 1.9, "liver"), (16, 0, 31.5, 0.05, "liver")]),
    ], {})
    s1 = df[(df["scan_id"] == "S1") & df["lesion"].notna()].set_index("lesion")
    assert s1.loc[1, "track_id"] == 1 and s1.loc[1, "status"] == "persisting"
