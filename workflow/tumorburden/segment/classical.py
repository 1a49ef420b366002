"""Classical baseline segmentation: published HU thresholds + morphology, no learned weights.

It stands in until a MONAI network lands (`method: classical` in the segmentation
settings; a network method will sit next to it in `segment.run`). It is meant to be
honest on the synthetic trial and a rough first pass on real CT; known limits are listed
at the end of this docstring.

Thresholds (smoothed HU, not tuned to the phantom):
  adipose -190..-30 and skeletal muscle -29..150 (the Alberta protocol, Mitsiopoulos 1998;
  Mourtzakis 2008); air/lung below -500; soft tissue that enhances (contrast-filled blood,
  liver, spleen, kidney) or bone at 100 HU and above.

Steps (axial slices = the array axis closest to the patient's S-I axis):
1. Light Gaussian smoothing (`smooth_sigma_mm`).
2. Body: HU > -500, holes filled per slice, the largest 3-D component.
3. Inside of the wall, per slice: the largest filled region of the dense tissue (>= -29 HU,
   big 3-D components only, so a lesion in the subcutaneous fat is never pulled in),
   closed in-plane by `wall_closing_mm` to bridge small gaps. The wall is the
   non-enhancing soft tissue (-29 HU .. `enhancing_hu`) in big 3-D components that reach
   the rim of that region (the muscle range's effective top is therefore `enhancing_hu`,
   below Alberta's 150, so that an enhancing organ touching the wall is not muscle).
   Lesions touching the wall are split off by shape: the wall's outlines are smooth at the
   scale of a few cm, so, per slice, what an opening with a disc of `wall_bulge_mm` removes
   from the filled wall (outward, into the subcutaneous fat) or from the non-cavity (inward,
   into the visceral fat) by at least `bulge_depth_mm` is not wall; inward candidates must
   also be no longer cranio-caudally than across (paraspinal corners run along the trunk).
   What an enhancing organ encloses (a hypodense metastasis) is not wall either.
   Muscle = the wall minus `interface_mm` around enhancing organs (their partial-volume
   rim falls into the muscle range).
4. Fat (-190..-30 HU): SAT = fat in the body outside the filled wall; VAT = fat inside it.
   Voxels between -500 and -190 HU next to fat (up to `interface_mm`) are fat
   partial-volumed with air or lung (the half-maximum between fat and air is ~ -550 HU),
   so they join the fat they touch.
5. Lungs: air-density components inside the filled wall of at least `min_lung_ml` and 10 %
   of the largest one, holes (vessels, nodules) filled per slice.
6. Liver: among the 3 largest opened components of the `liver_hu` range inside the
   cavity, the first of at least `min_liver_ml` on the patient's right; grown to the
   half-maximum between its median HU and the fat median within `interface_mm`.
7. Lesions: `lesion_hu` voxels outside the wall, opened with a ball of interface_mm / 2
   (removes the partial-volume shells around enhancing organs, vessels and bone), plus
   seeds too small for that opening (a 10 mm lesion is ~3 voxels at 3 mm) that are
   enclosed by tissue they contrast with: non-air structures inside the filled lung, and
   3-D holes of enhancing organs that stay `lesion_contrast_hu` / 2 below `enhancing_hu`
   after averaging within the organ at the `interface_mm` scale (noise does not); each
   candidate is then refined by a local half-maximum threshold (midpoint between its
   core HU, from its deepest voxels, and the median HU of its surroundings on each side
   that differs by `lesion_contrast_hu`), grown from the core within `interface_mm` + 1
   voxel, never into the wall or fat, holes filled. Kept when the volume is in
   [`min_lesion_ml`, `max_lesion_ml`]. A lesion whose surroundings are mostly visceral fat
   is a lymph-node lesion (label 5); any other lesion is label 1.

Known limits (why a trained network replaces this): a lesion embedded in muscle, or
bulging from it by less than `bulge_depth_mm`, stays muscle, and the part of a
wall-attached lesion inside the wall's smooth outline is counted as muscle; enhancing
lesions (>= 100 HU) are missed; on real CT bowel, bladder, kidneys, pancreas, gallbladder,
lung vessels (every non-air hole in the lung is a seed) and lobulated muscle outlines
(buttocks, psoas) produce lesion false positives; psoas inside the cavity is not
muscle unless it touches the wall; the CT table must not touch the patient.
"""

from __future__ import annotations

import logging
import math

import cc3d
import numpy as np
from scipy import ndimage

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, axial_axis

