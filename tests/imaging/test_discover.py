"""Discovery of a PACS export: manifest, scan days, exclusions, override, pseudonymisation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from dicomgen import write_series

from tumorburden.imaging.discover import discover, merge_exclusions
from tumorburden.imaging.ingest import DEFAULTS
from tumorburden.study import StudyError, baseline_dates, read_patient_map, read_series_override

SECRETS = ("HOSP123", "HOSP456", "HOSP999", "Doe", "Jane", "Roe", "19500101", "19611231")


def make_export(root: Path) -> None:
    """Two mapped patients (one study with a bad series only), one unmapped, one damaged file.
    Folder names carry hospital IDs and names, as exports often do."""
    p1 = dict(patient_id="HOSP123", patient_name="Doe^Jane", birth_date="19500101")
    a = root / "HOSP123_DOE_JANE"
    write_series(a / "20240105" / "s1", study_uid="1.2.5.1", study_date="20240105", n=2, series_number=1,
                 description="Topogram", image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"], uid="1.2.5.1.1", **p1)
    write_series(a / "20240105" / "s2", study_uid="1.2.5.1", study_date="20240105", step=3.0, uid="1.2.5.1.2",
                 description="Abdomen portal venous 3.0 Doe", **p1)
    write_series(a / "20240105" / "s3", study_uid="1.2.5.1", study_date="20240105", step=5.0, uid="1.2.5.1.3",
                 description="Abdomen portal venous 5.0", series_number=3, **p1)
    write_series(a / "20240301", study_uid="1.2.5.2", study_date="20240301", step=2.0, uid="1.2.5.2.1",
                 names=[f"IM{k}" for k in range(7)], **p1)
    p2 = dict(patient_id="HOSP456", patient_name="Roe^Rick", birth_date="19611231")
    write_series(root / "HOSP456" / "x", study_uid="1.2.6.1", study_date="20240110", skip=(3,), uid="1.2.6.1.1", **p2)
    write_series(root / "other", study_uid="1.2.7.1", study_date="20240110", uid="1.2.7.1.1",
                 patient_id="HOSP999", patient_name="Poe^Ann", birth_date="19700101", n=3)
    damaged = root / "HOSP123_DOE_JANE" / "broken.dcm"
    damaged.write_bytes((a / "20240301" / "IM0").read_bytes()[:140] + b"\xff" * 40)
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    (root / "readme.txt").write_text("exported by PACS")


@pytest.fixture()
def tables(tmp_path):
    clinical = pd.DataFrame({"patient_id": ["P01", "P02"], "cohort": ["lung", "melanoma"], "pfs_days": [100, 200],
                             "pfs_event": [1, 0], "os_days": [300, 400], "os_event": [0, 0],
                             "baseline_date": ["2024-01-01", "2024-01-15"]})
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    pd.DataFrame({"dicom_patient_id": ["HOSP123", "HOSP456"], "patient_id": ["P01", "P02"]}).to_csv(
        tmp_path / "patients.tsv", sep="\t", index=False)
    clinical = pd.read_csv(tmp_path / "clinical.tsv", sep="\t", dtype=str)
    return clinical, read_patient_map(tmp_path / "patients.tsv", clinical), baseline_dates(clinical, tmp_path / "clinical.tsv")


def run(tmp_path, tables, override=None, **settings):
    root = tmp_path / "export"
    if not root.exists():
        make_export(root)
    _, pmap, baseline = tables
    results, private = tmp_path / "results", tmp_path / "private"
    discover(root, pmap, baseline, results, private, {**DEFAULTS, "workers": 1, **settings}, override=override)
    return results, private


def test_manifest_scans_and_exclusions(tmp_path, tables):
    results, private = run(tmp_path, tables)
    manifest = pd.read_parquet(private / "manifest/series.parquet")
    public = pd.read_parquet(results / "manifest/series.parquet")
    assert not {"series_uid", "study_date"} & set(public.columns)  # the hospital's keys stay private
    assert public.equals(manifest.drop(columns=["study_date", "series_uid"]))
    assert set(manifest["patient_id"]) == {"P01", "P02"}  # the unmapped patient has no row
    chosen = manifest[manifest["status"] == "chosen"].set_index("scan_id")
    assert sorted(chosen.index) == ["P01_d4", "P01_d60"]
    assert chosen.loc["P01_d4", "series_uid"] == "1.2.5.1.2" and chosen.loc["P01_d4", "study_date"] == "2024-01-05"
    assert chosen.loc["P01_d4", "orientation"] == "axial" and chosen.loc["P01_d4", "n_slices"] == 7
    assert chosen.loc["P01_d4", "phase_hint"] == "portal" and chosen.loc["P01_d4", "transfer_syntax"] == "1.2.840.10008.1.2.1"
    row = manifest.set_index("series_uid").loc["1.2.5.1.3"]
    assert row["status"] == "passed_over" and row["reason"].startswith("thicker slices (5 mm)")
    assert manifest.set_index("series_uid").loc["1.2.5.1.1", "reason"] == "localizer/scout"
    scans = pd.read_csv(results / "manifest/scans.tsv", sep="\t")
    assert list(scans["scan_id"]) == ["P01_d4", "P01_d60"] and list(scans["days"]) == [4.0, 60.0]
    listing = json.loads(Path(scans["image"][1]).read_text())
    assert listing["series_uid"] == "1.2.5.2.1" and len(listing["files"]) == 7
    assert Path(scans["image"][0]).parent == private / "series"
    excl = pd.read_csv(results / "qc/ingest_exclusions.tsv", sep="\t", keep_default_na=False)
    assert list(excl.columns) == ["stage", "patient_id", "scan_id", "reason"]
    bad = excl[excl["scan_id"] == "P02_d-5"]
    assert len(bad) == 1 and "missing_slices: about 1 missing slice(s): gap(s) between slice002.dcm and slice004.dcm" in bad["reason"].iloc[0]
    reasons = " | ".join(excl["reason"])
    assert "unreadable file P01_[name]_[name]/broken.dcm: damaged DICOM header" in reasons
    assert "[unmapped patient 1]: 1 series (e.g. other/slice000.dcm) of a PatientID missing from the patient map" in reasons


def test_no_identifier_reaches_results(tmp_path, tables):
    from tumorburden.cli import main

    results, _ = run(tmp_path, tables)
    for row in pd.read_csv(results / "manifest/scans.tsv", sep="\t").itertuples():  # as the ingest rule
        assert main(["ingest", "--series-list", row.image, "--out", str(results / f"scans/{row.scan_id}/image.nii.gz"),
                     "--qc", str(results / f"qc/ingest/{row.scan_id}.json")]) == 0
    qc = json.loads((results / "qc/ingest/P01_d4.json").read_text())
    assert qc["series"]["description"] == "Abdomen portal venous 3.0 [name]"
    for path in results.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            for secret in SECRETS:
                assert secret.lower() not in text.lower(), f"{secret} in {path}"


def test_override_forces_and_excludes(tmp_path, tables):
    (tmp_path / "override.tsv").write_text("scan_id\tseries_uid\nP01_d4\t1.2.5.1.3\nP01_d60\texclude\n")
    results, private = run(tmp_path, tables, override=read_series_override(tmp_path / "override.tsv"))
    manifest = pd.read_parquet(private / "manifest/series.parquet").set_index("series_uid")
    assert manifest.loc["1.2.5.1.3", "status"] == "chosen" and manifest.loc["1.2.5.1.3", "reason"] == "forced by the override table"
    assert manifest.loc["1.2.5.2.1", "status"] == "excluded"
    excl = pd.read_csv(results / "qc/ingest_exclusions.tsv", sep="\t", keep_default_na=False)
    assert excl.set_index("scan_id").loc["P01_d60", "reason"] == "excluded by the series override table"


def test_each_choice_is_handed_on_before_the_tables_are_written(tmp_path, tables):
    """on_chosen (the pull starts retrieving there) gets each chosen series' scan, number and files,
    the same as its series list, before discovery writes the manifest."""
    make_export(tmp_path / "export")
    _, pmap, baseline = tables
    results, private = tmp_path / "results", tmp_path / "private"
    handed = []

    def on_chosen(scan_id, series_number, files):
        assert not (results / "manifest").exists() and not (private / "manifest").exists()
        handed.append((scan_id, series_number, files))

    discover(tmp_path / "export", pmap, baseline, results, private, {**DEFAULTS, "workers": 1}, on_chosen=on_chosen)
    scans = pd.read_csv(results / "manifest/scans.tsv", sep="\t")
    assert [h[0] for h in handed] == list(scans["scan_id"]) == ["P01_d4", "P01_d60"]
    manifest = pd.read_parquet(private / "manifest/series.parquet").set_index("scan_id")
    for (scan_id, number, files), image in zip(handed, scans["image"]):
        listing = json.loads(Path(image).read_text())
        assert files == listing["files"] and len(files) == 7
        chosen = manifest[manifest["status"] == "chosen"].loc[scan_id]
        assert number == chosen["series_number"]


def test_on_bad_scan_fail_stops(tmp_path, tables):
    with pytest.raises(ValueError, match=r"imaging.on_bad_scan is fail; 2 problem\(s\)"):
        run(tmp_path, tables, on_bad_scan="fail")


def test_two_workers_read_the_same_headers(tmp_path):
    from tumorburden.imaging import series

    make_export(tmp_path / "export")
    files = series.list_files(tmp_path / "export")
    seq = series.read_headers(files, workers=1)
    par = series.read_headers(files, workers=2, min_files_for_pool=0, chunk=5)
    assert [(r["path"], r["status"], r.get("series_uid")) for r in seq] == [(r["path"], r["status"], r.get("series_uid")) for r in par]


def test_merge_exclusions(tmp_path):
    into = tmp_path / "exclusions.tsv"
    into.write_text("stage\tpatient_id\tscan_id\treason\nfeatures\tP3\t\tno baseline scan\n")
    extra = tmp_path / "ingest.tsv"
    extra.write_text("stage\tpatient_id\tscan_id\treason\ningest\tP1\tP1_d4\tmissing slices\n")
    merge_exclusions(into, [extra])
    out = pd.read_csv(into, sep="\t", keep_default_na=False)
    assert list(out["stage"]) == ["features", "ingest"] and out["scan_id"].iloc[1] == "P1_d4"


def test_table_problems_are_one_line(tmp_path, tables):
    clinical = tables[0]
    (tmp_path / "map.tsv").write_text("dicom_patient_id\tpatient_id\nX1\tP01\nX2\tP09\n")
    with pytest.raises(StudyError, match=r"map.tsv line 3: patient_id 'P09' is not in the clinical table"):
        read_patient_map(tmp_path / "map.tsv", clinical)
    (tmp_path / "map.tsv").write_text("dicom_patient_id\tpatient_id\nX1\tP01\nX1\tP02\n")
    with pytest.raises(StudyError, match=r"line 3: a DICOM PatientID appears twice"):
        read_patient_map(tmp_path / "map.tsv", clinical)
    bad = clinical.assign(baseline_date=["2024-01-01", "15/01/2024"])
    with pytest.raises(StudyError, match=r"line 3 \(patient_id=P02\): baseline_date must be a date YYYY-MM-DD"):
        baseline_dates(bad, tmp_path / "clinical.tsv")
    (tmp_path / "o.tsv").write_text("scan_id\tseries_uid\nP01_d4\tabc\n")
    with pytest.raises(StudyError, match=r"series_uid must be a DICOM UID"):
        read_series_override(tmp_path / "o.tsv")


def test_load_study_for_a_dicom_root(tmp_path, tables, schemas_dir):
    from tumorburden.study import config_problem, load_study

    (tmp_path / "export").mkdir()
    config = {"study": {"name": "pacs", "dicom_root": str(tmp_path / "export"), "clinical": str(tmp_path / "clinical.tsv"),
                        "patient_map": str(tmp_path / "patients.tsv")}}
    assert config_problem(config, schemas_dir) is None
    study = load_study(config, schemas_dir)
    assert study.scans is None and study.scans_path == Path("results/pacs/manifest/scans.tsv")
    assert study.private_dir == Path("private/pacs") and study.cohorts == ["lung", "melanoma"]
    both = {"study": {**config["study"], "scans": "x.tsv"}}
    assert config_problem(both, schemas_dir).startswith("config key study:")
    no_map = {"study": {k: v for k, v in config["study"].items() if k != "patient_map"}}
    assert "patient_map" in config_problem(no_map, schemas_dir)
    pd.read_csv(tmp_path / "clinical.tsv", sep="\t").drop(columns="baseline_date").to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    with pytest.raises(StudyError, match=r"clinical.tsv: a dicom_root study needs a baseline_date column"):
        load_study(config, schemas_dir)
