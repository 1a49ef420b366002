"""The figures' file names, declared once (figures/names.py) for the figure modules and the rules."""

import re

from tumorburden.figures import names


def _stems(figures):
    return [f.stem for f in figures]


def test_km_figures_one_per_cohort_endpoint_and_grouping():
    figures = names.km_figures(["lung", "all"], ["pfs", "os"], ["none", "baseline_volume_median"])
    assert _stems(figures) == [
        "figures/km_lung_pfs_none", "figures/km_lung_pfs_baseline_volume_median",
        "figures/km_lung_os_none", "figures/km_lung_os_baseline_volume_median",
        "figures/km_all_pfs_none", "figures/km_all_pfs_baseline_volume_median",
        "figures/km_all_os_none", "figures/km_all_os_baseline_volume_median",
    ]
    assert figures[0].labels == {"cohort": "lung", "endpoint": "PFS", "grouping": "overall"}
    assert figures[1].labels["grouping"] == "baseline_volume_median"
    assert {f.caption for f in figures} == {"km.rst"} and {f.subcategory for f in figures} == {"Kaplan-Meier"}


def test_groupings_with_one_file_name_are_drawn_once():
    # 'baseline_volume_ml:median' and 'baseline_volume_ml-median' both become baseline_volume_ml-median
    figures = names.km_figures(["lung"], ["os"], ["baseline_volume_ml:median", "baseline_volume_ml-median"])
    assert _stems(figures) == ["figures/km_lung_os_baseline_volume_ml-median"]
    assert names.km_stem("lung", "os", "baseline_volume_ml:median") == "km_lung_os_baseline_volume_ml-median"


def test_pages_are_numbered_from_one_and_the_contact_sheet_is_qc():
    burden = names.burden_figures({"lung": 2, "melanoma": 1})
    assert _stems(burden) == ["figures/spaghetti", "figures/waterfall", "figures/swimmer_lung_p1",
                              "figures/swimmer_lung_p2", "figures/swimmer_melanoma_p1"]
    assert burden[3].labels == {"cohort": "lung", "page": "2"}
    assert _stems(names.contact_sheet_figures(2)) == ["qc/contact_sheet_p1", "qc/contact_sheet_p2"]


def test_survival_figures_per_endpoint():
    assert _stems(names.forest_figures(["pfs", "os"])) == ["figures/forest_pfs", "figures/forest_os"]
    assert _stems(names.td_auc_figures(["os"])) == ["figures/td_auc_os"]
    assert _stems(names.c_index_figures()) == ["figures/c_index"]
    assert _stems(names.prediction_figures(["pfs"])) == ["figures/calibration_pfs", "figures/decision_curve_pfs",
                                                         "figures/model_comparison"]
    dynamic = names.dynamic_figures(["SYN-001", "P 2"], ["pfs", "os"])
    assert _stems(dynamic) == ["figures/dynamic_SYN-001_pfs", "figures/dynamic_SYN-001_os", "figures/dynamic_P-2_pfs",
                               "figures/dynamic_P-2_os"]
    assert dynamic[1].labels == {"patient": "SYN-001", "endpoint": "OS"}


def test_each_figure_is_a_pdf_and_a_png_with_a_caption_that_exists(repo_root):
    every = (names.km_figures(["lung"], ["pfs"], ["none"]) + names.forest_figures(["pfs"])
             + names.c_index_figures() + names.td_auc_figures(["pfs"]) + names.burden_figures({"lung": 1})
             + names.contact_sheet_figures(1) + names.prediction_figures(["pfs"])
             + names.dynamic_figures(["SYN-001"], ["pfs"]))
    assert every[0].files("results/x") == ["results/x/figures/km_lung_pfs_none.pdf",
                                           "results/x/figures/km_lung_pfs_none.png"]
    for f in every:
        assert (repo_root / "workflow" / "report" / f.caption).is_file(), f.caption
    assert len({f.stem for f in every}) == len(every)


def test_figure_modules_and_rules_take_their_file_names_from_here(repo_root):
    """Every figure a module saves is named by names.py, and the rules spell no figure name."""
    package = repo_root / "workflow" / "tumorburden" / "figures"
    for module in sorted(package.glob("*.py")):
        for call in re.findall(r"style\.save\(fig, ([^,]+),", module.read_text()):
            assert "names." in call or call == "stem", f"{module.name}: style.save(fig, {call}, ...)"
    km = (package / "km.py").read_text()
    assert "stem = out_dir / names.km_stem(" in km
    rules = (repo_root / "workflow" / "rules" / "figures_common.smk").read_text()
    rules += (repo_root / "workflow" / "rules" / "figures.smk").read_text()
    for stem in ("km_", "forest_", "c_index", "td_auc_", "spaghetti", "waterfall", "swimmer_", "contact_sheet_p",
                 "calibration_", "decision_curve_", "model_comparison", "dynamic_"):
        assert not re.search(rf"{{R}}/(figures|qc)/{stem}", rules), stem  # (logs/figures/ are logs)
