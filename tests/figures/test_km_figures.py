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


ONE_GROUPING = {"km_groupings": ["baseline_volume_median"]}  # the overall curve is tested on its own below


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
    return out, kmfig.write_km_figures(survival_dir[0], out, ONE_GROUPING)


def test_one_nonempty_pdf_and_png_per_cohort_and_endpoint(figures):
    tmp_path, written = figures
    names = sorted(p.name for p in written)
    expected = sorted(f"km_{c}_{e}_{g}.{x}" for c in ("lung", "melanoma", "all") for e in ("pfs", "os")
                      for g in ("baseline_volume_median",) for x in ("pdf", "png"))
    assert names == expected
    for p in written:
        assert p.stat().st_size > 5000
    assert (tmp_path / "km_all_os_baseline_volume_median.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "km_all_os_baseline_volume_median.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"/FontFile2" in (tmp_path / "km_all_os_baseline_volume_median.pdf").read_bytes()  # TrueType embedded (fonttype 42)


def test_figures_are_byte_identical_across_runs(survival_dir, figures, tmp_path):
    first, written = figures
    again = kmfig.write_km_figures(survival_dir[0], tmp_path, ONE_GROUPING)
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


def test_png_is_300_dpi_and_pdf_has_no_creation_date(figures):
    from PIL import Image

    out, _ = figures
    with Image.open(out / "km_lung_pfs_baseline_volume_median.png") as im:
        assert round(im.info["dpi"][0]) == 300
        assert im.size[0] == round(89 / 25.4 * 300)  # single journal column
    pdf = (out / "km_lung_pfs_baseline_volume_median.pdf").read_bytes()
    assert b"/CreationDate" not in pdf and b"/Type3" not in pdf


def test_legend_gives_n_and_median_read_off_the_curve(survival_dir):
    d, _ = survival_dir
    km = kmfig.read_survival_table(d / "km.csv", "km")
    sel = km[(km["cohort"] == "melanoma") & (km["endpoint"] == "os") & (km["stratifier"] == "baseline_volume_ml:median")]
    fig, _, _ = kmfig.km_figure(sel, None, None, "Melanoma", "os", stratifier="baseline_volume_median")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    low = sel[sel["group"] == "low"].sort_values("time_days")
    med = low.loc[low["survival"] <= 0.5, "time_days"]
    expected = f"{med.iloc[0] / 30.4375:.1f} mo" if len(med) else "not reached"
    assert labels[0] == f"\u2264 median: n = {int(low['at_risk'].iloc[0])}, median {expected}"


def test_every_grouping_configured_gets_its_figures(survival_dir, tmp_path):
    written = kmfig.write_km_figures(survival_dir[0], tmp_path, {"km_groupings": ["none"], "formats": ["png"]})
    assert len(written) == 6 and all(p.name.endswith("_none.png") for p in written)


def test_medians_from_km_summary_win_and_months_use_days_per_month(survival_dir):
    d, _ = survival_dir
    km = kmfig.read_survival_table(d / "km.csv", "km")
    sel = km[(km["cohort"] == "lung") & (km["endpoint"] == "pfs") & (km["stratifier"] == "all")]
    fig, at_risk, ticks = kmfig.km_figure(sel, None, None, "Lung", "pfs", {"days_per_month": 7.0},
                                          medians={"all": 70.0}, stratifier="none")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][0].endswith("median 10.0 mo")
    # ticks in weeks now: the last tick covers the last time in km.csv
    assert ticks[-1] >= sel["time_days"].max() / 7.0


def test_log_rank_and_hazard_ratio_are_quoted_from_the_tables(survival_dir):
    d, _ = survival_dir
    km = kmfig.read_survival_table(d / "km.csv", "km")
    lr = kmfig.read_survival_table(d / "logrank.csv", "logrank")
    cox = kmfig.read_survival_table(d / "cox.csv", "cox")
    median = "baseline_volume_ml:median"
    sel = km[(km["cohort"] == "all") & (km["endpoint"] == "pfs") & (km["stratifier"] == median)]
    lrow = lr[(lr["cohort"] == "all") & (lr["endpoint"] == "pfs") & (lr["stratifier"] == median)
              & (lr["test"] == "stratified")].iloc[0].to_dict()
    crow = kmfig.cox_row(cox, "all", "pfs", "log_baseline_volume_ml")
    assert crow["model"] == "univariable" and crow["strata"] == "cohort"
    fig, _, _ = kmfig.km_figure(sel, lrow, crow, "All", "pfs", stratifier="baseline_volume_median")
    text = " ".join(t.get_text() for t in fig.texts)
    assert kmfig.format_p(lrow["p"], "log-rank p (stratified by cohort)") in text
    assert f"HR {crow['hr']:.2f} (95% CI {crow['hr_lower']:.2f}\u2013{crow['hr_upper']:.2f})" in text


