# The figures' outputs, shared by figures.smk and `rule all` (final_targets in common.smk). Their
# file names, captions and labels come from workflow/tumorburden/figures/names.py, the names the
# figure modules write.
from snakemake.logging import logger

from tumorburden.figures import names as figure_names
from tumorburden.figures.settings import contact_sheet_pages, dynamic_patients, rule_settings, swimmer_pages

FIGURES = section(config, "figures")
SWIMMER_PAGES = swimmer_pages(STUDY.clinical, FIGURES["swimmer_max_patients"])
REPORT_DIR = Path(workflow.basedir) / "workflow" / "report"
DYNAMIC_PATIENTS, _absent = dynamic_patients(FIGURES["dynamic_patients"], STUDY.clinical["patient_id"])
if _absent:
    logger.warning(f"figures.dynamic_patients: {', '.join(_absent)} not in the study's clinical.tsv; no dynamic-"
                   "prediction figure for them (set figures.dynamic_patients to study IDs of this study)")


def figure_settings():
    """figures config + the kinetics keys the figures share (months, volumetric thresholds)."""
    return rule_settings(config)  # the rules quote it ({params.settings:q})


def figure_files(figures):
    """stem.pdf + stem.png of each figure; the PNG is shown in the report."""
    files = []
    for f in figures:
        pdf, png = f.files(R)
        # (a line may not start with `report(`: Snakemake's parser takes it for the `report:` keyword)
        png = report(png, caption=str(REPORT_DIR / f.caption), category=f.category, subcategory=f.subcategory,
                     labels=f.labels)
        files += [pdf, png]
    return files


def km_outputs():
    return figure_files(figure_names.km_figures(ANALYSED_COHORTS, ENDPOINTS, FIGURES["km_groupings"]))


def burden_outputs():
    return figure_files(figure_names.burden_figures(SWIMMER_PAGES))


def forest_outputs():
    return figure_files(figure_names.forest_figures(ENDPOINTS))


def c_index_outputs():
    return figure_files(figure_names.c_index_figures())


def td_auc_outputs():
    return figure_files(figure_names.td_auc_figures(ENDPOINTS))


def contact_sheet_outputs():
    pages = contact_sheet_pages(len(SCANS), FIGURES["contact_sheet_columns"], FIGURES["contact_sheet_rows"])
    return figure_files(figure_names.contact_sheet_figures(pages))


def prediction_outputs():
    return figure_files(figure_names.prediction_figures(ENDPOINTS))


def figure_targets():
    """The figures `rule all` asks for."""
    # plain paths: the report flags belong to the rules that write the files
    figures = km_outputs() + forest_outputs() + c_index_outputs() + td_auc_outputs() + burden_outputs()
    figures += prediction_outputs() + dynamic_outputs()
    if not DICOM_ROOT:  # a dicom_root study's scans (and so its pages) are known only after discovery
        figures += contact_sheet_outputs()
    return [str(f) for f in figures]


def dynamic_outputs():
    return figure_files(figure_names.dynamic_figures(DYNAMIC_PATIENTS, ENDPOINTS))
