"""nnU-Net v2 trained models as a segmentation engine (`segmentation.engine: nnunet`).

A trained model is the folder nnU-Net writes under nnUNet_results,
`DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>/` (dataset.json, plans.json,
fold_N/checkpoint_final.pth), or the zip `nnUNetv2_export_model_to_zip` makes of it, read in
place (nothing is unpacked). Nothing is downloaded: a path that is not a model says what to fetch.

What nnU-Net does is kept where the labels depend on it, with nnU-Net's own code: the plans'
preprocessor (transpose, crop to the nonzero box, normalisation, resampling to the target
spacing), its tile positions, Gaussian weights, mirroring and fp16 accumulation, and its logit
resampling back to the scan's grid. What is ours is how the work is scheduled, which is where
nnUNetv2_predict spends its time and memory on a CPU (docs/segmentation.md, BENCHMARKS.md):
  - one process (no preprocessing and export workers, each holding a copy of the scan);
  - bf16 autocast on a CPU that computes it natively (nnU-Net autocasts on CUDA only);
  - the folds of an ensemble run tile by tile (one image pass, one accumulator);
  - the logits are brought back to the scan's grid one channel at a time into a running
    argmax, instead of all channels at once in float64 and then a softmax: the same labels
    (argmax of softmax = argmax of logits) at the memory of one channel;
  - on the model's own grid, the logits live in a ring one patch deep along z, each band turned
    into labels once its tiles are done (the same fp16 sums in the same order), and the scan is
    copied once (the preprocessor's float32 copy; tiles are padded one by one).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume
from tumorburden.segment import engine

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULTS = {
    "folds": None,                           # fold numbers (or "all") to ensemble; null: every fold_N present
    "checkpoint": "checkpoint_final.pth",    # the checkpoint file in each fold folder
    "step_size": 0.5,                        # tile step as a fraction of the patch size (nnU-Net's default)
    "gaussian": True,                        # Gaussian weighting of each tile (nnU-Net's default)
    "mirroring": True,                       # mirror test-time augmentation over the checkpoint's allowed axes
}

GET_A_MODEL = ("download the trained model (its nnUNet_results folder DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>/ "
               "with dataset.json, plans.json and fold_N/checkpoint_final.pth, or the zip nnUNetv2_export_model_to_zip "
               "made of it), put it on this machine and set segmentation.model to that folder or zip")
FOLD = re.compile(r"fold_(\d+|all)$")


class NnUNetError(ValueError):
    """A model that cannot be used; the message names the file and what to do."""


class _Source:
    """The model's files, in a folder or inside a zip; `where` names a file for messages."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise NnUNetError(f"{self.path}: nnU-Net model not found; {GET_A_MODEL}")
        self.zip = None
        if self.path.is_file():
            if not zipfile.is_zipfile(self.path):
                raise NnUNetError(f"{self.path}: not a folder nor a zip; {GET_A_MODEL}")
            self.zip = zipfile.ZipFile(self.path)
            names = [PurePosixPath(n) for n in self.zip.namelist()]
            roots = sorted({str(n.parent) for n in names if n.name == "plans.json"})
            self.files = {str(n) for n in names}
        else:
            roots = ["."] if (self.path / "plans.json").exists() or any(self.path.glob("fold_*")) else sorted(
                str(p.parent.relative_to(self.path)) for p in self.path.glob("*/plans.json")) or sorted(
                str(p.parent.relative_to(self.path)) for p in self.path.glob("*/*/plans.json"))
        if len(roots) > 1:
            raise NnUNetError(f"{self.path}: holds {len(roots)} trained models ({', '.join(roots)}); set "
                              "segmentation.model to the one to run")
        if not roots:
            raise NnUNetError(f"{self.path}: no plans.json in it, so not an nnU-Net trained model "
                              f"(<Trainer>__<Plans>__<Configuration>/ folder or its zip); {GET_A_MODEL}")
        self.root = roots[0]

    def _name(self, rel: str) -> str:
        return str(PurePosixPath(self.root) / rel) if self.root != "." else rel

    def where(self, rel: str) -> str:
        return f"{self.path}:{self._name(rel)}" if self.zip else str(self.path / self._name(rel))

    def exists(self, rel: str) -> bool:
        return self._name(rel) in self.files if self.zip else (self.path / self._name(rel)).is_file()

    def folds(self) -> list[str]:
        if self.zip:
            prefix = "" if self.root == "." else self.root + "/"
            dirs = {n[len(prefix):].split("/")[0] for n in self.files if n.startswith(prefix) and "/" in n[len(prefix):]}
        else:
            dirs = {p.name for p in (self.path / self._name(".")).iterdir() if p.is_dir()}
        return sorted((FOLD.match(d).group(1) for d in dirs if FOLD.match(d)), key=lambda f: (f == "all", f.zfill(4)))

    def read_bytes(self, rel: str) -> bytes:
        return self.zip.read(self._name(rel)) if self.zip else (self.path / self._name(rel)).read_bytes()

    def json(self, rel: str, fix: str) -> dict:
        if not self.exists(rel):
            raise NnUNetError(f"{self.where(rel)}: missing; {fix}")
        try:
            return json.loads(self.read_bytes(rel))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NnUNetError(f"{self.where(rel)}: not valid JSON ({exc}); download the model again") from exc

    @property
    def configuration_folder(self) -> str:
        """`<Trainer>__<Plans>__<Configuration>`: the folder's own name (the zip's root inside it)."""
        return PurePosixPath(self.root).name if self.root != "." else self.path.name