log = logging.getLogger(__name__)

DEFAULTS = {
    "smooth_sigma_mm": 1.0,  # light denoising before thresholds
    "body_hu": -500.0,
    "fat_hu": [-190.0, -30.0],  # Alberta protocol
    "muscle_hu": [-29.0, 150.0],  # Alberta protocol
    "lung_hu": -500.0,  # air-density below this
    "enhancing_hu": 100.0,  # contrast-enhanced organ / blood / bone at or above this
    "bone_hu": 300.0,  # enhancing organs and blood lie below this (bone above)
    "liver_hu": [90.0, 150.0],
    "lesion_hu": [-20.0, 100.0],
    "interface_mm": 3.0,  # partial-volume rim at organ interfaces (~2x the scanner PSF sd)
    "wall_closing_mm": 6.0,  # bridges small gaps in the muscle wall
    "wall_bulge_mm": 25.0,  # the wall's outline is smooth at this radius; what sticks out is lesion
    "bulge_depth_mm": 6.0,  # least protrusion beyond that outline to count (> outline roughness)
    "min_lung_ml": 50.0,
    "min_liver_ml": 200.0,
    "min_lesion_ml": 0.05,
    "max_lesion_ml": 500.0,
    "lesion_contrast_hu": 30.0,  # surroundings closer than this to the core give no edge
    "lesions": True,  # False: body composition only (an external mask supplies lesions)
}

# 6-connected neighbourhoods; the in-plane ones never link two slices (axis 0 = slice here).
CROSS3 = ndimage.generate_binary_structure(3, 1)
PLANE4 = np.zeros((3, 3, 3), bool)
PLANE4[1] = ndimage.generate_binary_structure(2, 1)


def segment_volume(volume: Volume, settings: dict | None = None) -> np.ndarray:
    """uint8 label map on the volume's grid (labels.py)."""
    s = {**DEFAULTS, **(settings or {})}
    ax = axial_axis(volume.affine)
    # Work slice-major, (slice, a, b) C-contiguous, so per-slice operations are contiguous.
    hu = np.ascontiguousarray(np.moveaxis(np.asarray(volume.array, dtype=np.float32), ax, 0))
    sp = np.array(volume.spacing)
    spacing = np.array([sp[ax]] + [sp[i] for i in range(3) if i != ax])
    perm = [ax] + [i for i in range(3) if i != ax]
    seg = _segment(hu, spacing, volume.voxel_ml, volume.affine[:, perm + [3]], s)
    return np.ascontiguousarray(np.moveaxis(seg, 0, ax))


# --- morphology helpers (separable box filters: cost independent of radius) ---------


def _radius(r_mm: float, spacing, planar: bool = False) -> list[int]:
    r = [max(1, int(round(r_mm / d))) for d in spacing]
    if planar:
        r[0] = 0
    return r


def dilate(mask: np.ndarray, r_vox) -> np.ndarray:
    size = [2 * r + 1 for r in r_vox]
    return ndimage.maximum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0).view(bool)


def erode(mask: np.ndarray, r_vox) -> np.ndarray:
    size = [2 * r + 1 for r in r_vox]
    return ndimage.minimum_filter(mask.view(np.uint8), size=size, mode="nearest").view(bool)


def ball(r_mm: float, spacing) -> np.ndarray:
    """Ellipsoidal structuring element of radius r_mm (at least the 6-connected cross)."""
    r = [max(1.0, r_mm / d) for d in spacing]
    grid = np.ogrid[tuple(slice(-int(ri), int(ri) + 1) for ri in r)]
    return sum((g / ri) ** 2 for g, ri in zip(grid, r)) <= 1.0


