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


def write_overlay(image: Volume, labels: np.ndarray, out: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    img, spacing = _canonical(image, image.array)
    lab, _ = _canonical(image, labels)
    centres = lesion_centres(lab, spacing)
    rows = centres or [(tuple(s // 2 for s in lab.shape), 0.0)]
    fig, axes = plt.subplots(len(rows), 2, figsize=(8, 4 * len(rows)), squeeze=False, facecolor="black")
    for r, ((i, j, k), ml) in enumerate(rows):
        # axial: rows = anterior..posterior, columns = right..left; coronal: superior..inferior x right..left
        views = [("axial", img[::-1, ::-1, k].T, lab[::-1, ::-1, k].T, spacing[1] / spacing[0]),
                 ("coronal", img[::-1, j, ::-1].T, lab[::-1, j, ::-1].T, spacing[2] / spacing[0])]
        for c, (name, im, lb, aspect) in enumerate(views):
            ax = axes[r, c]
            ax.imshow(im, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], aspect=aspect, interpolation="nearest")
            for label, colour in COLOURS.items():
                m = lb == label
                if m.any():
                    ax.contour(m.astype(np.float32), levels=[0.5], colors=[colour],
                               linewidths=1.6 if label in L.LESION_LABELS else 0.7)
            what = f"lesion {r + 1}: {ml:.1f} mL" if centres else "no lesion"
            ax.set_title(f"{name}, {what}", color="white", fontsize=9)
            ax.text(0.01, 0.99, "R", color="white", fontsize=8, va="top", transform=ax.transAxes)
            ax.axis("off")
    handles = [Line2D([], [], color=c, lw=2, label=L.NAMES[k].replace("_", " ")) for k, c in COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False, labelcolor="white")
    fig.suptitle(title, color="white", fontsize=10)
    # fixed margins in inches (the legend below, the title above) instead of tight_layout, which
    # measured every title and cost a third of the overlay's CPU
    height = 4.0 * len(rows)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.5 / height, top=1 - 0.45 / height, wspace=0.03,
                        hspace=0.35 / 4.0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, facecolor="black")
    plt.close(fig)
