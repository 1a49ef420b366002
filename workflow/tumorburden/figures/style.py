"""The shared figure style: tumorburden.mplstyle, the palette, sizes, and deterministic saving.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot,
so no GUI backend or global figure state is involved (and importing this module does not
switch the backend of a user's notebook).
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# fontTools logs every glyph-subsetting step at INFO while PDFs embed fonts; keep run logs readable.
logging.getLogger("fontTools").setLevel(logging.WARNING)

STYLE_PATH = Path(__file__).with_name("tumorburden.mplstyle")
MM_PER_INCH = 25.4
SINGLE_COLUMN_MM = 89.0
DOUBLE_COLUMN_MM = 183.0

# Okabe & Ito (2008) colour-blind-safe palette
OKABE_ITO = {
    "blue": "#0072B2", "vermillion": "#D55E00", "green": "#009E73", "purple": "#CC79A7",
    "orange": "#E69F00", "sky": "#56B4E9", "yellow": "#F0E442", "black": "#000000",
}
GROUP_COLOURS = {"low": OKABE_ITO["blue"], "high": OKABE_ITO["vermillion"], "all": OKABE_ITO["black"]}


def style_context():
    """Context in which figures get the shared style (rcParams apply when artists are made)."""
    return matplotlib.style.context(str(STYLE_PATH))


def new_figure(width_mm: float = SINGLE_COLUMN_MM, height_mm: float = 75.0) -> Figure:
    fig = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH))
    FigureCanvasAgg(fig)
    return fig


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
            path = stem.with_suffix(f".{fmt}")
            fig.savefig(path, format=fmt, dpi=dpi, metadata=metadata.get(fmt))
            written.append(path)
    return written
