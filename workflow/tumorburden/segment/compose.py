"""Several segmentation models run on one scan and composed into our label maps.

`segmentation.models` lists the models (model_labels.py checks the list and says which of our
labels each gives); each is loaded once per patient's job behind one small interface,
`SegmentationModel` (`provides`: our labels; `predict(image)`: uint8 labels in ours on the
image's grid + timings), so a MONAI bundle (`BundleModel`, here) and an nnU-Net model
(`segment.nnunet.NnUNetModel`, imported only for `nnunet:` entries) compose alike.

Their maps are combined by `segmentation.precedence` (one list, highest first; the default puts
lesions over organs over body composition): at each voxel the label of highest precedence any
model gives. Two maps come out of one scan:
- the label map of segmentation.nii.gz: labels 1-7 (labels.NAMES), what every later stage reads;
- the organ map (labels.ORGAN_LABELS: lung, liver, spleen, ..., bone, the L3 vertebra), composed
  the same way without the lesions on top, so the organ under a lesion is kept: it gives each
  lesion its finding site (lesions/measure.py) and places the L3 slice of body composition.
  None when no model gives an organ.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import numpy as np

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume
from tumorburden.model_labels import ModelEntry, ModelPlan

log = logging.getLogger(__name__)

SEGMENTATION_LABELS = tuple(k for k in L.NAMES if k != L.BACKGROUND)


class SegmentationModel(Protocol):
    @property
    def provides(self) -> frozenset[int]: ...

    def predict(self, image: Volume) -> tuple[np.ndarray, dict]: ...


class BundleModel:
    """A MONAI bundle as one of several models: its used channels mapped to our labels (ignored
    channels to background), run by segment.engine.infer_labels."""

    def __init__(self, bundle, settings: dict, device):
        self.bundle, self.settings, self.device = bundle, settings, device

    @classmethod
    def load(cls, entry: ModelEntry, settings: dict, device) -> BundleModel:
        from tumorburden.segment.bundle import BundleError, load_bundle

        def channel_map(channel_def: dict, where: str) -> list[int]:
            names = {int(k): str(v) for k, v in channel_def.items()}
            if names != entry.label_names:  # the file changed since the run's check
                raise BundleError(f"{where}: channel_def changed since {entry.key} was checked; run again")
            return [entry.lut[i] for i in sorted(names)]

        return cls(load_bundle(entry.path, device, channel_map=channel_map), settings, device)

    @property
    def provides(self) -> frozenset[int]:
        return frozenset(self.bundle.lut) - {L.BACKGROUND}

    def predict(self, image: Volume) -> tuple[np.ndarray, dict]:
        from tumorburden.segment.engine import infer_labels

        return infer_labels(image, self.bundle, self.settings, self.device)


def load_model(entry: ModelEntry, settings: dict, device) -> SegmentationModel:
    if entry.kind == "bundle":
        model = BundleModel.load(entry, settings, device)
    else:
        from tumorburden.segment.nnunet import NnUNetModel  # only for nnunet entries

        # label_map: the model's used class names -> our labels, the rest ignored (model_labels.py)
        model = NnUNetModel.load(entry.path, {**(settings.get("nnunet") or {}),
                                              "precision": settings.get("precision", "auto"),
                                              "label_map": entry.used_names()}, device)
    missing = entry.provides - model.provides
    if missing:
        raise ValueError(f"{entry.path}: {entry.key} should give {', '.join(L.ALL_NAMES[k] for k in sorted(missing))} "
                         "but the loaded model does not; check its label list")
    return model


def compose(maps: list[np.ndarray], rank: np.ndarray, keep) -> np.ndarray:
    """One uint8 map from several (same grid): at each voxel the label among `keep` of highest `rank`
    (rank[label], 0 for background); a label not kept counts as background."""
    keep = np.isin(np.arange(len(rank)), list(keep))
    rank = np.where(keep, np.asarray(rank), 0).astype(np.uint8)
    out = np.zeros(maps[0].shape, np.uint8)
    best = np.zeros(maps[0].shape, np.uint8)
    for m in maps:
        r = rank[m]
        take = r > best
        out[take] = m[take]
        best[take] = r[take]
    return out


class ComposedModels:
    """The models of `segmentation.models`, loaded once for a patient's scans."""

    def __init__(self, plan: ModelPlan, settings: dict, device):
        self.plan = plan
        self.rank = np.asarray(plan.rank())
        self.models = []
        for entry in plan.entries:
            t0 = time.perf_counter()
            self.models.append(load_model(entry, settings, device))
            log.info("%s: %s %s gives %s (%.1f s)", entry.key, entry.kind, entry.path,
                     ", ".join(L.ALL_NAMES[k] for k in sorted(entry.provides)), time.perf_counter() - t0)

    def predict(self, image: Volume) -> tuple[np.ndarray, np.ndarray | None]:
        """(label map of segmentation.nii.gz, organ map or None) on the image's grid."""
        maps = []
        for entry, model in zip(self.plan.entries, self.models):
            t0 = time.perf_counter()
            labels, times = model.predict(image)
            if labels.shape != image.shape:
                raise ValueError(f"{entry.key}: the model gave labels of shape {labels.shape} for a scan of "
                                 f"{image.shape}; an engine must return labels on the scan's grid")
            # only what the entry uses: an engine that gives more is held to its entry
            labels = np.where(np.isin(labels, list(entry.provides)), labels, 0).astype(np.uint8)
            maps.append(labels)
            log.info("%s: %.2f s (%s)", entry.name, time.perf_counter() - t0,
                     ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in times.items()))
        segmentation = compose(maps, self.rank, SEGMENTATION_LABELS)
        organs = compose(maps, self.rank, L.ORGAN_LABELS) if self.plan.organ_model else None
        return segmentation, organs

    def source_of(self, labels) -> str:
        """The names of the models that give any of `labels` ("none" if no model does)."""
        names = [e.name for e in self.plan.entries if e.provides & set(labels)]
        return "+".join(names) or "none"