def test_a_grouping_the_table_lacks_is_a_one_line_error(survival_dir, tmp_path):
    with pytest.raises(ValueError, match=r"no stratifier 'recist_bor' \(it has all, baseline_volume_ml:maxstat, baseline_volume_ml:median"):
        kmfig.write_km_figures(survival_dir[0], tmp_path, {"km_groupings": ["recist_bor"]})


def test_later_table_names_all_and_response_groups_are_drawn_in_response_colours():
    from tumorburden.figures import style

    rows = []
    for g, surv in (("PD", [1.0, 0.4]), ("CR", [1.0, 0.9]), ("SD", [1.0, 0.6])):
        rows += [{"cohort": "lung", "endpoint": "os", "stratifier": "recist_bor", "group": g, "time_days": t,
                  "survival": s, "ci_lower": s - 0.1, "ci_upper": min(s + 0.1, 1), "at_risk": n, "events": e,
                  "censored": 0} for t, s, n, e in ((0.0, surv[0], 5, 0), (100.0, surv[1], 5, 2))]
    km = tables.conform(pd.DataFrame(rows), "km")
    fig, at_risk, _ = kmfig.km_figure(km, {"p": 0.0004}, None, "Lung", "os", stratifier="recist_bor")
    assert list(at_risk) == ["CR", "SD", "PD"]  # clinical order, not table order
    colours = [line.get_color() for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"]
    assert colours == [style.RESPONSE_COLOURS[g] for g in ("CR", "SD", "PD")]
    assert any("log-rank p < 0.001" in t.get_text() for t in fig.texts)
    assert fig.axes[0].get_legend().get_title().get_text() == "RECIST best overall response"


def test_renamed_survival_tables_still_draw_and_their_km_summary_medians_are_used(survival_dir, tmp_path):
    """km.csv as the survival stage will write it: 'all' / 'baseline_volume_ml:median', a km_summary."""
    import shutil

    d = tmp_path / "survival"
    shutil.copytree(survival_dir[0], d)
    renames = {"none": "all", "baseline_volume_median": "baseline_volume_ml:median"}
    for name in ("km", "logrank", "cox"):  # the lung cohort only: four figures are enough here
        t = kmfig.read_survival_table(d / f"{name}.csv", name)
        t = t[t["cohort"] == "lung"]
        if name == "cox":
            tables.write(t, d / f"{name}.csv", name)
            continue
        t["stratifier"] = t["stratifier"].replace(renames)
        if name == "logrank":
            t = pd.concat([t.assign(test="logrank"), t.assign(test="trend", p=0.5)], ignore_index=True)
        tables.write(t, d / f"{name}.csv", name)
    pd.DataFrame({"cohort": "lung", "endpoint": "pfs", "stratifier": "baseline_volume_ml:median",
                  "group": ["low", "high"], "n": 15, "events": 9, "median_days": [304.375, np.nan],
                  "median_lower": np.nan, "median_upper": np.nan, "conf_type": "log-log"}).to_csv(
        d / "km_summary.csv", index=False)
    written = kmfig.write_km_figures(d, tmp_path / "fig", {"formats": ["png"]})
    assert sorted(p.name for p in written) == [
        "km_lung_os_baseline_volume_median.png", "km_lung_os_none.png",
        "km_lung_pfs_baseline_volume_median.png", "km_lung_pfs_none.png"]
    km = kmfig.read_survival_table(d / "km.csv", "km")
    summary = kmfig.read_survival_table(d / "km_summary.csv", None)
    medians = kmfig.medians_of(summary, "lung", "pfs", "baseline_volume_median")
    assert medians == {"low": 304.375, "high": np.inf}
    sel = km[(km["cohort"] == "lung") & (km["endpoint"] == "pfs") & (km["stratifier"] == "baseline_volume_ml:median")]
    fig, _, _ = kmfig.km_figure(sel, None, None, "Lung", "pfs", medians=medians, stratifier="baseline_volume_ml:median")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].endswith("median 10.0 mo") and labels[1].endswith("median not reached")
