"""A radiologist's review objects as other tools write them, for the tests: a DICOM-SEG written by
highdicom on a CT series, and an RT Structure Set written with pydicom from given contours; and where
on a scan to draw one."""

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from tumorburden.imaging.volume import load_nifti
from tumorburden.labels import NODE_LESION

LESION = (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm)


def sorted_slices(paths):
    """The data sets of a CT series' files, in slice order (along the normal of their orientation)."""
    datasets = [pydicom.dcmread(f) for f in paths]
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(datasets, key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))


def write_seg(datasets, frames, segments, path, description="corrected", **dates):
    """frames: (slice, row, column) segment numbers on the sorted `datasets`; segments: number ->
    (label, category, type); `dates`: highdicom's content_date, content_time, series_date, series_time."""
    import highdicom as hd

    algorithm = hd.AlgorithmIdentificationSequence(name="other tool", version="1", family=codes.DCM.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=name, segmented_property_category=category, segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL if n % 2 else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=None if n % 2 else algorithm)
        for n, (name, category, kind) in sorted(segments.items())]
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=np.ascontiguousarray(frames).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=42, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="radiology", manufacturer_model_name="viewer", software_versions="1", device_serial_number="1",
        series_description=description, **dates)
    seg.save_as(path)
    return path


def write_rtstruct(reference, rois, path, description="review", refer_to_series=True, **dates):
    """rois: ROI name -> list of (n, 3) arrays of contour points in patient coordinates (LPS mm),
    each a closed planar contour; `reference`: a data set of the CT series it was drawn on; `dates`:
    DICOM keywords (StructureSetDate, SeriesTime, InstanceCreationDate, ...) and their values."""
    ds = Dataset()
    for keyword, value in dates.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription, ds.StructureSetLabel = "RTSTRUCT", description, "review"
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = reference.PatientID, reference.StudyInstanceUID, generate_uid()
    frame = Dataset()
    frame.FrameOfReferenceUID = reference.FrameOfReferenceUID
    if refer_to_series:
        series = Dataset()
        series.SeriesInstanceUID = reference.SeriesInstanceUID
        study = Dataset()
        study.ReferencedSOPInstanceUID = reference.StudyInstanceUID
        study.RTReferencedSeriesSequence = Sequence([series])
        frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence(), Sequence()
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, reference.FrameOfReferenceUID
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = Sequence()
        for points in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.6g}" for v in np.asarray(points, float).ravel()]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
    ds.save_as(path, enforce_file_format=True)
    return path


def pixel_outline(ds, col0, col1, row0, row1):
    """The outline of pixels col0..col1 x row0..row1 (inclusive) of slice `ds`, along the pixel
    edges, in patient coordinates from the slice's own position and orientation."""
    ipp = np.asarray(ds.ImagePositionPatient, float)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)

    def at(c, r):
        return ipp + c * col_mm * iop[:3] + r * row_mm * iop[3:]

    a, b, c, d = col0 - 0.5, col1 + 0.5, row0 - 0.5, row1 + 0.5
    return np.array([at(a, c), at(b, c), at(b, d), at(a, d)])


def block_without_node_lesion(segmentation: Path, size: int, n_slices: int) -> tuple[int, int]:
    """(first pixel, middle slice) of a block of size x size pixels (the same rows as columns, so the same
    voxels whichever in-plane axis comes first) on the 3 middle slices where the model found no lymph-node
    lesion: a reviewed 'lesion' voxel the model called a node stays one (docs/review.md), which would make
    the reviewed block two lesions."""
    labels = load_nifti(segmentation, dtype=np.uint8).array
    assert labels.shape[2] == n_slices
    k = n_slices // 2
    for first in range(labels.shape[0] // 2 - 8, 8, -3):
        if not (labels[first:first + size, first:first + size, k - 1:k + 2] == NODE_LESION).any():
            return first, k
    raise AssertionError(f"{segmentation}: no block free of lymph-node lesions")
