# The figures' outputs, shared by figures.smk and `rule all` (final_targets in common.smk).
from snakemake.logging import logger

from tumorburden.figures.settings import DEFAULTS as FIGURE_DEFAULTS
from tumorburden.figures.settings import KM_OVERALL, contact_sheet_pages, dynamic_patients, swimmer_pages
from tumorburden.paths import slug as figure_slug

FIGURES = {**FIGURE_DEFAULTS, **(config.get("figures") or {})}
KM_GROUPINGS = {figure_slug(g): g for g in FIGURES["km_groupings"]}
SWIMMER_PAGES = swimmer_pages(STUDY.clinical, FIGURES["swimmer_max_patients"])
REPORT_DIR = Path(workflow.basedir) / "workflow" / "report"
DYNAMIC_PATIENTS, _absent = dynamic_patients(FIGURES["dynamic_patients"], STUDY.clinical["patient_id"])
if _absent:
    logger.warning(f"figures.dynamic_patients: {', '.join(_absent)} not in the study's clinical.tsv; no dynamic-"
                   "prediction figure for them (set figures.dynamic_patients to study IDs of this study)")


def figure_settings():
    """figures config + the kinetics keys the figures share (months, volumetric thresholds)."""
    kinetics = config.get("kinetics") or {}
    shared = ("days_per_month", "volumetric_pr_pct", "volumetric_pd_pct")
    s = {**(config.get("figures") or {}), **{k: kinetics[k] for k in shared if k in kinetics}}
    return json.dumps(s, sort_keys=True)  # the rules quote it ({params.settings:q})


def figure_files(stem, caption, category, subcategory, labels):
    """stem.pdf + stem.png; the PNG is shown in the report."""
    # (a line may not start with `report(`: Snakemake's parser takes it for the `report:` keyword)
    png = report(
        f"{stem}.png", caption=str(REPORT_DIR / caption), category=category, subcategory=subcategory, labels=labels
    )
    return [f"{stem}.pdf", png]


def km_outputs():
    files = []
    for cohort in ANALYSED_COHORTS:
        for endpoint in ENDPOINTS:
            for gslug, grouping in KM_GROUPINGS.items():
                files += figure_files(
                    f"{R}/figures/km_{cohort}_{endpoint}_{gslug}",
                    "km.rst",
                    "Survival",
                    "Kaplan-Meier",
                    {
                        "cohort": cohort,
                        "endpoint": endpoint.upper(),
                        "grouping": "overall" if grouping in KM_OVERALL else grouping,
                    },
                )
    return files


def burden_outputs():
    files = figure_files(
        f"{R}/figures/spaghetti", "spaghetti.rst", "Burden", "Over time", {"figure": "spaghetti"}
    )
    files += figure_files(
        f"{R}/figures/waterfall", "waterfall.rst", "Burden", "Best response", {"figure": "waterfall"}
    )
    for cohort, pages in SWIMMER_PAGES.items():
        for page in range(1, pages + 1):
            files += figure_files(
                f"{R}/figures/swimmer_{cohort}_p{page}",
                "swimmer.rst",
                "Burden",
                "Swimmer",
                {"cohort": cohort, "page": str(page)},
            )
    return files


def figure_targets():
    """The figures `rule all` asks for (figures whose tables exist in this release)."""
    # plain paths: the report flags belong to the rules that write the files
    figures = km_outputs() + forest_outputs() + c_index_outputs() + td_auc_outputs() + burden_outputs()
    figures += prediction_outputs() + dynamic_outputs()
    if not DICOM_ROOT:  # a dicom_root study's scans (and so its pages) are known only after discovery
        figures += contact_sheet_outputs()
    return [str(f) for f in figures]


def forest_outputs():
    files = []
    for endpoint in ENDPOINTS:
        files += figure_files(
            f"{R}/figures/forest_{endpoint}",
            "forest.rst",
            "Survival",
            "Cox models",
            {"endpoint": endpoint.upper()},
        )
    return files


def c_index_outputs():
    return figure_files(
        f"{R}/figures/c_index", "c_index.rst", "Survival", "Discrimination", {"figure": "C-index"}
    )


# Not yet in figure_targets(): survival/td_auc.csv (issue 6) and qc/overlays/<scan_id>.png
# (issue 4) are written by other stages; add td_auc_outputs() and contact_sheet_outputs() to
# figure_targets() once they are.
def td_auc_outputs():
    files = []
    for endpoint in ENDPOINTS:
        files += figure_files(
            f"{R}/figures/td_auc_{endpoint}",
            "td_auc.rst",
            "Survival",
            "Discrimination",
            {"figure": f"time-dependent AUC, {endpoint.upper()}"},
        )
    return files


def contact_sheet_outputs():
    files = []
    pages = contact_sheet_pages(len(SCANS), FIGURES["contact_sheet_columns"], FIGURES["contact_sheet_rows"])
    for page in range(1, pages + 1):
        files += figure_files(
            f"{R}/qc/contact_sheet_p{page}", "contact_sheet.rst", "Quality control", "Segmentation",
            {"page": str(page)},
        )
    return files


def prediction_outputs():
    """Calibration plots and decision curves per endpoint, and the model-comparison panel."""
    files = []
    for endpoint in ENDPOINTS:
        files += figure_files(
            f"{R}/figures/calibration_{endpoint}", "calibration.rst", "Survival", "Prediction model",
            {"figure": f"calibration, {endpoint.upper()}"},
        )
        files += figure_files(
            f"{R}/figures/decision_curve_{endpoint}", "decision_curve.rst", "Survival", "Prediction model",
            {"figure": f"decision curves, {endpoint.upper()}"},
        )
    files += figure_files(
        f"{R}/figures/model_comparison", "model_comparison.rst", "Survival", "Prediction model",
        {"figure": "model comparison"},
    )
    return files


def dynamic_outputs():
    """Per selected patient and endpoint: burden over time above, the updated prediction below."""
    files = []
    for patient in DYNAMIC_PATIENTS:
        for endpoint in ENDPOINTS:
            files += figure_files(
                f"{R}/figures/dynamic_{figure_slug(patient)}_{endpoint}", "dynamic.rst", "Survival",
                "Dynamic prediction", {"patient": patient, "endpoint": endpoint.upper()},
            )
    return files
