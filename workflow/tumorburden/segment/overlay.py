"""QC overlay: one PNG per scan that a radiologist checks in seconds.

Axial and coronal slices through the centre of the largest lesions (up to MAX_LESIONS),
soft-tissue window, each label outlined in its own colour. Displayed the radiological
way: patient right on the viewer's left, anterior / superior at the top.
"""

from __future__ import annotations

from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume

MAX_LESIONS = 2
WINDOW_HU = (-160.0, 240.0)  # abdominal soft-tissue window
COLOURS = {
    L.LESION: "#ff2020", L.NODE_LESION: "#ff9a00", L.MUSCLE: "#3cb44b", L.SAT: "#ffe119",
    L.VAT: "#42d4f4", L.LUNG: "#4363d8", L.LIVER: "#f032e6",
}


def _canonical(volume: Volume, array: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The array in RAS voxel order (nearest axes; the overlay does not need exact obliques)."""
    ornt = nib.orientations.ornt_transform(nib.io_orientation(volume.affine), nib.orientations.axcodes2ornt("RAS"))
    out = nib.orientations.apply_orientation(array, ornt)
    spacing = np.asarray(volume.spacing)[np.argsort(nib.io_orientation(volume.affine)[:, 0])]
    return out, tuple(float(v) for v in spacing)


def lesion_centres(labels: np.ndarray, spacing, n: int = MAX_LESIONS) -> list[tuple[tuple[int, int, int], float]]:
    """(voxel centre, volume mL) of the n largest lesion components."""
    lesion = np.isin(labels, L.LESION_LABELS)
    if not lesion.any():
        return []
    comps = cc3d.connected_components(lesion, connectivity=26)
    stats = cc3d.statistics(comps)
    sizes = np.asarray(stats["voxel_counts"])[1:]
    order = np.argsort(-sizes)[:n]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return [(tuple(int(round(c)) for c in stats["centroids"][k + 1]), float(sizes[k]) * voxel_ml) for k in order]


PANEL_PX = 360  # width of one view in the PNG
LEGEND_PX, TITLE_PX, CAPTION_PX = 44, 24, 20


def _view(hu: np.ndarray, lab: np.ndarray, aspect: float) -> np.ndarray:
    """One view as RGB: the slice in the soft-tissue window, scaled to PANEL_PX wide with square mm
    (nearest neighbour: the voxels as they are), each label's outline in its colour on top, drawn at
    the display's resolution (lesions 2 px wide, the tissues 1 px)."""
    from PIL import ImageColor
    from scipy import ndimage

    rows, cols = hu.shape
    height = max(1, int(round(PANEL_PX * rows * aspect / cols)))
    r = np.minimum((np.arange(height) * rows / height).astype(int), rows - 1)
    c = np.minimum((np.arange(PANEL_PX) * cols / PANEL_PX).astype(int), cols - 1)
    grey = np.clip((hu[np.ix_(r, c)] - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0]) * 255.0, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    big = lab[np.ix_(r, c)]
    for label, colour in COLOURS.items():
        mask = big == label
        if mask.any():
            edge = mask & ~ndimage.binary_erosion(mask, iterations=2 if label in L.LESION_LABELS else 1)
            rgb[edge] = ImageColor.getrgb(colour)
    return rgb


def write_overlay(image: Volume, labels: np.ndarray, out: Path, title: str = "") -> None:
    """The QC PNG: a row per lesion centre (the largest MAX_LESIONS; the volume's centre without a
    lesion), axial and coronal views side by side, drawn into an array with Pillow's text on top:
    matplotlib's contours and layout cost 1.0 CPU-s per demo scan, this 0.12 (BENCHMARKS.md)."""
    from PIL import Image, ImageDraw, ImageFont

    img, spacing = _canonical(image, image.array)
    lab, _ = _canonical(image, labels)
    centres = lesion_centres(lab, spacing)
    rows = centres or [(tuple(s // 2 for s in lab.shape), 0.0)]
    font = ImageFont.load_default(size=12)
    panels = []
    for r, ((i, j, k), ml) in enumerate(rows):
        # axial: rows = anterior..posterior, columns = right..left; coronal: superior..inferior x right..left
        views = [("axial", img[::-1, ::-1, k].T, lab[::-1, ::-1, k].T, spacing[1] / spacing[0]),
                 ("coronal", img[::-1, j, ::-1].T, lab[::-1, j, ::-1].T, spacing[2] / spacing[0])]
        what = f"lesion {r + 1}: {ml:.1f} mL" if centres else "no lesion"
        panels.append([(f"{name}, {what}", _view(np.asarray(im, np.float32), lb, aspect))
                       for name, im, lb, aspect in views])
    row_px = [CAPTION_PX + max(v.shape[0] for _, v in row) for row in panels]
    canvas = Image.new("RGB", (2 * PANEL_PX + 6, TITLE_PX + sum(row_px) + LEGEND_PX), "black")
    draw = ImageDraw.Draw(canvas)
    draw.text((canvas.width // 2, 4), title, fill="white", font=font, anchor="mt")
    y = TITLE_PX
    for row, height in zip(panels, row_px):
        for c, (caption, view) in enumerate(row):
            x = c * (PANEL_PX + 6)
            draw.text((x + PANEL_PX // 2, y + 3), caption, fill="white", font=font, anchor="mt")
            canvas.paste(Image.fromarray(view), (x, y + CAPTION_PX))
            draw.text((x + 3, y + CAPTION_PX + 2), "R", fill="white", font=font)
        y += height
    x = 8
    for label, colour in COLOURS.items():  # the legend under the views, wrapped at the canvas's width
        name = L.NAMES[label].replace("_", " ")
        draw.line((x, y + 14, x + 16, y + 14), fill=colour, width=3)
        draw.text((x + 20, y + 8), name, fill="white", font=font)
        x += 28 + int(draw.textlength(name, font=font))
        if x > canvas.width - 90:
            x, y = 8, y + 18
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
