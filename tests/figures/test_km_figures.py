import numpy as np
import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.figures import km as kmfig
from tumorburden.survival import analysis


def trial(n=60, seed=2):
    rng = np.random.default_rng(seed)
    ids = [f"p{i:02d}" for i in range(n)]
    volume = rng.lognormal(3, 1, n)
    t_event = rng.exponential(400 / (volume / 20) ** 0.5)
    t_cens = rng.uniform(200, 900, n)
    cohort = np.where(np.arange(n) % 2, "lung", "melanoma")
    features = pd.DataFrame({"patient_id": ids, "cohort": cohort, "baseline_volume_ml": volume,
                             "pct_change_first_fu": rng.normal(0, 20, n)})
    clinical = pd.DataFrame({"patient_id": ids, "cohort": cohort,
                             "pfs_days": np.round(np.minimum(t_event, t_cens)), "pfs_event": (t_event <= t_cens) * 1,
                             "os_days": np.round(np.minimum(t_event, t_cens)) + 30, "os_event": (t_event <= t_cens) * 1})
    return features, clinical


@pytest.fixture(scope="module")
def survival_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("survival")
    f, c = trial()
    for name, frame in analysis.survival_tables(f, c, {"bootstrap": 0}).items():
        tables.write(frame, d / f"{name}.csv", name, csv=True)
    return d, c


@pytest.fixture(scope="module")
def figures(survival_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return out, kmfig.write_km_figures(survival_dir[0], out)


def test_one_nonempty_pdf_and_png_per_cohort_and_endpoint(figures):
    tmp_path, written = figures
    names = sorted(p.name for p in written)
    expected = sorted(f"km_{c}_{e}.{x}" for c in ("lung", "melanoma", "all") for e in ("pfs", "os")
                      for x in ("pdf", "png"))
    assert names == expected
    for p in written:
        assert p.stat().st_size > 5000
    assert (tmp_path / "km_all_os.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "km_all_os.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"/FontFile2" in (tmp_path / "km_all_os.pdf").read_bytes()  # TrueType embedded (fonttype 42)


def test_figures_are_byte_identical_across_runs(survival_dir, figures, tmp_path):
    first, written = figures
    again = kmfig.write_km_figures(survival_dir[0], tmp_path)
    assert [p.name for p in again] == [p.name for p in written]
    for p in again:
        assert p.read_bytes() == (first / p.name).read_bytes(), p.name


def test_numbers_at_risk_drawn_equal_the_km_table_and_the_data(survival_dir):
    d, clinical = survival_dir
    km = kmfig.read_survival_table(d / "km.csv", "km")
    sel = km[(km["cohort"] == "lung") & (km["endpoint"] == "pfs") & (km["stratifier"] == "baseline_volume_ml:median")]
    fig, at_risk, ticks = kmfig.km_figure(sel, None, None, "Lung", "pfs")
    drawn = {}
    for ax in fig.axes:
        for t in ax.texts:
            if (t.get_gid() or "").startswith("at_risk:"):
                drawn.setdefault(t.get_gid().split(":")[1], []).append(int(t.get_text()))
    assert drawn == at_risk and set(drawn) == {"low", "high"}
    # the same numbers straight from the patients
    f, _ = trial()
    lung = f.merge(clinical[["patient_id", "pfs_days"]])[lambda x: x["cohort"] == "lung"]
    high = lung["baseline_volume_ml"] > lung["baseline_volume_ml"].median()
    days = ticks * 30.4375
    assert drawn["high"] == [int((lung.loc[high, "pfs_days"] >= t).sum()) for t in days]
    assert drawn["low"] == [int((lung.loc[~high, "pfs_days"] >= t).sum()) for t in days]
    assert drawn["low"][0] + drawn["high"][0] == len(lung)


def test_a_set_without_patients_still_gets_a_figure(tmp_path):
    from tumorburden.figures import style
    empty = tables.empty("km")
    fig, at_risk, _ = kmfig.km_figure(empty, None, {"status": "not fitted: too few patients (0 < 10)"}, "Lung", "os")
    assert at_risk == {}
    assert any("no patients with os data" in t.get_text() for t in fig.axes[0].texts)
    paths = style.save(fig, tmp_path / "km_lung_os", ["png"])
    assert paths[0].stat().st_size > 1000
