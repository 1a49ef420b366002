"""`tumorburden segment`: image.nii.gz -> segmentation.nii.gz (labels.py) + QC overlay.

Engines (`engine` in the segmentation settings):
  monai      a MONAI bundle (`bundle`: the shipped demo model or the user's own) run by
             segment.engine: sliding-window inference, labels back on the scan's grid
  classical  HU thresholds + morphology (segment.classical), the baseline the model is
             scored against
  nnunet     an nnU-Net v2 trained model (`model`: its folder or zip; `nnunet`: its settings)
             run by segment.nnunet

Several models (`models`, a list that replaces `bundle`): MONAI bundles and nnU-Net models, each
giving some of our labels, composed by `precedence` (segment/compose.py, model_labels.py); when
one gives organs, each scan also gets its organ map, scans/<scan_id>/organs.nii.gz.

External segmentations (scans.tsv):
  mask       a lesion mask that replaces the engine's lesions: a NIfTI label map (nonzero =
             lesion) or a DICOM-SEG (every segment not named as one of our tissues = lesion),
             on any grid that covers the lesions: it is brought onto the scan's grid; or an RT
             Structure Set, its lesion ROIs' contours filled on the scan's slices
  bodycomp   a TotalSegmentator `--task tissue_types` output folder: its skeletal_muscle,
             subcutaneous_fat and torso_fat masks replace the engine's body composition
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from tumorburden import labels as L
from tumorburden import tables
from tumorburden.imaging.volume import Volume, load_nifti, save_nifti
from tumorburden.model_labels import DEFAULT_PRECEDENCE, ModelListError, model_list, plan_models
from tumorburden.paths import DEFAULT_BUNDLE, resolve_bundle
from tumorburden.segment import classical, engine, nnunet

log = logging.getLogger(__name__)

# The config's segmentation section also holds `train`: its defaults are segment.train.DEFAULTS,
# kept there so that a segment job never imports the training code (and the simulator it trains on).
DEFAULTS = {
    "engine": "monai",
    "bundle": DEFAULT_BUNDLE,
    "models": [],  # several models composed (model_labels.py); replaces `bundle` when given
    "precedence": DEFAULT_PRECEDENCE,  # where models disagree, the label earlier here wins
    "model": None,  # the nnunet engine's trained model: a folder or its zip
    "nnunet": dict(nnunet.DEFAULTS),
    "dicom_seg": True,
    "threads": 1,  # torch CPU threads per segment job; the workflow's --cores run that many jobs side by side
    **engine.INFERENCE_DEFAULTS,
    **classical.DEFAULTS,
}
ENGINES = ("monai", "classical", "nnunet")
GRID_ATOL_MM = 1e-3
TOTALSEG_TISSUES = {"skeletal_muscle": L.MUSCLE, "subcutaneous_fat": L.SAT, "torso_fat": L.VAT}


def check_settings(s: dict) -> None:
    if model_list(s):
        if s["engine"] == "classical":
            raise ValueError("segmentation.models is set but segmentation.engine is classical; the models replace "
                             "the engine: leave engine at monai, or drop the models list")
        return
    if s["engine"] not in ENGINES:
        raise ValueError(f"segmentation.engine {s['engine']!r} is unknown; choose one of {', '.join(ENGINES)}")
    if s["engine"] == "nnunet" and not s.get("model"):
        raise ValueError(f"segmentation.engine is nnunet but segmentation.model is not set; {nnunet.GET_A_MODEL}")


@dataclass
class ScanJob:
    """One scan of a patient's segmentation job: its image, outputs and external segmentations."""

    scan_id: str
    image: Path
    out: Path
    overlay: Path | None = None
    mask: Path | None = None
    bodycomp: Path | None = None
    dicom_source: bool = True


