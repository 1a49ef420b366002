"""Write a CT volume as a real DICOM CT Image Storage series, one file per slice (pydicom).

The array is indexed (i, j, k): i along +x (LPS, patient left) = DICOM columns, j along +y
(posterior) = DICOM rows, k along +z (superior) = slices. Pixel data are uint16 with
RescaleIntercept -1024, so stored value = HU + 1024.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

RESCALE_INTERCEPT = -1024.0


@dataclass
class SeriesInfo:
    """What the header says about the subject and the study; all pseudonymous or synthetic."""

    patient_id: str  # pseudonymous study id, also used as PatientName
    patient_sex: str  # "M" / "F" / "O" / ""
    study_date: str  # YYYYMMDD, synthetic calendar
    study_time: str  # HHMMSS
    study_id: str
    series_description: str
    body_part: str
    uid_entropy: list[str]  # seed + scan id: makes every UID deterministic and unique


def _ds(value: float) -> str:
    """A decimal string (DS, at most 16 characters) that reads back as the same float."""
    return format(float(value), ".10g")


def hu_to_stored(hu: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(hu - RESCALE_INTERCEPT), 0, 65535).astype(np.uint16)


def write_ct_series(stored: np.ndarray, origin_lps: tuple[float, float, float], pixel_mm: float,
                    slice_mm: float, info: SeriesInfo, out_dir: Path) -> list[Path]:
    """Write `stored` (uint16, (i, j, k)) as out_dir/IM000001.dcm ... (slice k = 0 first)."""
    if stored.dtype != np.uint16 or stored.ndim != 3:
        raise ValueError(f"DICOM pixel data must be a 3-D uint16 array, got {stored.dtype} {stored.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_cols, n_rows, n_slices = stored.shape

    def uid(*parts) -> str:
        return generate_uid(entropy_srcs=[*info.uid_entropy, *map(str, parts)])

    study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame-of-reference")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "TUMORBURDEN"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = info.study_date
    ds.SeriesDate = info.study_date
    ds.ContentDate = info.study_date
    ds.StudyTime = info.study_time
    ds.SeriesTime = info.study_time
    ds.ContentTime = info.study_time
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "tumorburden-synth"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic CT thorax-abdomen-pelvis"
    ds.SeriesDescription = info.series_description
    ds.ManufacturerModelName = "phantom"
    # Patient module: the pseudonymous id only; type-2 attributes present but empty where unknown.
    ds.PatientName = info.patient_id
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = info.patient_sex
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = info.body_part
    ds.SliceThickness = _ds(slice_mm)
    ds.SpacingBetweenSlices = _ds(slice_mm)
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = info.study_id
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = n_rows
    ds.Columns = n_cols
    ds.PixelSpacing = [_ds(pixel_mm), _ds(pixel_mm)]  # row spacing (y), column spacing (x)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = f"{RESCALE_INTERCEPT:.0f}"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"

    x0, y0, z0 = origin_lps
    paths = []
    for k in range(n_slices):
        sop_uid = uid("slice", k)
        meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        z = z0 + k * slice_mm
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        # rows are j, columns are i: the (i, j) slice transposed, C-contiguous
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = out_dir / f"IM{k + 1:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