def fill_slices(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every axial slice (axis 0): background not reaching the slice edge."""
    out = mask.copy()
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        bg = cc3d.connected_components(~mask[k], connectivity=4)
        outside = np.zeros(int(bg.max()) + 1, bool)
        for edge in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
            outside[edge] = True
        outside[0] = True  # label 0 = the mask itself
        out[k] |= ~outside[bg]
    return out


def _offsets(structure: np.ndarray) -> list[tuple[int, int, int]]:
    c = np.array(structure.shape) // 2
    return [tuple(int(v) for v in o - c) for o in np.argwhere(structure)]


def _shift_reduce(mask: np.ndarray, structure: np.ndarray, erode_: bool) -> np.ndarray:
    """Binary erosion/dilation by a small structure as one AND/OR per offset (vectorised)."""
    r = np.array(structure.shape) // 2
    padded = np.pad(mask, [(int(a), int(a)) for a in r], constant_values=False)
    out = mask.copy()
    n = mask.shape
    for off in _offsets(structure):
        view = padded[tuple(slice(int(r[i]) + off[i], int(r[i]) + off[i] + n[i]) for i in range(3))]
        if erode_:
            out &= view
        else:
            out |= view
    return out


def opening(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    # Dilation uses the reflected structure; the ones used here are symmetric.
    return _shift_reduce(_shift_reduce(mask, structure, True), structure, False)


def _components(mask: np.ndarray, connectivity: int = 26):
    lab = cc3d.connected_components(mask, connectivity=connectivity)
    return lab, np.bincount(lab.ravel())


# --- the pipeline -----------------------------------------------------------------


def _segment(hu: np.ndarray, spacing: np.ndarray, voxel_ml: float, affine: np.ndarray, s: dict) -> np.ndarray:
    """`affine` maps the slice-major working indices to RAS mm."""
    sigma = [s["smooth_sigma_mm"] / d for d in spacing]
    sm = ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest") if s["smooth_sigma_mm"] > 0 else hu
    del hu

    body = fill_slices(sm > s["body_hu"])
    body = cc3d.largest_k(body, k=1, connectivity=6) > 0
    if not body.any():
        raise ValueError("no body found (no voxel above the body threshold)")

    fat_lo, fat_hi = s["fat_hu"]
    mus_lo, mus_hi = s["muscle_hu"]
    dense = body & (sm >= mus_lo)  # muscle, organs, bone: anything denser than fat
    # Partial-volume rims at organ interfaces are about interface_mm thick; an opening
    # with a ball of half that radius removes them and keeps anything bulkier.
    rim_ball = ball(s["interface_mm"] / 2, spacing)

    soft = dense & (sm < s["enhancing_hu"])
    inside, wall = _wall(dense, soft, spacing, s)
    seg = np.zeros(sm.shape, np.uint8)
    organs = opening(body & (sm >= s["enhancing_hu"]) & (sm < s["bone_hu"]), rim_ball)
    # A hypodense lesion enclosed by an enhancing organ (a liver metastasis) can join the
    # wall through the organ's partial-volume rim; what the organ encloses is not wall.
    organ_holes = fill_slices(organs) & ~organs
    wall &= ~organ_holes
    # Enhancing organs (not bone) that touch the wall bring a rim of muscle-range partial
    # volume with them; drop the wall within interface_mm of them.
    muscle = wall & (sm <= mus_hi) & ~dilate(organs, _radius(s["interface_mm"], spacing))
    seg[muscle] = L.MUSCLE

    fat = body & (sm >= fat_lo) & (sm <= fat_hi)
    fat_pv = body & (sm >= s["body_hu"]) & (sm < fat_lo)
    n_pv = max(1, math.ceil(s["interface_mm"] / float(spacing[1:].min()) - 1e-6))
    for _ in range(n_pv):
        fat |= _shift_reduce(fat, CROSS3, False) & fat_pv
    seg[fat & ~inside] = L.SAT
    seg[fat & inside] = L.VAT  # fat bridged into the closed wall counts as visceral/intermuscular

    cavity = inside & ~wall
    lung = _lungs(sm, body, inside, voxel_ml, s)
    seg[lung & (seg != L.MUSCLE)] = L.LUNG
    liver = _liver(sm, cavity & ~lung, inside & ~lung & (seg != L.MUSCLE), fat, spacing, voxel_ml, affine, s)
    seg[liver] = L.LIVER

    if s["lesions"]:
        seeds = _embedded_seeds(sm, organs, organ_holes, lung, spacing, s)
        lesions, nodes = _lesions(sm, body, wall, rim_ball, seg, spacing, voxel_ml, s, seeds)
        seg[lesions] = L.LESION
        seg[nodes] = L.NODE_LESION
    return seg


def _big_components(mask: np.ndarray, fraction: float, connectivity: int = 6) -> np.ndarray:
    """Components of at least `fraction` of the largest one's size."""
    lab, sizes = _components(mask, connectivity)
    if len(sizes) <= 1:
        return np.zeros_like(mask)
    sizes[0] = 0
    return (sizes >= fraction * sizes.max())[lab]


def _wall(dense: np.ndarray, soft: np.ndarray, spacing: np.ndarray, s: dict) -> tuple[np.ndarray, np.ndarray]:
    """(filled wall = wall + cavity, wall voxels).

    `inside` is, per slice, the largest filled region of the closed dense tissue; small
    free-floating dense blobs (lesions in fat) are left out so that closing the wall never
    pulls a subcutaneous lesion and its surrounding fat inside. The wall is the soft tissue
    (3-D, big components) that reaches the rim of `inside`.
    """
    r = _radius(s["wall_closing_mm"], spacing, planar=True)
    structural = _big_components(dense, 0.1, 26)
    closed = erode(dilate(structural, r), r) | structural
    filled = fill_slices(closed)
    # Per slice, the largest filled region encloses the cavity.
    inside = np.zeros_like(filled)
    for k in np.flatnonzero(filled.any(axis=(1, 2))):
        lab = cc3d.connected_components(filled[k], connectivity=8)
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        inside[k] = lab == int(np.argmax(sizes))
    inside &= ~_bulges(inside, spacing, s)
    rim = inside & ~_shift_reduce(inside, PLANE4, True)
    wl, sizes = _components(soft & inside, 26)
    on_rim = np.zeros(len(sizes), bool)
    on_rim[np.unique(wl[rim])] = True
    on_rim[0] = False
    if not on_rim.any():
        return inside, np.zeros_like(dense)
    on_rim &= sizes >= 0.1 * sizes[on_rim].max()
    wall = on_rim[wl]
    return inside, wall & ~_dents(inside & ~wall, wall, spacing, s)


def _plane_box(mask: np.ndarray, radius: float, spacing: np.ndarray) -> tuple[slice, slice]:
    """In-plane bounding box of `mask` over all slices, padded by `radius` (+1 voxel)."""
    out = []
    for axis, other in ((1, (0, 2)), (2, (0, 1))):
        idx = np.flatnonzero(mask.any(axis=other))
        pad = int(math.ceil(radius / float(spacing[axis]))) + 1
        out.append(slice(max(0, int(idx.min()) - pad), min(mask.shape[axis], int(idx.max()) + 1 + pad)))
    return tuple(out)


def _dents(cavity: np.ndarray, wall: np.ndarray, spacing: np.ndarray, s: dict) -> np.ndarray:
    """Inward protrusions of the wall into the cavity that are lesions (a node on the wall).

    Per slice, the complement of the cavity opened with a disc of `wall_bulge_mm` loses
    what protrudes into the cavity; what protrudes by at least `bulge_depth_mm` is a dent
    candidate. Anatomy that protrudes (paraspinal muscles, the corners where they meet
    the wall) runs along the trunk, a lesion does not: a candidate is kept when its
    cranio-caudal extent is at most its in-plane extent.
    """
    if s["wall_bulge_mm"] <= 0:
        return np.zeros_like(wall)
    beyond = _beyond_opening(~cavity, wall | cavity, cavity.any(axis=(1, 2)), float(s["wall_bulge_mm"]), spacing)
    lab, keep = _protrusions(wall, beyond, s["bulge_depth_mm"])
    if not keep.any():
        return np.zeros_like(wall)
    boxes = cc3d.statistics(lab, no_slice_conversion=True)["bounding_boxes"]
    for label in np.flatnonzero(keep):
        b = boxes[label]
        ext = [(int(b[2 * i + 1]) - int(b[2 * i]) + 1) * float(spacing[i]) for i in range(3)]
        keep[label] = ext[0] <= max(ext[1], ext[2])
    return keep[lab]


def _bulges(inside: np.ndarray, spacing: np.ndarray, s: dict) -> np.ndarray:
    """Outward protrusions of the filled wall: lesions in the subcutaneous fat that touch the wall.

    The wall's outer outline is smooth on the scale of a few cm (its radius of curvature is
    that of the trunk), so an in-plane opening with a disc of radius `wall_bulge_mm` only
    takes off what sticks out of it; what sticks out by at least `bulge_depth_mm` is a
    lesion (or a lesion plus the fat the wall closing pulled in with it), not wall.
    """
    if s["wall_bulge_mm"] <= 0:
        return np.zeros_like(inside)
    beyond = _beyond_opening(inside, inside, inside.any(axis=(1, 2)), float(s["wall_bulge_mm"]), spacing)
    lab, keep = _protrusions(inside, beyond, s["bulge_depth_mm"])
    return keep[lab]


def _beyond_opening(region, extent, slices, radius, spacing) -> np.ndarray:
    """Per axial slice in `slices`, how far (mm, in-plane) each voxel lies outside `region`
    opened with a disc of `radius`; computed within the in-plane box of `extent`."""
    beyond = np.zeros(region.shape, np.float32)
    box = _plane_box(extent, radius, spacing)
    for k in np.flatnonzero(slices):
        core = ndimage.distance_transform_edt(region[k][box], sampling=spacing[1:]) > radius
        # (a section narrower than the disc has no core: nothing to compare with)
        if core.any():
            beyond[k][box] = ndimage.distance_transform_edt(~core, sampling=spacing[1:]) - radius
    return beyond


def _protrusions(mask, beyond, depth_mm):
    """Components of `mask` beyond the opening, kept (`keep[label]`) when one of their voxels
    protrudes at least `depth_mm`."""
    part = mask & (beyond > 0)
    lab, sizes = _components(part, 26)
    keep = np.zeros(len(sizes), bool)
    keep[np.unique(lab[part & (beyond >= depth_mm)])] = True
    keep[0] = False
    return lab, keep


def _lungs(sm, body, inside, voxel_ml, s) -> np.ndarray:
    air = body & inside & (sm < s["lung_hu"])
    lab, sizes = _components(air, 6)
    if len(sizes) <= 1:
        return np.zeros_like(air)
    sizes[0] = 0
    big = sizes * voxel_ml >= max(s["min_lung_ml"], 0.1 * sizes.max() * voxel_ml)
    lung = big[lab]
    return fill_slices(lung) & body


def _liver(sm, cavity, grow_zone, fat, spacing, voxel_ml, affine, s) -> np.ndarray:
    lo, hi = s["liver_hu"]
    cand = cavity & (sm >= lo) & (sm <= hi)
    # A 3x3x3 opening removes the enhancing rims of blood pools and bone.
    cand = dilate(erode(cand, [1, 1, 1]), [1, 1, 1])
    lab, sizes = _components(cand, 6)
    none = np.zeros_like(cavity)
    if len(sizes) <= 1:
        return none
    sizes[0] = 0
    stats = cc3d.statistics(lab, no_slice_conversion=True)
    centroids, boxes = stats["centroids"], stats["bounding_boxes"]
    cavity_x = affine[0, :3] @ _centre(cavity) + affine[0, 3]
    # The largest candidates in turn: the liver lies on the patient's right (RAS +x).
    for label in np.argsort(sizes, kind="stable")[::-1][:3]:
        if sizes[label] * voxel_ml < s["min_liver_ml"]:
            break
        if affine[0, :3] @ centroids[label] + affine[0, 3] <= cavity_x:
            continue
        r = _radius(s["interface_mm"], spacing)
        b = boxes[label]
        box = tuple(slice(max(0, int(b[2 * i]) - r[i]), min(sm.shape[i], int(b[2 * i + 1]) + 1 + r[i]))
                    for i in range(3))
        core = lab[box] == label
        fat_hu = float(np.median(sm[fat])) if fat.any() else -100.0
        edge = (float(np.median(sm[box][core])) + fat_hu) / 2  # half-maximum towards fat
        grow = dilate(core, r) & grow_zone[box] & (sm[box] >= edge)
        none[box] = fill_slices(core | grow)
        return none
    return none


def _centre(mask: np.ndarray) -> np.ndarray:
    """Centre of mass from 1-D projections (no index arrays on big volumes)."""
    n = float(mask.sum())
    out = []
    for axis in range(3):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis))
        out.append(float(profile @ np.arange(mask.shape[axis])) / n)
    return np.array(out)


