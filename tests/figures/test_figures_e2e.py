"""End to end: the figures and the HTML report of the shared tiny Snakemake run."""

import re

import pandas as pd
import pytest
from PIL import Image

from tumorburden import tables
from tumorburden.figures import burden as bf
from tumorburden.figures import km as kmfig
from tumorburden.figures import settings as fsettings
from workflow_run import TINY, snakemake

pytestmark = pytest.mark.e2e


def expected_figures(r):
    clinical = pd.read_csv(r / "synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str, "cohort": str})
    cohorts = sorted(clinical["cohort"].unique())
    stems = [f"km_{c}_{e}_{g}" for c in cohorts + ["all"] for e in ("pfs", "os")
             for g in fsettings.DEFAULTS["km_groupings"]]
    stems += ["forest_pfs", "forest_os", "c_index", "td_auc_pfs", "td_auc_os", "spaghetti", "waterfall"]
    stems += ["calibration_pfs", "calibration_os", "decision_curve_pfs", "decision_curve_os", "model_comparison"]
    stems += [f"swimmer_{c}_p1" for c in cohorts]  # 10 patients: one page per cohort
    stems += [f"dynamic_{p}_{e}" for p in fsettings.DEFAULTS["dynamic_patients"] for e in ("pfs", "os")]
    return stems


def test_every_figure_is_a_nonempty_vector_pdf_and_a_300_dpi_png(synthetic_run):
    r = synthetic_run / "figures"
    stems = expected_figures(synthetic_run)
    assert sorted(p.name for p in r.iterdir()) == sorted(f"{s}.{x}" for s in stems for x in ("pdf", "png"))
    for s in stems:
        pdf = (r / f"{s}.pdf").read_bytes()
        assert pdf[:5] == b"%PDF-" and b"/FontFile2" in pdf and b"/Type3" not in pdf, s
        with Image.open(r / f"{s}.png") as im:
            assert round(im.info["dpi"][0]) == 300, s
            assert im.size[0] >= 1000 and im.getextrema() != ((255, 255),) * 3, s  # not blank


def test_numbers_at_risk_drawn_match_the_patients(synthetic_run):
    r = synthetic_run
    km = kmfig.read_survival_table(r / "survival/km.csv", "km")
    features = tables.read(r / "tables/features.parquet", "features")
    clinical = pd.read_csv(r / "synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str, "cohort": str})
    data = features[["patient_id", "baseline_volume_ml"]].merge(clinical, on="patient_id")
    for endpoint in ("pfs", "os"):
        sel = km[(km["cohort"] == "all") & (km["endpoint"] == endpoint)
                 & (km["stratifier"] == "baseline_volume_ml:median")]
        _, at_risk, ticks = kmfig.km_figure(sel, None, None, "All", endpoint)
        high = data["baseline_volume_ml"] > data["baseline_volume_ml"].median()
        for group, members in (("high", data[high]), ("low", data[~high])):
            expected = [int((members[f"{endpoint}_days"] >= t * 30.4375).sum()) for t in ticks]
            assert at_risk[group] == expected, (endpoint, group)


def test_waterfall_and_swimmer_show_every_patient(synthetic_run):
    r = synthetic_run
    features = tables.read(r / "tables/features.parquet", "features")
    burden = tables.read(r / "tables/burden.parquet", "burden")
    clinical = pd.read_csv(r / "synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str, "cohort": str})
    _, bars = bf.waterfall_figure(features)
    for cohort, values in bars.items():
        f = features[features["cohort"] == cohort]["best_pct_change"].dropna()
        assert values == sorted(f.tolist(), reverse=True)
    _, rows = bf.swimmer_figure(clinical, burden, features, "All")
    assert sorted(row["patient_id"] for row in rows) == sorted(clinical["patient_id"])
    assert sum(len(row["scan_days"]) for row in rows) == len(burden)


def test_figures_are_identical_when_drawn_again(synthetic_run, tmp_path):
    r = synthetic_run
    written = bf.write_burden_figures(r / "tables/burden.parquet", r / "tables/features.parquet",
                                      r / "synthetic/clinical.tsv", tmp_path)
    for p in written:
        assert p.read_bytes() == (r / "figures" / p.name).read_bytes(), p.name


def test_report_holds_every_figure_and_table_with_captions_and_no_image_paths(synthetic_run):
    workdir = synthetic_run.parents[1]
    report = synthetic_run / "report.html"
    proc = snakemake(workdir, TINY, "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = report.read_text()
    for stem in expected_figures(synthetic_run):
        assert f"{stem}.png" in html, stem
    for table in ("km.csv", "cox.csv", "logrank.csv", "performance.csv", "features.csv", "burden.csv",
                  "exclusions.tsv", "scores.csv"):
        assert table in html, table
    assert "number of patients" in html.lower() and "log-rank" in html  # captions rendered
    # patients appear by their pseudonymous IDs only: no image path of scans.tsv, no DICOM identity field
    scans = pd.read_csv(synthetic_run / "synthetic/scans.tsv", sep="\t")
    for image in scans["image"]:
        assert str(image) not in html
    assert not re.search(r"PatientName|PatientBirthDate|InstitutionName", html)
