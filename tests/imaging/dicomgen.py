"""Tiny DICOM CT series for the imaging tests, written with pydicom (and SimpleITK's GDCM writer
for JPEG Lossless SV1, which pydicom cannot encode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom import dcmread
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ROWS, COLS = 12, 10
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SYNTAXES = {"rle": RLELossless, "jpegls": JPEGLSLossless, "j2k": JPEG2000Lossless, "jpeg_sv1": JPEGLosslessSV1}


def _jpeg_sv1(stored: np.ndarray) -> bytes:
    """JPEG Lossless SV1 codestream of one slice, from GDCM (via SimpleITK)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        w = sitk.ImageFileWriter()
        w.SetImageIO("GDCMImageIO")
        w.SetFileName(f"{tmp}/x.dcm")
        w.SetUseCompression(True)
        w.SetCompressor("JPEG")
        w.Execute(sitk.GetImageFromArray(stored))
        ds = dcmread(f"{tmp}/x.dcm")
        assert ds.file_meta.TransferSyntaxUID == JPEGLosslessSV1
        from pydicom.encaps import generate_fragmented_frames

        return b"".join(next(generate_fragmented_frames(ds.PixelData)))


def write_series(folder: Path, *, n=7, rows=ROWS, cols=COLS, pixel=(0.7, 0.9), step=2.5, thickness=None,
                 iop=AXIAL, origin=(-40.0, -30.0, 100.0), tilt_shift=(0.0, 0.0, 0.0), positions=None,
                 signed=True, bits_stored=16, slope=1.0, intercept=-1024.0, skip=(), names=None,
                 uid=None, study_uid="1.2.826.0.1.3680043.8.498.1", modality="CT", image_type=None,
                 description="abdomen portal venous", kernel="B30f", series_number=2, syntax=None,
                 patient_id="HOSP123", patient_name="Doe^Jane", birth_date="19500101",
                 study_date="20240105", seed=0, overrides=None, air=True) -> np.ndarray:
    """Write an n-slice series; returns the expected HU as (column, row, slice) along the normal.

    `positions` (mm along the normal per slice) overrides the regular `step`; `tilt_shift` moves
    each next slice in-plane (gantry tilt); `overrides` maps slice index -> {keyword: value}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    uid = uid or generate_uid()
    iop_arr = np.array(iop, dtype=float)
    normal = np.cross(iop_arr[:3], iop_arr[3:])
    positions = positions if positions is not None else [k * step for k in range(n)]
    hu = np.zeros((cols, rows, len(positions)), dtype=np.float64)
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    for k, t in enumerate(positions):
        stored = rng.integers(max(lo, -1000), min(hi, 1500) + 1, size=(rows, cols))
        if air:
            stored[0, 0] = max(lo, min(hi, round((-1000 - intercept) / slope)))  # a voxel of air
        hu[:, :, k] = (stored * slope + intercept).T
        if k in skip:
            continue
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT if modality == "CT" else MR
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = names[k] if names else f"slice{k:03d}.dcm"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = sop_uid
        ds.Modality = modality
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = birth_date
        ds.PatientSex = "F"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = study_date
        ds.StudyTime = "101500"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.ConvolutionKernel = kernel
        ds.ImageType = image_type or ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = len(positions) - k  # the reverse of the spatial order, on purpose
        ds.FrameOfReferenceUID = study_uid + ".9"
        ds.ImagePositionPatient = [float(v) for v in np.array(origin) + normal * t + np.array(tilt_shift) * k]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.PixelSpacing = [float(v) for v in pixel]
        ds.SliceThickness = thickness if thickness is not None else step
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "HU"
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
        for key, value in (overrides or {}).get(k, {}).items():
            setattr(ds, key, value)
        if syntax == "implicit":
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        elif syntax == "no_preamble":  # ACR-NEMA-like: a bare implicit-VR data set, no preamble/meta
            from pydicom.filebase import DicomFileLike

            with open(folder / name, "wb") as fh:
                fp = DicomFileLike(fh)
                fp.is_little_endian, fp.is_implicit_VR = True, True
                from pydicom.filewriter import write_dataset

                write_dataset(fp, ds)
            continue
        elif syntax == "jpeg_sv1":
            ds.PixelData = encapsulate([_jpeg_sv1(stored.astype(np.int16 if signed else np.uint16))])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        elif syntax is not None:
            ds.compress(SYNTAXES[syntax])
        ds.save_as(folder / name, enforce_file_format=True)
    return hu


def write_enhanced(folder: Path, **kwargs) -> np.ndarray:
    """An enhanced (legacy-converted) multi-frame CT made by highdicom from a classic series."""
    import highdicom as hd

    src = folder.parent / (folder.name + "_classic")
    hu = write_series(src, **kwargs)
    datasets = [dcmread(p) for p in sorted(src.iterdir())]
    folder.mkdir(parents=True, exist_ok=True)
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=generate_uid(), series_number=9,
        sop_instance_uid=generate_uid(), instance_number=1)
    mf.save_as(folder / "enhanced.dcm")
    for p in src.iterdir():
        p.unlink()
    src.rmdir()
    return hu


def sitk_read(folder: Path, series_uid: str | None = None, files: list | None = None):
    """SimpleITK's reading (GDCM series sort) as (array (col,row,slice), RAS affine)."""
    reader = sitk.ImageSeriesReader()
    if files is None:
        files = reader.GetGDCMSeriesFileNames(str(folder), series_uid) if series_uid else reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    img = reader.Execute()
    return sitk_arrays(img)


def sitk_arrays(img):
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return arr, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