def _embedded_seeds(sm, organs, organ_holes, lung, spacing, s) -> np.ndarray:
    """Lesion seeds too small for the rim opening (a 10 mm lesion is ~3 voxels at 3 mm):
    structures enclosed by lung or by an enhancing organ that contrast with it.

    In the lung, whatever is not air-density inside the (hole-filled) lung is a structure.
    In an enhancing organ the holes also hold noise below `enhancing_hu`; a lesion stays
    darker than the threshold by half of `lesion_contrast_hu` after smoothing at the
    partial-volume scale (`interface_mm`), noise does not.
    """
    in_lung = lung & (sm >= s["lung_hu"])
    if not organ_holes.any():
        return in_lung
    # Enclosed in 3-D too: near an organ's top or bottom the slice-wise holes are partial volume.
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(organ_holes))
    enclosed = np.zeros_like(organ_holes)
    enclosed[box] = ndimage.binary_fill_holes(organ_holes[box] | organs[box]) & ~organs[box]
    organ_holes = enclosed
    if not organ_holes.any():
        return in_lung
    sigma = [s["interface_mm"] / d for d in spacing]
    pad = tuple(slice(max(0, b.start - 3 * math.ceil(g)), min(n, b.stop + 3 * math.ceil(g)))
                for b, g, n in zip(box, sigma, sm.shape))
    # Averaged within the organ only (normalised convolution): tissue outside it (lung above
    # the liver dome) must not darken the organ's edge.
    organ = (organs[pad] | organ_holes[pad]).astype(np.float32)
    num = ndimage.gaussian_filter(sm[pad] * organ, sigma=sigma, mode="constant")
    den = ndimage.gaussian_filter(organ, sigma=sigma, mode="constant")
    smooth = num / np.maximum(den, 1e-3)
    dark = np.zeros_like(organ_holes)
    dark[pad] = organ_holes[pad] & (smooth <= s["enhancing_hu"] - s["lesion_contrast_hu"] / 2)
    return in_lung | dark


