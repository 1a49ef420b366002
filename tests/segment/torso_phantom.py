"""A small torso phantom in the shared spec's spirit (not the synth renderer: built here)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tumorburden import labels as L


def make_phantom(shape=(64, 64, 48), spacing=(4.0, 4.0, 4.0), scale=0.75, seed=0,
                 blur_mm=1.2, noise_hu=12.0, lesions=True, extra_lesions=None):
    """Returns (hu, truth labels, RAS affine, lesion spheres {name: (centre_mm, radii_mm)}).

    Array axes: i = RAS x (patient right +), j = RAS y (anterior +), k = z (superior +).
    `extra_lesions`: {name: (centre_mm, radii_mm, hu, label)}, the centre's x and y in units of
    the scale-free layout below (`put` takes mm), drawn after the standard lesions.
    """
    nx, ny, nz = shape
    dx, dy, dz = spacing
    x = (np.arange(nx) - (nx - 1) / 2) * dx
    y = (np.arange(ny) - (ny - 1) / 2) * dy
    z = np.arange(nz) * dz
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    a, b = 160 * scale, 115 * scale
    fat, mus = 30 * scale, 12 * scale
    length = nz * dz
    hu = np.full(shape, -1000.0)
    lab = np.zeros(shape, np.uint8)

    def ell(cx, cy, ax, by):
        return ((X - cx) / ax) ** 2 + ((Y - cy) / by) ** 2 <= 1

    body = ell(0, 0, a, b)
    ring_out = ell(0, 0, a - fat, b - fat)
    cavity = ell(0, 0, a - fat - mus, b - fat - mus)
    hu[body], lab[body] = -100, L.SAT
    hu[ring_out], lab[ring_out] = 50, L.MUSCLE
    hu[cavity], lab[cavity] = -100, L.VAT
    spine_y = -(b - fat - mus) + 30 * scale  # posterior = -y in RAS
    para = cavity & ell(0, -(b - fat - mus), 55 * scale, 40 * scale)
    hu[para], lab[para] = 50, L.MUSCLE
    spine = ell(0, spine_y, 18 * scale, 18 * scale)
    hu[spine], lab[spine] = 400, L.BACKGROUND
    aorta = ell(0, spine_y + 32 * scale, 11 * scale, 11 * scale)
    hu[aorta], lab[aorta] = 160, L.BACKGROUND
    z_dia = 0.55 * length
    lung_r = ell(55 * scale + 8, 10 * scale, 45 * scale, 55 * scale) & (Z > z_dia) & (Z < length - 8)
    lung_l = ell(-55 * scale - 8, 10 * scale, 45 * scale, 55 * scale) & (Z > z_dia) & (Z < length - 8)
    for m in (lung_r, lung_l):
        hu[m], lab[m] = -850, L.LUNG
    heart = (((X + 10) / (40 * scale)) ** 2 + ((Y - 40 * scale) / (35 * scale)) ** 2
             + ((Z - z_dia - 30) / 40) ** 2 <= 1) & cavity & ~lung_r & ~lung_l
    hu[heart], lab[heart] = 160, L.BACKGROUND
    liver = (((X - 55 * scale) / (60 * scale)) ** 2 + ((Y - 5) / (55 * scale)) ** 2
             + ((Z - z_dia + 25) / 45) ** 2 <= 1) & cavity & ~lung_r & ~aorta & ~spine
    hu[liver], lab[liver] = 120, L.LIVER
    spheres = {}
    if lesions:
        def put(name, centre, radii, value, label):
            m = (((X - centre[0]) / radii[0]) ** 2 + ((Y - centre[1]) / radii[1]) ** 2
                 + ((Z - centre[2]) / radii[2]) ** 2) <= 1
            hu[m], lab[m] = value, label
            spheres[name] = (centre, radii, m)

        put("lung", (-55 * scale - 8, 10 * scale, z_dia + 0.25 * length), (10, 10, 10), 35, L.LESION)
        put("liver", (55 * scale + 5, 5, z_dia - 20), (11, 11, 11), 55, L.LESION)
        put("node", (-50 * scale, -5, 0.3 * length), (9, 7, 8), 45, L.NODE_LESION)
        put("sat", (0, b - fat / 2, 0.3 * length), (12, 7, 9), 45, L.LESION)
        for name, (centre, radii, value, label) in (extra_lesions or {}).items():
            put(name, centre, radii, value, label)
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(hu, [blur_mm / d for d in spacing], mode="nearest")
    image = image + rng.normal(0, noise_hu, shape)
    affine = np.diag([dx, dy, dz, 1.0])
    affine[:3, 3] = [x[0], y[0], 0.0]
    return image.astype(np.float32), lab, affine, spheres
