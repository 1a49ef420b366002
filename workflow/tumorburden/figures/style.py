"""The shared figure style: tumorburden.mplstyle, the palette, sizes, and deterministic saving.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot,
so no GUI backend or global figure state is involved (and importing this module does not
switch the backend of a user's notebook).

Colours carry meaning and keep it across figures: a response category (CR, PR, SD, PD, NE)
has one colour everywhere, a cohort has one colour everywhere (the sorted cohort names of the
study take the cohort palette in turn, so ``lung`` is the same green in the swimmer plot and
in the C-index plot), and the pooled set ``all`` is black. All colours are from Okabe & Ito's
colour-blind-safe palette, plus one neutral grey.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tumorburden.paths import POOLED, slug  # noqa: F401  (the pooled cohort; file names of figures)

# fontTools logs every glyph-subsetting step at INFO while PDFs embed fonts; keep run logs readable.
logging.getLogger("fontTools").setLevel(logging.WARNING)

STYLE_PATH = Path(__file__).with_name("tumorburden.mplstyle")
MM_PER_INCH = 25.4
# Journal column widths (Nature, Lancet, JCO are within 2 mm of these)
SINGLE_COLUMN_MM = 89.0
DOUBLE_COLUMN_MM = 183.0
MAX_HEIGHT_MM = 240.0  # a full page less the caption

# Okabe & Ito (2008) colour-blind-safe palette
OKABE_ITO = {
    "blue": "#0072B2", "vermillion": "#D55E00", "green": "#009E73", "purple": "#CC79A7",
    "orange": "#E69F00", "sky": "#56B4E9", "yellow": "#F0E442", "black": "#000000",
}
GREY = "#8C8C8C"
# Burden groups of Kaplan-Meier plots: low burden in the 'good' blue, high in the 'bad' vermillion,
# the same poles as the response categories.
GROUP_COLOURS = {"low": OKABE_ITO["blue"], "high": OKABE_ITO["vermillion"], "all": OKABE_ITO["black"]}
# RECIST 1.1 and volumetric response categories; the same colour in every figure.
RESPONSE_ORDER = ["CR", "PR", "SD", "PD", "NE"]
RESPONSE_COLOURS = {"CR": OKABE_ITO["blue"], "PR": OKABE_ITO["sky"], "SD": OKABE_ITO["orange"],
                    "PD": OKABE_ITO["vermillion"], "NE": GREY}
RESPONSE_LABELS = {"CR": "Complete response", "PR": "Partial response", "SD": "Stable disease",
                   "PD": "Progressive disease", "NE": "Not evaluable"}
# Cohorts take these in turn (sorted by name); they avoid the response colours' blue/sky/vermillion.
COHORT_PALETTE = [OKABE_ITO["green"], OKABE_ITO["purple"], OKABE_ITO["yellow"], "#6A3D9A", "#A6761D", "#1B9E77"]


def style_context():
    """Context in which figures get the shared style (rcParams apply when artists are made)."""
    return matplotlib.style.context(str(STYLE_PATH))


def new_figure(width_mm: float = SINGLE_COLUMN_MM, height_mm: float = 75.0) -> Figure:
    fig = Figure(figsize=(width_mm / MM_PER_INCH, min(height_mm, MAX_HEIGHT_MM) / MM_PER_INCH))
    FigureCanvasAgg(fig)
    return fig


def cohort_colours(cohorts, overrides: dict | None = None) -> dict[str, str]:
    """cohort -> colour: the sorted cohort names take COHORT_PALETTE in turn, ``all`` is black;
    ``overrides`` (figures.cohort_colours of the config) wins. Pass every cohort of the study, not
    only those of one figure, so a cohort keeps its colour from figure to figure."""
    names = sorted({str(c) for c in cohorts} - {POOLED})
    colours = {c: COHORT_PALETTE[i % len(COHORT_PALETTE)] for i, c in enumerate(names)}
    colours[POOLED] = OKABE_ITO["black"]
    colours.update(overrides or {})
    return colours


def response_colour(category) -> str:
    return RESPONSE_COLOURS.get(str(category), GREY)


def cohort_title(cohort: str) -> str:
    return "All cohorts" if cohort == POOLED else str(cohort).replace("_", " ").capitalize()


def save(fig: Figure, stem: Path, formats=("pdf", "png"), dpi: int = 300) -> list[Path]:
    """Write stem.<fmt> for each format, byte-identical for identical figures."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    # Creation dates and software versions would make every run's bytes differ.
    metadata = {"pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
                "png": {"Software": None}, "svg": {"Date": None, "Creator": None}}
    # Font embedding (pdf.fonttype 42) is read at save time, so the style must hold here too.
    with style_context():
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata.get(fmt))
            written.append(path)
    return written