def _lesions(sm, body, wall, rim_ball, seg, spacing, voxel_ml, s, seeds=None):
    lo, hi = s["lesion_hu"]
    cand = body & (sm >= lo) & (sm < hi) & ~wall
    cand = opening(cand, rim_ball)
    if seeds is not None:
        cand |= seeds & ~wall
    lab, sizes = _components(cand, 26)
    lesions = np.zeros(sm.shape, bool)
    nodes = np.zeros(sm.shape, bool)
    if len(sizes) <= 1:
        return lesions, nodes
    stats = cc3d.statistics(lab, no_slice_conversion=True)
    boxes = stats["bounding_boxes"]
    r_grow = [r + 1 for r in _radius(s["interface_mm"], spacing)]
    r_shell = _radius(max(3.0, 2 * float(spacing.max())), spacing)
    pad = [a + b + 1 for a, b in zip(r_grow, r_shell)]
    max_vox = s["max_lesion_ml"] / voxel_ml
    n_kept = 0
    for label in np.flatnonzero(sizes):
        if label == 0 or sizes[label] > max_vox:
            continue
        b = boxes[label]
        box = tuple(
            slice(max(0, int(b[2 * i]) - pad[i]), min(sm.shape[i], int(b[2 * i + 1]) + 1 + pad[i]))
            for i in range(3)
        )
        core = lab[box] == label
        region, vat_share = _refine(sm[box], core, wall[box], body[box], seg[box], spacing, r_grow, r_shell, s)
        vol = region.sum() * voxel_ml
        if not (s["min_lesion_ml"] <= vol <= s["max_lesion_ml"]):
            continue
        n_kept += 1
        (nodes if vat_share > 0.5 else lesions)[box] |= region
    lesions &= ~nodes
    log.info("%d lesion candidate(s), %d kept", len(sizes) - 1, n_kept)
    return lesions, nodes


