"""A CT volume or label map: voxel array + 4x4 RAS affine in mm (nibabel convention)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


@dataclass
class Volume:
    """Array indexed (i, j, k) with `affine` mapping voxel indices to RAS+ millimetres."""

    array: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim != 3:
            raise ValueError(f"a Volume is 3-D, got an array of shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def voxel_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def index_to_mm(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel coordinates -> (N, 3) RAS mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def same_grid(self, other: "Volume", atol: float = 1e-3) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)

    def array_on_grid_of(self, other: "Volume", atol: float = 1e-3) -> np.ndarray | None:
        """This array on `other`'s grid when the two differ only in axis order or direction
        (e.g. LPS- vs RAS-ordered voxels); None when resampling would be needed."""
        if self.same_grid(other, atol):
            return self.array
        ornt = nib.orientations.ornt_transform(nib.io_orientation(self.affine), nib.io_orientation(other.affine))
        array = nib.orientations.apply_orientation(self.array, ornt)
        affine = self.affine @ nib.orientations.inv_ornt_aff(ornt, self.shape)
        if Volume(array, affine).same_grid(other, atol):
            return np.ascontiguousarray(array)
        return None


def axial_axis(affine: np.ndarray) -> int:
    """The array axis whose direction is closest to the patient's S-I axis."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(directions[2])))


def load_nifti(path: str | Path, dtype=None) -> Volume:
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return Volume(np.asarray(data), img.affine)


def save_nifti(volume: Volume, path: str | Path, dtype=None) -> None:
    """Write with both qform and sform set to the affine, so every reader agrees."""
    data = volume.array if dtype is None else volume.array.astype(dtype, copy=False)
    img = nib.Nifti1Image(data, volume.affine)
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
