"""The one place that names the figures' files: the figure modules write these stems, and the
workflow (`workflow/rules/figures_common.smk`) declares them as the rules' outputs, each with its
report caption and labels, from the same functions.

A stem is a path without its extension relative to the study's results folder; each figure is
written once per format (`FORMATS`: a vector PDF and a 300 dpi PNG, the PNG shown in the report).
Light on purpose (no matplotlib): Snakemake imports it to build the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tumorburden.figures.settings import INTERNAL, KM_OVERALL
from tumorburden.paths import slug

FORMATS = tuple(INTERNAL["formats"])
FIGURES_DIR = "figures"
QC_DIR = "qc"


@dataclass(frozen=True)
class FigureFile:
    """One figure as the workflow declares it: its stem under results/<name>/ and how the HTML
    report files it (caption file in workflow/report/, category, subcategory, labels)."""

    stem: str
    caption: str
    category: str
    subcategory: str
    labels: dict = field(default_factory=dict)

    def files(self, results: str) -> list[str]:
        return [f"{results}/{self.stem}.{fmt}" for fmt in FORMATS]


# Stems, relative to the folder each figure command writes into (--out-dir).
def km_stem(cohort: str, endpoint: str, grouping: str) -> str:
    return f"km_{cohort}_{endpoint}_{slug(grouping)}"


def forest_stem(endpoint: str) -> str:
    return f"forest_{endpoint}"


C_INDEX_STEM = "c_index"


def td_auc_stem(endpoint: str) -> str:
    return f"td_auc_{endpoint}"


SPAGHETTI_STEM = "spaghetti"
WATERFALL_STEM = "waterfall"


def swimmer_stem(cohort: str, page: int) -> str:
    """Pages are numbered from 1."""
    return f"swimmer_{cohort}_p{page}"


def contact_sheet_stem(page: int) -> str:
    """Pages are numbered from 1 (under qc/, not figures/)."""
    return f"contact_sheet_p{page}"


def calibration_stem(endpoint: str) -> str:
    return f"calibration_{endpoint}"


def decision_curve_stem(endpoint: str) -> str:
    return f"decision_curve_{endpoint}"


MODEL_COMPARISON_STEM = "model_comparison"


def dynamic_stem(patient_id: str, endpoint: str) -> str:
    return f"dynamic_{slug(patient_id)}_{endpoint}"


# What each figure rule writes, for the workflow.
def km_figures(cohorts, endpoints, groupings) -> list[FigureFile]:
    """One per analysed cohort x endpoint x figures.km_groupings (groupings with the same file
    name drawn once: the last of them)."""
    groupings = {slug(g): g for g in groupings}.values()
    return [FigureFile(f"{FIGURES_DIR}/{km_stem(cohort, endpoint, grouping)}", "km.rst", "Survival", "Kaplan-Meier",
                       {"cohort": cohort, "endpoint": endpoint.upper(),
                        "grouping": "overall" if grouping in KM_OVERALL else grouping})
            for cohort in cohorts for endpoint in endpoints for grouping in groupings]


def forest_figures(endpoints) -> list[FigureFile]:
    return [FigureFile(f"{FIGURES_DIR}/{forest_stem(e)}", "forest.rst", "Survival", "Cox models",
                       {"endpoint": e.upper()}) for e in endpoints]


def c_index_figures() -> list[FigureFile]:
    return [FigureFile(f"{FIGURES_DIR}/{C_INDEX_STEM}", "c_index.rst", "Survival", "Discrimination",
                       {"figure": "C-index"})]


def td_auc_figures(endpoints) -> list[FigureFile]:
    return [FigureFile(f"{FIGURES_DIR}/{td_auc_stem(e)}", "td_auc.rst", "Survival", "Discrimination",
                       {"figure": f"time-dependent AUC, {e.upper()}"}) for e in endpoints]


def burden_figures(swimmer_pages: dict[str, int]) -> list[FigureFile]:
    """Spaghetti, waterfall, and the swimmer pages of each cohort (cohort -> number of pages)."""
    files = [FigureFile(f"{FIGURES_DIR}/{SPAGHETTI_STEM}", "spaghetti.rst", "Burden", "Over time",
                        {"figure": "spaghetti"}),
             FigureFile(f"{FIGURES_DIR}/{WATERFALL_STEM}", "waterfall.rst", "Burden", "Best response",
                        {"figure": "waterfall"})]
    files += [FigureFile(f"{FIGURES_DIR}/{swimmer_stem(cohort, page)}", "swimmer.rst", "Burden", "Swimmer",
                         {"cohort": cohort, "page": str(page)})
              for cohort, pages in swimmer_pages.items() for page in range(1, pages + 1)]
    return files


def contact_sheet_figures(pages: int) -> list[FigureFile]:
    return [FigureFile(f"{QC_DIR}/{contact_sheet_stem(page)}", "contact_sheet.rst", "Quality control",
                       "Segmentation", {"page": str(page)}) for page in range(1, pages + 1)]


def prediction_figures(endpoints) -> list[FigureFile]:
    """Calibration plots and decision curves per endpoint, and the model-comparison panel."""
    files = []
    for e in endpoints:
        files.append(FigureFile(f"{FIGURES_DIR}/{calibration_stem(e)}", "calibration.rst", "Survival",
                                "Prediction model", {"figure": f"calibration, {e.upper()}"}))
        files.append(FigureFile(f"{FIGURES_DIR}/{decision_curve_stem(e)}", "decision_curve.rst", "Survival",
                                "Prediction model", {"figure": f"decision curves, {e.upper()}"}))
    files.append(FigureFile(f"{FIGURES_DIR}/{MODEL_COMPARISON_STEM}", "model_comparison.rst", "Survival",
                            "Prediction model", {"figure": "model comparison"}))
    return files


def dynamic_figures(patients, endpoints) -> list[FigureFile]:
    """Per selected patient and endpoint: burden over time above, the updated prediction below."""
    return [FigureFile(f"{FIGURES_DIR}/{dynamic_stem(p, e)}", "dynamic.rst", "Survival", "Dynamic prediction",
                       {"patient": p, "endpoint": e.upper()}) for p in patients for e in endpoints]