def _refine(sm, core, wall, body, seg, spacing, r_grow, r_shell, s):
    """Local half-maximum region from the candidate core; returns (region, share of VAT around).

    The core HU is taken from the candidate's deepest voxels (its rim is partial volume);
    the edge on each side is the midpoint between the core HU and the median HU of the
    surroundings on that side, when the surroundings differ by at least lesion_contrast_hu.
    """
    depth = ndimage.distance_transform_edt(np.pad(core, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    core_hu = float(np.median(sm[core & (depth >= 0.5 * depth.max())]))
    inner = dilate(core, r_grow)
    shell = dilate(inner, r_shell) & ~inner & body
    around = sm[shell]
    c = s["lesion_contrast_hu"]
    lower, upper = -math.inf, math.inf
    below, above = around[around < core_hu - c], around[around > core_hu + c]
    min_n = max(3, int(0.02 * around.size))
    if below.size >= min_n:
        lower = (core_hu + float(np.median(below))) / 2
    if above.size >= min_n:
        upper = (core_hu + float(np.median(above))) / 2
    # Fat-labelled voxels stay fat: a nodule touching the mediastinum must not take the fat
    # whose HU lie above the lung-side edge.
    grown = inner & (sm > lower) & (sm < upper) & ~wall & (seg != L.SAT) & (seg != L.VAT)
    seeds = core & grown
    if not seeds.any():
        return np.zeros_like(core), 0.0
    lab, _ = ndimage.label(grown, structure=np.ones((3, 3, 3), bool))
    keep = np.unique(lab[seeds])
    region = np.isin(lab, keep[keep > 0])
    region = ndimage.binary_fill_holes(region)
    labels_around = seg[shell & ~region]
    vat_share = float(np.mean(labels_around == L.VAT)) if labels_around.size else 0.0
    return region, vat_share
