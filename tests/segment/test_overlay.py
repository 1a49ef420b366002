import numpy as np
from PIL import Image, ImageColor

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume
from tumorburden.segment.overlay import COLOURS, LEGEND_PX, PANEL_PX, write_overlay


def _scan():
    """A body of soft tissue with one lesion on the patient's right (RAS: large x) and liver on the left."""
    hu = np.full((64, 48, 40), -1000.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    hu[8:56, 6:42, :] = 40.0
    labels[44:52, 20:28, 16:24] = L.LESION
    labels[12:24, 14:34, 8:32] = L.LIVER
    return Volume(hu, np.diag([2.0, 2.0, 3.0, 1.0])), labels


def _where(png, colour):
    """(row, column) of the pixels of this colour in the views (the legend's swatches left out)."""
    rgb = np.asarray(Image.open(png).convert("RGB"))[:-LEGEND_PX]
    return np.argwhere((rgb == ImageColor.getrgb(colour)).all(axis=2))


def test_outlines_are_drawn_in_each_labels_colour_the_radiological_way(tmp_path):
    """Patient right on the viewer's left: the lesion (large x) is outlined in the lesion colour in the
    left half of the axial view, the liver (small x) in its colour in the right half."""
    image, labels = _scan()
    write_overlay(image, labels, tmp_path / "o.png", title="SYN-001-S0")
    lesion, liver = _where(tmp_path / "o.png", COLOURS[L.LESION]), _where(tmp_path / "o.png", COLOURS[L.LIVER])
    axial = lambda px: px[px[:, 1] < PANEL_PX]  # noqa: E731  (the first column of views)
    assert len(axial(lesion)) > 20 and len(axial(liver)) > 20
    assert axial(lesion)[:, 1].max() < PANEL_PX / 2 < axial(liver)[:, 1].min()


def test_a_scan_without_lesion_and_a_single_slice_still_give_a_png(tmp_path):
    image, labels = _scan()
    labels[labels == L.LESION] = 0
    write_overlay(image, labels, tmp_path / "none.png")
    flat = Volume(image.array[:, :, 20:21], image.affine)
    write_overlay(flat, labels[:, :, 20:21], tmp_path / "flat.png")
    for name in ("none.png", "flat.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_where(tmp_path / "none.png", COLOURS[L.LESION])) == 0