class Segmenter:
    """The configured engine, made ready once for all the scans of a job: for the monai engine
    torch, MONAI and the bundle's weights load once (about 9 CPU-s on 2 cores against 1-3 s of
    inference per scan); the classical engine needs neither torch nor MONAI."""

    def __init__(self, settings: dict | None = None, threads: int | None = None):
        self.settings = s = {**DEFAULTS, **(settings or {})}
        check_settings(s)
        self.bundle = self.device = self.composed = self.nnunet = None
        if model_list(s):
            import torch

            from tumorburden.segment.compose import ComposedModels

            try:
                plan = plan_models(s)
            except ModelListError as exc:
                raise ValueError(str(exc)) from exc
            if threads:
                torch.set_num_threads(int(threads))
            self.device = engine.pick_device(s["device"])
            self.composed = ComposedModels(plan, s, self.device)
        elif s["engine"] == "monai":
            import torch

            from tumorburden.segment.bundle import load_bundle

            if threads:
                torch.set_num_threads(int(threads))
            self.device = engine.pick_device(s["device"])
            self.bundle = load_bundle(resolve_bundle(s["bundle"]), self.device)
            log.info("model %s %s (%s) on %s", self.bundle.name, self.bundle.version, self.bundle.weights,
                     self.device)
        elif s["engine"] == "nnunet":
            import torch

            if threads:
                torch.set_num_threads(int(threads))
            self.device = engine.pick_device(s["device"])
            self.nnunet = nnunet.NnUNetModel.load(resolve_bundle(s["model"]),
                                                  {**(s.get("nnunet") or {}), "precision": s["precision"]},
                                                  self.device)

    def sources(self) -> dict:
        """Where the record says the lesions and body composition came from (before external masks)."""
        if self.composed is None:
            return {"engine": self.settings["engine"], "lesions": self.settings["engine"],
                    "body_composition": self.settings["engine"]}
        return {"engine": "models:" + "+".join(e.name for e in self.composed.plan.entries),
                "lesions": self.composed.source_of(L.LESION_LABELS),
                "body_composition": self.composed.source_of((L.MUSCLE, L.SAT, L.VAT))}

    def labels(self, image: Volume, image_path: Path, lesions: bool = True) -> np.ndarray:
        """uint8 labels on the image's grid (`lesions` False: the classical engine skips lesion search)."""
        return self.label_maps(image, image_path, lesions)[0]

    def label_maps(self, image: Volume, image_path: Path, lesions: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels of segmentation.nii.gz, the organ map or None when no model gives organs)."""
        s = self.settings
        t0 = time.perf_counter()
        if self.composed is not None:
            labels, organs = self.composed.predict(image)
            log.info("models composed: %.2f s", time.perf_counter() - t0)
            return labels, organs
        organs = None
        if self.bundle is not None or self.nnunet is not None:
            labels, times = (engine.infer_labels(image, self.bundle, s, self.device) if self.bundle is not None
                             else self.nnunet.predict(image))
            log.info("inference: %s", ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in times.items()))
            if self.nnunet is not None and self.nnunet.provides - set(L.NAMES):
                # an nnU-Net model that also gives organs (spleen, bone, ...): they go to the organ map,
                # segmentation.nii.gz keeps its eight labels (as segment/compose.py splits them)
                organs = np.where(np.isin(labels, L.ORGAN_LABELS), labels, 0).astype(np.uint8)
                labels = np.where(np.isin(labels, tuple(L.NAMES)), labels, 0).astype(np.uint8)
        else:
            try:
                labels = classical.segment_volume(image, {**s, "lesions": lesions})
            except ValueError as exc:
                raise ValueError(f"{image_path}: {exc}") from exc
        log.info("%s engine: %.2f s", s["engine"], time.perf_counter() - t0)
        return labels, organs


def segment(image_path: Path, out_path: Path, mask_path: Path | None = None,
            settings: dict | None = None, bodycomp_path: Path | None = None,
            overlay_path: Path | None = None, threads: int | None = None,
            segmenter: Segmenter | None = None) -> np.ndarray:
    """Write the label map of `image_path` to `out_path` (and the QC overlay); returns the labels.
    `segmenter`: an engine already loaded (a patient's job); else one is made from `settings`."""
    return _segment_scan(image_path, out_path, mask_path, settings, bodycomp_path, overlay_path, threads,
                         segmenter)[0]


def _segment_scan(image_path, out_path, mask_path, settings, bodycomp_path, overlay_path, threads,
                  segmenter) -> tuple[np.ndarray, float]:
    """(labels, mL per voxel) of one scan, its files written."""
    t_start = time.perf_counter()
    if segmenter is None:
        # the settings are checked before the image is read, the engine loaded after the inputs are
        check_settings({**DEFAULTS, **(settings or {})})
    if not Path(image_path).exists():
        raise FileNotFoundError(f"{image_path}: image not found; run `tumorburden ingest` on the scan first")
    image = load_nifti(image_path, dtype=np.float32, what="CT image")
    # external inputs are read and checked before the heavy work, so a bad one fails fast
    mask = read_mask(mask_path, image) if mask_path is not None else None
    tissues = read_totalsegmentator(bodycomp_path, image) if bodycomp_path is not None else None
    segmenter = segmenter or Segmenter(settings, threads)
    labels, organs = segmenter.label_maps(image, Path(image_path), lesions=mask is None)
    if mask is not None:
        apply_lesion_mask(labels, mask)
        log.info("lesions from the external mask %s (%d voxels)", mask_path, int(np.count_nonzero(mask)))
    if tissues is not None:
        apply_body_composition(labels, tissues)
        log.info("body composition from TotalSegmentator %s", bodycomp_path)
    counts = np.bincount(labels.ravel(), minlength=len(L.NAMES))
    log.info("labels: %s", ", ".join(f"{L.NAMES[k]} {counts[k] * image.voxel_ml:.1f} mL"
                                     for k in range(1, len(L.NAMES)) if counts[k]))
    save_nifti(Volume(labels, image.affine), out_path, dtype=np.uint8)
    organs_out = L.organ_map_path(out_path)
    if organs is not None:
        save_nifti(Volume(organs, image.affine), organs_out, dtype=np.uint8)
    else:  # no organ model now: an organ map of an earlier configuration must not give sites
        organs_out.unlink(missing_ok=True)
    if overlay_path is not None:
        from tumorburden.segment.overlay import write_overlay

        write_overlay(image, labels, Path(overlay_path), title=Path(out_path).parent.name)
    log.info("segment done in %.2f s", time.perf_counter() - t_start)
    return labels, image.voxel_ml


def segment_patient(patient_id: str, scans: list[ScanJob], record_out: Path, settings: dict | None = None,
                    threads: int | None = None) -> pd.DataFrame:
    """Segment every scan of one patient in this process (the engine loaded once), each to its own
    files; then write the patient's segmentation record (tables.py `segment_record`), the file the
    workflow tracks for the patient's job. Returns the record."""
    s = {**DEFAULTS, **(settings or {})}
    check_settings(s)
    if not scans:
        raise ValueError(f"patient {patient_id}: no scans to segment")
    # every input of the patient is looked for before the engine loads, so a missing one fails fast
    for job in scans:
        for what, path in (("image", job.image), ("external lesion mask", job.mask),
                           ("TotalSegmentator folder", job.bodycomp)):
            if path is not None and not Path(path).exists():
                fix = ("run `tumorburden ingest` on the scan first" if what == "image"
                       else f"fix the {'mask' if 'mask' in what else 'bodycomp'} column of scans.tsv")
                raise FileNotFoundError(f"{path}: {what} of scan {job.scan_id} not found; {fix}")
    segmenter = Segmenter(s, threads)
    source = segmenter.sources()
    rows = []
    for i, job in enumerate(scans, 1):
        log.info("scan %s (%d/%d of patient %s)", job.scan_id, i, len(scans), patient_id)
        labels, voxel_ml = _segment_scan(job.image, job.out, job.mask, s, job.bodycomp, job.overlay, None,
                                         segmenter)
        if not job.dicom_source:
            log.info("%s: no DICOM-SEG for this scan: its source image is a NIfTI file, with no DICOM series "
                     "to reference", job.scan_id)
        counts = np.bincount(labels.ravel(), minlength=len(L.NAMES))
        rows.append({
            "patient_id": patient_id,
            "scan_id": job.scan_id,
            "engine": source["engine"],
            "lesions_from": "mask" if job.mask is not None else source["lesions"],
            "body_composition_from": "totalsegmentator" if job.bodycomp is not None else source["body_composition"],
            "lesion_ml": float(sum(counts[k] for k in L.LESION_LABELS) * voxel_ml),
            "muscle_ml": float(counts[L.MUSCLE] * voxel_ml),
            "sat_ml": float(counts[L.SAT] * voxel_ml),
            "vat_ml": float(counts[L.VAT] * voxel_ml),
        })
    record = tables.check(pd.DataFrame(rows), "segment_record", where=str(record_out))
    Path(record_out).parent.mkdir(parents=True, exist_ok=True)
    record.to_csv(record_out, sep="\t", index=False)
    return record


def apply_lesion_mask(labels: np.ndarray, mask: np.ndarray) -> None:
    """The mask's lesions replace the engine's: engine lesions become background, mask voxels lesions.

    A mask voxel the engine called a lymph-node lesion stays a node lesion (the mask says
    where, the model says what site)."""
    node = labels == L.NODE_LESION
    labels[np.isin(labels, L.LESION_LABELS)] = L.BACKGROUND
    labels[mask] = L.LESION
    labels[mask & node] = L.NODE_LESION


def apply_body_composition(labels: np.ndarray, tissues: np.ndarray) -> None:
    """External muscle/SAT/VAT replace the engine's; lesions stay on top."""
    lesion = np.isin(labels, L.LESION_LABELS)
    labels[np.isin(labels, (L.MUSCLE, L.SAT, L.VAT))] = L.BACKGROUND
    take = (tissues > 0) & ~lesion
    labels[take] = tissues[take]


def _on_image_grid(data: np.ndarray, affine: np.ndarray, image: Volume, path: Path, what: str) -> np.ndarray:
    """A label array from its own grid onto the image's: exact when only axes differ, else
    nearest-neighbour resampling; an error when the lesions do not lie inside the scan."""
    vol = Volume(data, affine)
    exact = vol.array_on_grid_of(image, atol=GRID_ATOL_MM)
    if exact is not None:
        if exact is not vol.array:
            log.info("%s: %s reoriented onto the image grid", path, what)
        return exact
    problem = _outside_scan(data, affine, image)
    if problem:
        raise ValueError(
            f"{path}: {what} grid {vol.shape} {_axes(affine)} does not fit the scan's grid {image.shape} "
            f"{_axes(image.affine)}: {problem}; is it this scan's mask (same frame of reference)? "
            "Resample it onto the image first")
    out = engine.labels_to_grid(data.astype(np.uint8, copy=False), affine, image.shape, image.affine)
    log.info("%s: %s resampled onto the image grid (nearest neighbour)", path, what)
    return out


def _corners_mm(shape, affine, lo=None, hi=None) -> np.ndarray:
    lo = np.zeros(3) if lo is None else np.asarray(lo, float)
    hi = np.asarray(shape, float) - 1 if hi is None else np.asarray(hi, float)
    ijk = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    return ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def _outside_scan(data: np.ndarray, affine: np.ndarray, image: Volume) -> str | None:
    """Why the mask cannot be brought onto the scan, or None: its field of view must overlap the
    scan's and its labelled voxels must lie inside the scan (one voxel of tolerance)."""
    inv = np.linalg.inv(image.affine)
    tol = 1.0 + 0.5 * max(np.linalg.norm(affine[:3, :3], axis=0)) / min(image.spacing)
    upper = np.asarray(image.shape) - 1 + tol

    def in_image_voxels(corners):
        return corners @ inv[:3, :3].T + inv[:3, 3]

    fov = in_image_voxels(_corners_mm(data.shape, affine))
    if np.any(fov.max(axis=0) < -tol) or np.any(fov.min(axis=0) > upper):
        return "its field of view does not overlap the scan at all"
    nz = np.nonzero(data)
    if len(nz[0]):
        lo, hi = [int(a.min()) for a in nz], [int(a.max()) for a in nz]
        box = in_image_voxels(_corners_mm(data.shape, affine, lo, hi))
        if np.any(box.min(axis=0) < -tol) or np.any(box.max(axis=0) > upper):
            return "its labelled voxels extend outside the scan"
    return None


def read_mask(path: Path, image: Volume) -> np.ndarray:
    """A boolean lesion mask on the image's grid, from a NIfTI label map, a DICOM-SEG or an RT
    Structure Set (its ROIs named as our labels: segment/review.py)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: external lesion mask not found; fix the mask column of scans.tsv")
    if _is_dicom(path):
        from tumorburden.segment.review import rasterise_rtstruct, review_modality

        if review_modality(path) == "RTSTRUCT":  # contours filled on the image's own slices
            return rasterise_rtstruct(path, image) > 0
        data, affine = read_dicom_seg_lesions(path)
    else:
        # checked at the door as every NIfTI: geometry, NaN voxels (NaN != 0 would count as lesion)
        mask = load_nifti(path, what="lesion mask", formats="NIfTI or DICOM-SEG",
                          give="a .nii/.nii.gz label map or a DICOM-SEG file")
        data, affine = (mask.array != 0).astype(np.uint8), mask.affine
    return _on_image_grid(data, affine, image, path, "lesion mask") > 0


def _is_dicom(path: Path) -> bool:
    if path.is_dir():
        return False
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def read_dicom_seg_lesions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Lesion mask (uint8) and its RAS affine from a DICOM-SEG: segments named (or, unnamed, coded)
    as a tissue or organ of ours (labels.label_of_name: muscle, fat, lung, liver, spleen, bone, ...)
    are left out, every other segment is lesion."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:
        raise ValueError(f"{path}: not a readable DICOM-SEG ({' '.join(str(exc).split())[:200]})") from exc
    keep = []
    for number in seg.segment_numbers:
        desc = seg.get_segment_description(number)
        label = L.label_of_name(str(desc.segment_label), numbered=True)
        if label is None:  # a tool that names segments "Segment_1" still codes what they are
            label = L.label_of_name(str(desc.segmented_property_type.meaning), numbered=True)
        if label is None or label in L.LESION_LABELS:
            keep.append(number)
    if not keep:
        raise ValueError(f"{path}: the DICOM-SEG has no lesion segment (each is named or coded as a tissue or "
                         "organ of ours: labels.py); point the mask column at a segmentation with the lesions")
    try:
        volume = seg.get_volume(segment_numbers=keep, combine_segments=True, relabel=True)
    except Exception as exc:
        raise ValueError(f"{path}: the DICOM-SEG frames do not form one regular volume "
                         f"({' '.join(str(exc).split())[:200]}); export it as a NIfTI mask instead") from exc
    return (np.asarray(volume.array) > 0).astype(np.uint8), LPS_TO_RAS @ np.asarray(volume.affine, float)


def read_totalsegmentator(folder: Path, image: Volume) -> np.ndarray:
    """Muscle/SAT/VAT labels (uint8, our numbers) on the image's grid from TotalSegmentator tissue_types."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: TotalSegmentator output folder not found; fix the bodycomp column "
                                "of scans.tsv (the folder TotalSegmentator --task tissue_types wrote)")
    missing = [f"{name}.nii.gz" for name in TOTALSEG_TISSUES if not (folder / f"{name}.nii.gz").exists()]
    if missing:
        raise FileNotFoundError(f"{folder}: {', '.join(missing)} missing; run TotalSegmentator with "
                                "--task tissue_types into this folder")
    out = np.zeros(image.shape, dtype=np.uint8)
    for name, label in TOTALSEG_TISSUES.items():
        path = folder / f"{name}.nii.gz"
        tissue = load_nifti(path, what=f"TotalSegmentator {name} mask")
        on = _on_image_grid((tissue.array != 0).astype(np.uint8), tissue.affine, image, path, name) > 0
        out[on & (out == 0)] = label
    return out


def _axes(affine: np.ndarray) -> str:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    codes = "".join(nib.aff2axcodes(affine))
    return f"[{codes}, {'x'.join(f'{v:.3g}' for v in spacing)} mm, origin {np.round(affine[:3, 3], 2).tolist()}]"
