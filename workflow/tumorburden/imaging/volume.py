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


class ImageError(ValueError):
    """An image or mask the pipeline cannot use: one line naming the file, the problem and what to do."""


MIN_EXTENT = 2  # voxels along every axis: a single slice has no coronal view, no 3-D neighbourhood
MAX_CONDITION = 1e6  # of the affine's 3x3 part: beyond, the voxel axes are (numerically) degenerate


def affine_problem(affine: np.ndarray) -> str | None:
    """Why a 4x4 voxel-to-mm affine cannot be used (non-finite, a zero voxel axis, not invertible), or None."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        return "its affine has NaN or infinite entries"
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(sizes <= 0):
        return f"its affine gives voxel sizes {_mm(sizes)} mm: a zero voxel axis"
    if np.linalg.cond(affine[:3, :3]) > MAX_CONDITION:
        return f"its affine is not invertible (voxel axes {_mm(sizes)} mm lie in one plane or line)"
    return None


def _mm(values) -> str:
    return "x".join(f"{v:.4g}" for v in values)


def header_problem(header, ndim: int) -> str | None:
    """Why the geometry of a NIfTI header, as stored (before nibabel's fixes), cannot be trusted, or None.

    nibabel reads a zero pixdim as 1 mm and falls back on pixdim when no form code is set: a
    wrong voxel size would go unnoticed through every volume. So the stored pixdim of each
    spatial axis must be finite and nonzero, and every affine the header declares (qform and
    sform with a nonzero code, or the pixdim-based one when neither is) finite and invertible."""
    spatial = min(max(ndim, 1), 3)
    pixdim = np.asarray(header["pixdim"][1:1 + spatial], dtype=np.float64)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        return (f"pixdim (voxel size) {_mm(pixdim)} mm has a zero or non-finite entry; "
                "the voxel size is unknown (write the image again with its spacing)")
    forms = []
    try:
        if int(header["sform_code"]) > 0:
            forms.append(("sform", header.get_sform()))
        if int(header["qform_code"]) > 0:
            forms.append(("qform", header.get_qform()))
        if not forms:
            forms.append(("pixdim-based affine (no qform or sform code)", header.get_base_affine()))
    except Exception as exc:  # nibabel raises several kinds on a corrupt quaternion or code
        return f"the header's affine cannot be computed ({' '.join(str(exc).split())[:120]})"
    for name, affine in forms:
        problem = affine_problem(affine)
        if problem:
            return f"{name}: {problem}; fix the header (qform/sform) or write the image again with its geometry"
    return None


def _stored_header(img):
    """The header as stored in the file (nibabel's loaded header has zero pixdims set to 1)."""
    source = img.file_map["header"] if "header" in img.file_map else img.file_map["image"]  # .hdr/.img, or .nii
    klass = type(img.header)
    with nib.openers.ImageOpener(source.filename or source.fileobj) as fh:
        return klass.from_fileobj(fh, check=False)


def load_nifti(path: str | Path, dtype=None, what: str = "image", formats: str = "NIfTI",
               give: str = "a .nii/.nii.gz file") -> Volume:
    """A NIfTI image or mask as a Volume, checked at the door: readable, 3-D, a usable geometry
    (header_problem), at least MIN_EXTENT voxels along every axis and no NaN or infinite voxel.
    Any problem is an ImageError naming the file; `what` names it in the message."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        img = nib.load(str(path))
        stored = _stored_header(img)
    except Exception as exc:  # nibabel raises many kinds for a damaged or foreign file
        raise ImageError(f"{path}: cannot read the {what} as {formats} ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]}); give {give}") from None
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ImageError(f"{path}: the {what} must be 3-D, got shape {tuple(img.shape)}")
    problem = header_problem(stored, 3)
    if problem:
        raise ImageError(f"{path}: {what} {problem}")
    thin = [k for k, n in enumerate(shape) if n < MIN_EXTENT]
    if thin:
        raise ImageError(f"{path}: the {what} has shape {shape}, {shape[thin[0]]} voxel(s) along axis {thin[0]}; "
                         f"the pipeline needs a volume of at least {MIN_EXTENT} voxels along every axis "
                         "(is it a single slice of a series?)")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated data, bad scaling
        raise ImageError(f"{path}: cannot read the {what}'s voxels ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]}); write the file again") from None
    data = data.reshape(shape)
    if data.dtype.kind in "fc":
        bad = ~np.isfinite(data)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ImageError(f"{path}: the {what} has {int(bad.sum())} NaN or infinite voxel(s) (first at voxel "
                             f"{first}); fill them (e.g. with the background value) and write it again")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return Volume(np.asarray(data), img.affine)


def save_nifti(volume: Volume, path: str | Path, dtype=None) -> None:
    """Write with both qform and sform set to the affine, so every reader agrees."""
    problem = affine_problem(volume.affine)
    if problem:  # nibabel would fail with a HeaderDataError that names no file
        raise ImageError(f"{path}: not written: {problem}")
    data = volume.array if dtype is None else volume.array.astype(dtype, copy=False)
    img = nib.Nifti1Image(data, volume.affine)
    img.set_qform(volume.affine, code=1)
    img.set_sform(volume.affine, code=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
