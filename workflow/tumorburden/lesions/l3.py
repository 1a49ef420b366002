"""Body composition at the third lumbar vertebra (L3), as clinicians read it: one axial slice.

Cross-sectional areas at the middle of L3 stand for the whole body's muscle and fat (Shen et al.,
J Appl Physiol 2004; Mourtzakis et al., Appl Physiol Nutr Metab 2008), and the skeletal muscle
index SMI = muscle area / height² (kinetics/bodycomp.py) is what sarcopenia cut-offs are stated in.

The slice: the axial slice (the array axis closest to the patient's S-I axis) halfway between the
first and last slices holding the L3 vertebra in the scan's organ map (labels.VERTEBRA_L3, from an
organ model of `segmentation.models`; ties of an even span go to the lower index). On it, the
voxels labelled skeletal muscle, SAT and VAT in the label map, times the pixel area (the voxel
volume over the slice spacing), in cm². Undefined, with the reason in `l3_reason`, when the
scan has no organ map, no L3 in it, or an L3 that touches the scan's first or last slice (cut by
the field of view: its middle is unknown).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, axial_axis

NO_ORGAN_MAP = "no organ map: no model of segmentation.models gives the L3 vertebra"


def l3_row(image: Volume, labels: np.ndarray, organs: np.ndarray | None, patient_id: str, scan_id: str) -> pd.DataFrame:
    """The scan's row of schema scan_l3."""
    row = {"patient_id": patient_id, "scan_id": scan_id, "l3_slice_mm": math.nan, "l3_muscle_cm2": math.nan,
           "l3_sat_cm2": math.nan, "l3_vat_cm2": math.nan, "l3_reason": ""}
    ax = axial_axis(image.affine)
    if organs is None:
        row["l3_reason"] = NO_ORGAN_MAP
    else:
        slices = np.flatnonzero(np.any(organs == L.VERTEBRA_L3, axis=tuple(i for i in range(3) if i != ax)))
        if slices.size == 0:
            row["l3_reason"] = "no L3 vertebra in the organ map (outside the scan, or not found by the organ model)"
        elif slices[0] == 0 or slices[-1] == labels.shape[ax] - 1:
            row["l3_reason"] = "the L3 vertebra touches the scan's first or last slice (cut by the field of view)"
        else:
            k = (int(slices[0]) + int(slices[-1])) // 2
            plane = np.take(labels, k, axis=ax)
            pixel_cm2 = image.voxel_ml * 1000.0 / image.spacing[ax] / 100.0
            centre = [s / 2.0 for s in image.shape]
            centre[ax] = k
            row.update(l3_slice_mm=float(image.index_to_mm(np.array(centre))[0, 2]),
                       l3_muscle_cm2=float(np.count_nonzero(plane == L.MUSCLE) * pixel_cm2),
                       l3_sat_cm2=float(np.count_nonzero(plane == L.SAT) * pixel_cm2),
                       l3_vat_cm2=float(np.count_nonzero(plane == L.VAT) * pixel_cm2))
    return pd.DataFrame([row])