def label_lut(dataset: dict, where: str, label_map: dict[str, int] | None = None) -> np.ndarray:
    """The model's output channel -> our label (uint8), by name from dataset.json's `labels`.
    `label_map`: one of several composed models (segment/compose.py): its used names -> our labels,
    as model_labels.py checked them against the entry's use/ignore; every other label is background
    and no lesion label is required (an organ model has none)."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise NnUNetError(f"{where}: no `labels` map (name -> number); download the model again")
    regions = [name for name, value in labels.items() if isinstance(value, (list, tuple))]
    if regions:
        raise NnUNetError(f"{where}: a region-based model (labels {', '.join(regions)} are lists of classes); "
                          "tumorburden runs models with one class per label")
    try:
        numbers = {str(name): int(value) for name, value in labels.items()}
    except (TypeError, ValueError) as exc:
        raise NnUNetError(f"{where}: labels must map names to numbers, got {labels!r}") from exc
    if L.NNUNET_IGNORE in numbers:
        ignore = numbers.pop(L.NNUNET_IGNORE)
        if ignore != len(numbers):
            raise NnUNetError(f"{where}: label 'ignore' is {ignore}; nnU-Net v2 needs it to be the highest number "
                              f"({len(numbers)} here); fix dataset.json's labels")
    if sorted(numbers.values()) != list(range(len(numbers))):
        raise NnUNetError(f"{where}: labels must number the classes 0..n-1, got {sorted(numbers.values())}")
    lut = np.zeros(len(numbers), np.uint8)
    if label_map is not None:
        for name, number in numbers.items():
            lut[number] = label_map.get(name, L.BACKGROUND)
        return lut
    unknown = []
    for name, number in numbers.items():
        ours = L.label_of_name(name)
        if ours is None:
            unknown.append(f"{number}={name!r}")
        else:
            lut[number] = ours
    if unknown:
        raise NnUNetError(
            f"{where}: labels {', '.join(unknown)} do not map to tumorburden labels "
            f"({', '.join(sorted(set(L.ALL_NAMES.values())))}, or their aliases in labels.py); rename them in dataset.json's labels "
            "(e.g. 'tumor' -> 'lesion'), keeping their numbers")
    if not any(int(v) in L.LESION_LABELS for v in lut):
        raise NnUNetError(f"{where}: no label is a lesion (labels {labels}); a tumour-burden model must "
                          "predict 'lesion' (or 'tumor', 'lymph_node_lesion')")
    return lut


@dataclass
class NnUNetModel:
    """A trained nnU-Net v2 model, loaded once (weights of every fold) and run scan after scan."""

    path: Path
    configuration: str
    trainer: str
    folds: list[str]
    lut: np.ndarray  # model label -> ours
    plans_manager: object
    configuration_manager: object
    dataset: dict
    networks: list
    mirror_axes: tuple[int, ...] | None
    device: object
    settings: dict = field(default_factory=dict)

    @property
    def provides(self) -> frozenset[int]:
        """Our labels the model outputs (background, which every model gives, left out)."""
        return frozenset(int(v) for v in self.lut) - {L.BACKGROUND}

    @classmethod
    def load(cls, path: str | Path, settings: dict | None = None, device=None) -> NnUNetModel:
        """`settings`: the `segmentation.nnunet` block (DEFAULTS), plus `precision` (engine's)."""
        import torch

        s = {**DEFAULTS, "precision": "auto", **(settings or {})}
        device = engine.pick_device(device or "auto") if device is None or isinstance(device, str) else device
        src = _Source(Path(path))
        plans = src.json("plans.json", f"the model's plans are needed; {GET_A_MODEL}")
        dataset = src.json("dataset.json", f"the model's labels and channels are needed; {GET_A_MODEL}")
        channels = dataset.get("channel_names", dataset.get("modality")) or {}
        if len(channels) != 1:
            raise NnUNetError(f"{src.where('dataset.json')}: the model takes {len(channels)} input channels "
                              f"({', '.join(map(str, channels.values()))}); tumorburden feeds one CT channel, "
                              "so use a CT-only model")
        lut = label_lut(dataset, src.where("dataset.json"), s.get("label_map"))
        parts = src.configuration_folder.split("__")
        configuration = parts[-1] if len(parts) == 3 else None
        available = src.folds()
        want = s["folds"] if s["folds"] is not None else available
        want = [str(f) for f in (want if isinstance(want, (list, tuple)) else [want])]
        if not want:
            raise NnUNetError(f"{src.where('.')}: no fold_N folder; {GET_A_MODEL}")
        checkpoints = []
        for fold in want:
            rel = f"fold_{fold}/{s['checkpoint']}"
            if not src.exists(rel):
                raise NnUNetError(f"{src.where(rel)}: missing (folds present: {', '.join(available) or 'none'}); "
                                  "set segmentation.nnunet.folds to folds the model has, or download the missing fold")
            try:
                checkpoints.append(torch.load(io.BytesIO(src.read_bytes(rel)), map_location="cpu", weights_only=False))
            except Exception as exc:  # torch raises many types for a damaged file
                raise NnUNetError(f"{src.where(rel)}: not a readable nnU-Net checkpoint "
                                  f"({' '.join(str(exc).split())[:200]}); download it again") from exc
            if not isinstance(checkpoints[-1], dict) or "network_weights" not in checkpoints[-1]:
                raise NnUNetError(f"{src.where(rel)}: no network_weights in it; not an nnU-Net v2 checkpoint")
        first = checkpoints[0]
        trainer = str(first.get("trainer_name", "nnUNetTrainer"))
        configuration = (first.get("init_args") or {}).get("configuration", configuration)

        with _quiet():
            from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        plans_manager = PlansManager(plans)
        if configuration not in plans.get("configurations", {}):
            raise NnUNetError(f"{src.where('plans.json')}: no configuration {configuration!r} (it has "
                              f"{', '.join(plans.get('configurations', {}))}); the model folder and its plans disagree")
        configuration_manager = plans_manager.get_configuration(configuration)
        if configuration_manager.previous_stage_name is not None:
            raise NnUNetError(f"{src.where('plans.json')}: {configuration} is a cascade stage (it needs "
                              f"{configuration_manager.previous_stage_name}'s output); run a 3d_fullres or 2d model")
        n_out = len(lut)
        networks = []
        for fold, checkpoint in zip(want, checkpoints):
            net = _build_network(trainer, plans_manager, configuration_manager, n_out, src.where("plans.json"))
            try:
                net.load_state_dict(checkpoint["network_weights"])
            except RuntimeError as exc:
                first_line = " ".join(str(exc).strip().splitlines()[:2])[:300]
                raise NnUNetError(f"{src.where(f'fold_{fold}/' + s['checkpoint'])}: the weights do not fit the "
                                  f"network plans.json describes ({first_line}); are plans.json and dataset.json "
                                  "this model's?") from exc
            networks.append(net.to(device).eval())
        mirror_axes = first.get("inference_allowed_mirroring_axes")
        model = cls(path=Path(path), configuration=configuration, trainer=trainer, folds=want, lut=lut,
                    plans_manager=plans_manager, configuration_manager=configuration_manager, dataset=dataset,
                    networks=networks, mirror_axes=tuple(mirror_axes) if mirror_axes is not None else None,
                    device=device, settings=s)
        log.info("nnU-Net model %s (%s, %s, folds %s) on %s: labels %s", src.where("."), trainer, configuration,
                 ",".join(want), device.type,
                 ", ".join(f"{k}->{L.ALL_NAMES[int(v)]}" for k, v in enumerate(lut)))
        return model

    def predict(self, image: Volume) -> tuple[np.ndarray, dict]:
        """uint8 labels (ours) on the image's own grid, and the time of each step."""
        s = self.settings
        times = {}
        dtype = engine.autocast_dtype(s["precision"], self.device)
        pm, cm = self.plans_manager, self.configuration_manager

        t0 = time.perf_counter()
        # nnU-Net reads a NIfTI with SimpleITK: the stored voxel order reversed (z, y, x), spacing too.
        # run_case_npy makes the one float32 copy of the scan (a view of the caller's array goes in);
        # the tiles read from it in the scan's memory order, so no contiguous copy of the whole is made
        properties = {"spacing": [float(v) for v in image.spacing[::-1]]}
        preprocessor = cm.preprocessor_class(verbose=False)
        with _quiet():
            data, seg, properties = preprocessor.run_case_npy(np.asarray(image.array).transpose(2, 1, 0)[None], None,
                                                              properties, pm, cm, self.dataset)
        del seg  # the nonzero mask as int8: not needed for prediction
        times["preprocess_s"] = time.perf_counter() - t0
        log.info("model grid %s at %s mm (scan %s)", tuple(data.shape[1:]),
                 "x".join(f"{v:g}" for v in cm.spacing), image.shape)

        t0 = time.perf_counter()
        labels_s = 0.0
        target = tuple(int(v) for v in properties["shape_after_cropping_and_before_resampling"])
        if tuple(data.shape[1:]) == target:
            # the model's grid is the scan's: each band of rows becomes labels as soon as its tiles are
            # done, so the logits held are one patch deep, not the whole scan's
            full = np.zeros(properties["shape_before_cropping"], np.uint8)
            crop = full[tuple(slice(int(a), int(b)) for a, b in properties["bbox_used_for_cropping"])]

            def band_to_labels(z0, z1, rows):
                nonlocal labels_s
                t = time.perf_counter()
                _argmax_into(rows, crop[z0:z1])
                labels_s += time.perf_counter() - t

            self._sliding_window(data, dtype, band_to_labels, banded=True)
            del data
            labels = full.transpose(pm.transpose_backward)
        else:
            # nnU-Net's logit resampling (resampling_fn_probabilities) works on the whole volume: the
            # logits are kept whole, on the model's grid, and resampled channel by channel
            whole = []
            self._sliding_window(data, dtype, lambda z0, z1, rows: whole.append(rows), banded=False)
            del data
            t = time.perf_counter()
            labels = self._labels_on_scan_grid(whole.pop(), properties)
            labels_s = time.perf_counter() - t
        times["infer_s"] = time.perf_counter() - t0 - labels_s

        t0 = time.perf_counter()
        labels = np.ascontiguousarray(self.lut[labels].transpose(2, 1, 0))
        times["resample_s"] = time.perf_counter() - t0 + labels_s
        times["autocast"] = str(dtype).replace("torch.", "") if dtype is not None else "fp32"
        times["device"] = self.device.type
        return labels, times

    def _sliding_window(self, data: np.ndarray, dtype, finished, banded: bool = True) -> None:
        """nnU-Net's sliding window (its tiles, padding, Gaussian, mirroring and fp16 sums), all folds per tile.

        Tiles run in nnU-Net's order (z outermost), so each voxel's fp16 sum is added up in the same
        order as over a whole-volume accumulator. `banded`: the accumulator is a ring of one patch
        depth; once the tiles of a z position are done, the rows before the next z position get no
        more tiles and go, divided by the weights, to `finished(z0, z1, rows)` (rows z0..z1 of `data`,
        padding removed, in z order), and their ring rows are reused. Not banded: one call with the
        whole volume at the end. `data`: (1, z, y, x) float32, any memory layout."""
        import torch

        with _quiet():
            from nnunetv2.inference.sliding_window_prediction import (compute_gaussian,
                                                                       compute_steps_for_sliding_window)

        s, device = self.settings, self.device
        patch = [int(v) for v in self.configuration_manager.patch_size]
        if len(patch) != 3:
            raise NnUNetError(f"{self.path}: configuration {self.configuration} is not 3-D; run a 3d_fullres model")
        shape = [int(v) for v in data.shape[1:]]
        # pad_nd_image's zero padding to at least one patch, applied tile by tile instead of to a copy
        padded = [max(n, p) for n, p in zip(shape, patch)]
        below = [(q - n) // 2 for q, n in zip(padded, shape)]
        steps = compute_steps_for_sliding_window(padded, patch, float(s["step_size"]))
        source = torch.from_numpy(data)
        depth = patch[0] if banded else padded[0]
        logits = torch.zeros((len(self.lut), depth, *padded[1:]), dtype=torch.half, device=device)
        weight = torch.zeros((depth, *padded[1:]), dtype=torch.half, device=device)
        gaussian = (compute_gaussian(tuple(patch), sigma_scale=1. / 8, value_scaling_factor=10, device=device)
                    if s["gaussian"] else 1)
        axes = [a + 2 for a in (self.mirror_axes or ())] if s["mirroring"] else []
        flips = [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
        cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        crop_yx = (slice(below[1], below[1] + shape[1]), slice(below[2], below[2] + shape[2]))

        def ring(z0: int, z1: int):
            """(ring rows, offset into z0..z1) pieces of padded rows z0..z1 (at most `depth` of them)."""
            r0 = z0 % depth
            if r0 + (z1 - z0) <= depth:
                return [(slice(r0, r0 + z1 - z0), slice(0, z1 - z0))]
            wrap = depth - r0
            return [(slice(r0, depth), slice(0, wrap)), (slice(0, z1 - z0 - wrap), slice(wrap, z1 - z0))]

        def finish(z0: int, z1: int):
            for rows, offset in ring(z0, z1):
                band, band_weight = logits[:, rows], weight[rows]
                torch.div(band, band_weight, out=band)
                if torch.any(torch.isinf(band)):
                    raise RuntimeError(f"{self.path}: infinite logits in fp16 accumulation; run with "
                                       "segmentation.precision fp32")
                first = z0 + offset.start
                a, b = max(first, below[0]), min(first + (offset.stop - offset.start), below[0] + shape[0])
                if a < b:
                    finished(a - below[0], b - below[0], band[:, a - first:b - first, crop_yx[0], crop_yx[1]].cpu())
                if banded:
                    band.zero_()
                    band_weight.zero_()

        z_steps = steps[0]
        log.info("%d tiles of %s, %d mirrorings, %d fold(s), %s", len(z_steps) * len(steps[1]) * len(steps[2]), patch,
                 len(flips), len(self.networks), "banded along z" if banded else "whole volume")
        with torch.inference_mode(), cast:
            for i, z in enumerate(z_steps):
                for y, x in itertools.product(steps[1], steps[2]):
                    corner = (z, y, x)
                    x_tile = torch.zeros((1, 1, *patch), dtype=torch.float32)
                    inside = [slice(max(c - lo, 0), min(c - lo + p, n))
                              for c, lo, p, n in zip(corner, below, patch, shape)]
                    at = tuple(slice(v.start - (c - lo), v.stop - (c - lo)) for v, c, lo in zip(inside, corner, below))
                    x_tile[(0, 0, *at)] = source[(0, *inside)]
                    x_tile = x_tile.to(device)
                    prediction = None
                    for net in self.networks:
                        p = net(x_tile)
                        for dims in flips:
                            p += torch.flip(net(torch.flip(x_tile, dims)), dims)
                        if flips:
                            p /= len(flips) + 1
                        prediction = p if prediction is None else prediction + p
                    prediction = prediction[0].float()
                    if len(self.networks) > 1:
                        prediction /= len(self.networks)
                    if s["gaussian"]:
                        prediction *= gaussian
                    for rows, offset in ring(z, z + patch[0]):
                        yx = (slice(y, y + patch[1]), slice(x, x + patch[2]))
                        logits[(slice(None), rows, *yx)] += prediction[:, offset]
                        weight[(rows, *yx)] += gaussian[offset] if s["gaussian"] else 1
                if banded:
                    finish(z, z_steps[i + 1] if i + 1 < len(z_steps) else padded[0])
            if not banded:
                finish(0, padded[0])

    def _labels_on_scan_grid(self, logits, properties) -> np.ndarray:
        """Model-label argmax on the scan's (transposed) grid: each channel resampled as nnU-Net
        resamples logits, one at a time, into a running maximum."""
        from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

        pm, cm = self.plans_manager, self.configuration_manager
        target = tuple(int(v) for v in properties["shape_after_cropping_and_before_resampling"])
        if tuple(logits.shape[1:]) == target:
            labels = np.empty(target, np.uint8)
            _argmax_into(logits, labels)
        else:
            scan_spacing = [properties["spacing"][i] for i in pm.transpose_forward]
            best = labels = None
            for c in range(logits.shape[0]):
                channel = np.asarray(cm.resampling_fn_probabilities(logits[c:c + 1].numpy(), target,
                                                                    cm.spacing, scan_spacing))[0]
                if best is None:
                    best, labels = channel, np.zeros(target, np.uint8)
                else:
                    higher = channel > best
                    labels[higher] = c
                    np.maximum(best, channel, out=best)
            del best
        full = np.zeros(properties["shape_before_cropping"], np.uint8)
        full = insert_crop_into_image(full, labels, properties["bbox_used_for_cropping"])
        return np.asarray(full).transpose(pm.transpose_backward)


def _argmax_into(logits, out: np.ndarray) -> None:
    """`out[...] = argmax over channels of logits` (C, z, y, x), slab by slab into a running maximum:
    torch.argmax makes an int64 map (0.8 GB at 512x512x400) and is 2.4x slower on fp16; strict >
    keeps the first maximum, as argmax does."""
    import torch

    for z in range(0, logits.shape[1], 16):
        slab = logits[:, z:z + 16]
        best, labels = slab[0].float(), torch.zeros(slab.shape[1:], dtype=torch.uint8)
        for c in range(1, slab.shape[0]):
            value = slab[c].float()
            labels[value > best] = c
            best = torch.maximum(best, value)
        out[z:z + 16] = labels.numpy()


def _build_network(trainer: str, plans_manager, configuration_manager, n_out: int, where: str):
    """The network as nnU-Net's predictor builds it (the trainer's build_network_architecture).
    The stock trainers build it with get_network_from_plans, called here directly: importing the
    training package costs a segment job 5 CPU-s more."""
    import inspect

    args = (configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import)
    with _quiet():
        if trainer == "nnUNetTrainer" or re.fullmatch(r"nnUNetTrainer_\d+epochs?", trainer):
            from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

            return get_network_from_plans(*args, 1, n_out, allow_init=True, deep_supervision=False)
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        try:
            trainer_class = recursive_find_trainer_class_by_name(trainer)
        except Exception:  # nnU-Net raises a bare RuntimeError for an unknown trainer
            trainer_class = None
    if trainer_class is None:
        raise NnUNetError(f"{where}: the checkpoint's trainer {trainer} is not part of nnunetv2; install the "
                          "package that defines it (or set nnUNet_extTrainer to its folder)")
    if "plans_manager" in inspect.signature(trainer_class.build_network_architecture).parameters:
        return trainer_class.build_network_architecture(plans_manager, configuration_manager, 1, n_out,
                                                        enable_deep_supervision=False)
    return trainer_class.build_network_architecture(*args, 1, n_out, enable_deep_supervision=False)


@contextlib.contextmanager
def _quiet():
    """nnU-Net prints (unset nnUNet_raw paths on import, preprocessing notes) go to the log, not stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        yield
    for line in out.getvalue().splitlines():
        if line.strip():
            log.debug("nnU-Net: %s", line)

