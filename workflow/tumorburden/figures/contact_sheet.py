"""QC contact sheets: the per-scan segmentation overlays (qc/overlays/<scan_id>.png) on pages
of ``contact_sheet_columns`` x ``contact_sheet_rows`` thumbnails, scan ID under each, in the
order given (the rule passes scans.tsv order: patient by patient, scan by scan).
Written as qc/contact_sheet_p<page>.png + .pdf.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from matplotlib.image import imread

from tumorburden.figures import names
from tumorburden.figures import settings as fsettings
from tumorburden.figures import style

log = logging.getLogger(__name__)


n_pages = fsettings.contact_sheet_pages


def contact_sheet_figure(overlays: list[Path], columns: int, title: str = ""):
    """(Figure, scan IDs drawn in reading order) for one page of overlay PNGs."""
    overlays = [Path(p) for p in overlays]
    rows = max(1, math.ceil(len(overlays) / columns))
    cell_mm = style.DOUBLE_COLUMN_MM / columns
    height = rows * (cell_mm + 3.5) + 8.0
    names = []
    with style.style_context():
        fig = style.new_figure(style.DOUBLE_COLUMN_MM, height)
        for k, path in enumerate(overlays):
            r, c = divmod(k, columns)
            left = c / columns
            bottom = 1 - (8.0 + (r + 1) * (cell_mm + 3.5)) / height
            ax = fig.add_axes([left + 0.004, bottom + 3.5 / height, 1 / columns - 0.008, cell_mm / height])
            try:
                img = imread(path)
            except (OSError, SyntaxError, ValueError) as exc:
                raise ValueError(f"{path}: not a readable PNG overlay ({exc}); re-run the segmentation QC "
                                 f"for this scan") from exc
            ax.imshow(img, interpolation="antialiased")
            ax.set_axis_off()
            name = path.stem
            names.append(name)
            fig.text(left + 0.5 / columns, bottom + 1.6 / height, name, ha="center", va="center", fontsize=5.5,
                     gid=f"scan:{name}")
        if title:
            fig.text(0.005, 1 - 4.0 / height, title, va="center", fontweight="bold", fontsize=7)
    return fig, names


def write_contact_sheets(overlays: list[Path], out_dir: Path, settings: dict | None = None) -> list[Path]:
    """qc/contact_sheet_p<k>.png/.pdf, k = 1 .. n_pages; every overlay on exactly one page."""
    s = fsettings.resolve(settings)
    cols, rows = int(s["contact_sheet_columns"]), int(s["contact_sheet_rows"])
    per_page = cols * rows
    missing = [str(p) for p in overlays if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: QC overlay not found ({len(missing)} missing; run the segment "
                                f"stage for these scans)")
    pages = n_pages(len(overlays), cols, rows)
    written = []
    for page in range(pages):
        chunk = overlays[page * per_page:(page + 1) * per_page]
        fig, _ = contact_sheet_figure(chunk, cols, f"Segmentation QC overlays, page {page + 1} of {pages}")
        written += style.save(fig, Path(out_dir) / names.contact_sheet_stem(page + 1), s["formats"], int(s["dpi"]))
    log.info("wrote %d contact sheet page(s) of %d overlays", pages, len(overlays))
    return written



