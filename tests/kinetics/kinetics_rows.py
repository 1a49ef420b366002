"""Hand-made rows of a tables/lesions frame."""

import pandas as pd


def lesion(pid, scan, days, track, organ, ld, sa=None, vol=1.0, status="persisting"):
    gone = status == "disappeared"
    return {
        "patient_id": pid, "scan_id": scan, "days": float(days),
        "lesion": None if gone else track, "track_id": track, "status": status,
        "volume_ml": 0.0 if gone else float(vol),
        "longest_diameter_mm": 0.0 if gone else float(ld),
        "short_axis_mm": 0.0 if gone else float(sa if sa is not None else ld * 0.7),
        "centroid_x_mm": 0.0, "centroid_y_mm": 0.0, "centroid_z_mm": 0.0,
        "mean_hu": 40.0, "organ": organ,
    }


def make_lesions(rows):
    df = pd.DataFrame(rows)
    df["lesion"] = df["lesion"].astype("Int64")
    df["track_id"] = df["track_id"].astype("Int64")
    return df
