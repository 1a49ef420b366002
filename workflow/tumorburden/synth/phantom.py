"""The body phantom of the synthetic trial, as analytic geometry (brief: "The synthetic phantom").

One function, `tissue_at`, answers "which tissue is at these points" for any array of
LPS millimetre coordinates. The trial design uses it on a few thousand points to place
lesions inside their host organ; the renderer uses it on the voxel grid. Sharing it is
what guarantees that a lesion drawn "in the liver" lands in the liver of the image.

Coordinates: LPS (+x patient left, +y posterior, +z superior). Along z the anatomy is
laid out in `u` = mm above the lowest slice edge (0 = pelvis, SCAN_LENGTH_MM = lung apices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumorburden import labels

# Length covered by every synthetic scan, pelvis to lung apices; slices = round(length / slice_mm).
SCAN_LENGTH_MM = 450.0
# z (LPS) of u = 0; puts the thorax-abdomen junction near z = 0 like a real table position.
Z_OF_U0_MM = -300.0

# Tissue codes: an internal map, finer than the label map, because several labels share
# a code with different HU (heart, aorta, bone are all label 0) and lesions differ by site.
AIR, SAT, MUSCLE, FAT, LUNG, HEART, AORTA, LIVER, BONE = range(9)
LESION_LUNG, LESION_LIVER, LESION_NODE, LESION_SOFT = 9, 10, 11, 12

HU = np.array([-1000, -100, 50, -100, -850, 160, 160, 120, 400, 35, 55, 45, 45], dtype=np.float32)
LABEL = np.array(
    [
        labels.BACKGROUND, labels.SAT, labels.MUSCLE, labels.VAT, labels.LUNG,
        labels.BACKGROUND, labels.BACKGROUND, labels.LIVER, labels.BACKGROUND,
        labels.LESION, labels.LESION, labels.NODE_LESION, labels.LESION,
    ],
    dtype=np.uint8,
)

# Per lesion site: the tissue that must host it, and the tissue code it is drawn with.
SITE_HOST = {"lung": LUNG, "liver": LIVER, "node": FAT, "soft_tissue": SAT}
SITE_CODE = {"lung": LESION_LUNG, "liver": LESION_LIVER, "node": LESION_NODE, "soft_tissue": LESION_SOFT}

# z ranges (u, mm) of the organs.
PELVIS_TOP_U = 100.0
LIVER_U = (180.0, 310.0)  # dome at 310, directly under the right lung base
RIGHT_LUNG_BASE_U = 310.0
LEFT_LUNG_BASE_U = 295.0
LUNG_TAPER_MM = 190.0  # lungs narrow towards the apices over this height
HEART_U = (290.0, 390.0)
AORTA_U = (90.0, 440.0)
SPINE_RADIUS_MM = 18.0
AORTA_RADIUS_MM = 12.0


@dataclass(frozen=True)
class Body:
    """Per-patient body shape (mm): elliptic cylinder, subcutaneous fat, muscle ring."""

    a: float  # semi-axis left-right
    b: float  # semi-axis anterior-posterior
    sat: float  # subcutaneous fat thickness
    muscle: float  # muscle ring thickness

    @property
    def cavity(self) -> tuple[float, float]:
        return self.a - self.sat - self.muscle, self.b - self.sat - self.muscle


def draw_body(rng: np.random.Generator) -> Body:
    return Body(
        a=float(rng.uniform(150.0, 185.0)),
        b=float(rng.uniform(105.0, 130.0)),
        sat=float(rng.uniform(10.0, 30.0)),
        muscle=float(rng.uniform(8.0, 15.0)),
    )


def _inside_ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _inside_ellipsoid(x, y, u, cx, cy, cu, ax, ay, au):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((u - cu) / au) ** 2 <= 1.0


def tissue_at(x, y, u, body: Body) -> np.ndarray:
    """Tissue code at LPS points (x, y) mm and height u mm above the pelvis; arrays broadcast.

    Called with x (N,1,1), y (1,N,1), u (1,1,K) it renders a grid; with three (n,) arrays it
    classifies points. In-plane shapes that do not depend on u are evaluated in 2-D only.
    """
    x, y, u = np.asarray(x, float), np.asarray(y, float), np.asarray(u, float)
    shape = np.broadcast_shapes(x.shape, y.shape, u.shape)
    t = np.full(shape, AIR, dtype=np.uint8)
    ca, cb = body.cavity
    in_scan = (u >= 0.0) & (u <= SCAN_LENGTH_MM)

    def paint(mask, code):
        np.copyto(t, np.uint8(code), where=mask)

    paint(_inside_ellipse(x, y, 0.0, 0.0, body.a, body.b) & in_scan, SAT)
    paint(_inside_ellipse(x, y, 0.0, 0.0, body.a - body.sat, body.b - body.sat) & in_scan, MUSCLE)
    cavity = _inside_ellipse(x, y, 0.0, 0.0, ca, cb) & in_scan
    paint(cavity, FAT)

    # Liver: right upper abdomen (patient right = -x), dome under the right lung.
    lu0, lu1 = LIVER_U
    paint(cavity & _inside_ellipsoid(x, y, u, -0.42 * ca, -0.05 * cb, (lu0 + lu1) / 2,
                                      0.52 * ca, 0.80 * cb, (lu1 - lu0) / 2), LIVER)

    # Lungs: elliptic cross-sections that taper towards the apices.
    for side, base in ((+1.0, LEFT_LUNG_BASE_U), (-1.0, RIGHT_LUNG_BASE_U)):
        h = np.clip((u - base) / LUNG_TAPER_MM, 0.0, 1.0)
        scale = np.where(u >= base, np.sqrt(1.0 - h**2), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lung = ((x - side * 0.48 * ca) / (0.40 * ca)) ** 2 + ((y - 0.05 * cb) / (0.78 * cb)) ** 2 <= scale**2
        paint(cavity & lung & (scale > 0), LUNG)

    # Paraspinal muscles either side of the spine, merging into the posterior muscle ring.
    spine_y = cb - 30.0
    for side in (+1.0, -1.0):
        paint(_inside_ellipse(x, y, side * 32.0, cb - 20.0, 26.0, 24.0) & in_scan, MUSCLE)

    hu0, hu1 = HEART_U
    paint(cavity & _inside_ellipsoid(x, y, u, 0.12 * ca, -0.35 * cb, (hu0 + hu1) / 2,
                                      0.38 * ca, 0.42 * cb, (hu1 - hu0) / 2), HEART)
    au0, au1 = AORTA_U
    aorta_y = spine_y - SPINE_RADIUS_MM - AORTA_RADIUS_MM - 4.0
    paint(_inside_ellipse(x, y, 12.0, aorta_y, AORTA_RADIUS_MM, AORTA_RADIUS_MM) & (u >= au0) & (u <= au1), AORTA)
    paint(_inside_ellipse(x, y, 0.0, spine_y, SPINE_RADIUS_MM, SPINE_RADIUS_MM) & in_scan, BONE)
    for side in (+1.0, -1.0):  # iliac wings
        paint(_inside_ellipse(x, y, side * 0.62 * ca, 0.15 * cb, 14.0, 0.45 * cb)
              & (u >= 0.0) & (u <= PELVIS_TOP_U), BONE)
    return t


# Where to look for a lesion centre of each site: (x, y, u) boxes as functions of the body.
def site_box(site: str, body: Body) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    ca, cb = body.cavity
    if site == "lung":
        return (-0.9 * ca, 0.9 * ca), (-0.75 * cb, 0.85 * cb), (LEFT_LUNG_BASE_U, SCAN_LENGTH_MM - 10.0)
    if site == "liver":
        return (-0.95 * ca, 0.1 * ca), (-0.85 * cb, 0.75 * cb), LIVER_U
    if site == "node":
        return (-ca, ca), (-cb, cb), (PELVIS_TOP_U, 420.0)
    if site == "soft_tissue":
        return (-body.a, body.a), (-body.b, body.b), (30.0, 420.0)
    raise ValueError(f"unknown lesion site {site!r} (use one of {sorted(SITE_HOST)})")
