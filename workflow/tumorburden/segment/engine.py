"""MONAI inference: CT Volume -> label map on the scan's own grid (labels.py).

Preprocessing is the bundle's own MONAI transforms (bundle.py: what its configs/inference.json
declares, e.g. orientation, resampling to the model's spacing, HU window, a foreground crop), then
`sliding_window_inference` with the bundle's inferer settings (Gaussian blending), each of
roi_size / overlap / sw_batch_size overridden where the configuration sets it. The argmax is
taken at model resolution and only the uint8 labels are brought back to the scan's grid
(`labels_to_grid`) instead of running the bundle's Invertd: a full-resolution float probability
map (8 channels x 100 M voxels = 3.2 GB) is what makes plain pipelines slow and large, and
nearest-neighbour labels are what it would reduce to anyway (a model-zoo bundle that argmaxes
after Invertd differs only where interpolated probabilities tip a boundary voxel).
"""

from __future__ import annotations

import contextlib
import logging
import time

from typing import TYPE_CHECKING

import numpy as np

from tumorburden.imaging.volume import Volume

if TYPE_CHECKING:  # torch is imported where it is used: the classical engine and external masks need none of it
    import torch

    from tumorburden.segment.bundle import Bundle

log = logging.getLogger(__name__)

INFERENCE_DEFAULTS = {
    "roi_size": None,        # sliding-window size in model voxels; None: the bundle's inferer's
    "overlap": None,         # sliding-window overlap; None: the bundle's inferer's (0.25 if it has none)
    "sw_batch_size": None,   # windows per forward pass; None: the bundle's inferer's (2 if it has none)
    "flip_tta": [],          # axes (0, 1, 2 of the RAS model grid) to mirror and average; [] = off
    "precision": "auto",     # auto: bf16 autocast on a CPU with native bf16, fp32 otherwise | bf16 | fp32
    "device": "auto",        # auto: CUDA when available | cpu | cuda
}


def pick_device(name: str = "auto") -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("segmentation.device is cuda but no CUDA device is visible; set it to auto or cpu")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on a CPU that computes it natively (measured 2x faster, same labels), fp16 never."""
    import torch

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"segmentation.precision {precision!r} is unknown; use auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_bf16() else None


def preprocess_transform(bundle_or_spacing, intensity: dict | None = None, orientation: str = "RAS",
                         mode: str = "bilinear"):
    """What a bundle's model expects: channel-first MetaTensor in, model input out. For a Bundle,
    its preprocessing (bundle.py); else the older form's Compose of a spacing and HU window."""
    from monai.transforms import Compose, Orientation, ScaleIntensityRange, Spacing

    from tumorburden.segment.bundle import Bundle

    if isinstance(bundle_or_spacing, Bundle):
        return bundle_or_spacing.preprocess
    spacing = bundle_or_spacing
    steps = [Orientation(axcodes=orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))), Spacing(pixdim=spacing, mode=mode, padding_mode="border")]
    if intensity is not None:
        steps.append(ScaleIntensityRange(a_min=intensity["a_min"], a_max=intensity["a_max"],
                                         b_min=intensity["b_min"], b_max=intensity["b_max"],
                                         clip=bool(intensity.get("clip", True))))
    return Compose(steps)


def to_metatensor(volume: Volume, dtype=None):
    import torch
    from monai.data import MetaTensor

    dtype = torch.float32 if dtype is None else dtype
    array = torch.from_numpy(np.ascontiguousarray(volume.array)).to(dtype)[None]
    return MetaTensor(array, affine=torch.as_tensor(volume.affine, dtype=torch.float64))


def labels_to_grid(labels: np.ndarray, labels_affine: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
    """Nearest-neighbour uint8 labels from one grid onto another (voxels outside -> 0).

    When the grids differ by axis order, direction and scale only (always the case after
    Orientation + Spacing, which keep the direction cosines), each output axis reads one
    input axis, so the resampling is three 1-D index lookups instead of a 3-D interpolation.
    """
    m = np.linalg.inv(np.asarray(labels_affine, float)) @ np.asarray(affine, float)
    r = m[:3, :3]
    nz = np.abs(r) > 1e-6 * np.abs(r).max()
    shape = tuple(int(s) for s in shape)
    if not ((nz.sum(axis=0) == 1).all() and (nz.sum(axis=1) == 1).all()):
        from scipy import ndimage  # here: the usual case needs none of it, and segment-dicom pays 0.4 CPU-s a job for its import

        return ndimage.affine_transform(labels, m, output_shape=shape, order=0, mode="constant", cval=0)
    perm = [int(np.nonzero(nz[a])[0][0]) for a in range(3)]  # label axis a <- output axis perm[a]
    index, inside = [], []
    for a in range(3):
        p = perm[a]
        pos = np.rint(r[a, p] * np.arange(shape[p]) + m[a, 3]).astype(np.intp)
        ok = (pos >= 0) & (pos < labels.shape[a])
        index.append(np.clip(pos, 0, labels.shape[a] - 1))
        inside.append(ok)
    out = labels[np.ix_(*index)]
    for a in range(3):
        if not inside[a].all():
            sl = [slice(None)] * 3
            sl[a] = ~inside[a]
            out[tuple(sl)] = 0
    return np.ascontiguousarray(np.transpose(out, np.argsort(perm)))


def infer_labels(image: Volume, bundle: Bundle, settings: dict | None = None,
                 device: torch.device | None = None) -> tuple[np.ndarray, dict]:
    """uint8 label map (our labels) on the image's grid, and timings of each step."""
    import torch
    from monai.inferers import sliding_window_inference

    s = {**INFERENCE_DEFAULTS, **(settings or {})}
    device = device or pick_device(s["device"])
    dtype = autocast_dtype(s["precision"], device)
    times = {}

    t0 = time.perf_counter()
    x = bundle.preprocess(to_metatensor(image))
    model_affine = x.affine.numpy().astype(float)
    x = x.as_tensor()[None].to(device)
    times["preprocess_s"] = time.perf_counter() - t0
    log.info("model grid %s at %s mm (scan %s at %s mm)", tuple(x.shape[2:]),
             "x".join(f"{v:.3g}" for v in np.linalg.norm(model_affine[:3, :3], axis=0)), image.shape,
             "x".join(f"{v:.3g}" for v in image.spacing))

    t0 = time.perf_counter()
    net = bundle.network.to(device)
    flips = [tuple(int(a) + 2 for a in (axes if isinstance(axes, (list, tuple)) else [axes]))
             for axes in (s["flip_tta"] or [])]
    cast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None
            else contextlib.nullcontext())
    sw = {**bundle.inferer, **{k: s[k] for k in ("roi_size", "overlap", "sw_batch_size") if s.get(k) is not None}}
    roi = tuple(int(v) for v in sw["roi_size"])
    with torch.inference_mode(), cast:
        def window(inp):
            return sliding_window_inference(inp, roi_size=roi, sw_batch_size=int(sw["sw_batch_size"]),
                                            predictor=net, overlap=sw["overlap"], mode=sw["mode"],
                                            sigma_scale=sw["sigma_scale"], padding_mode=sw["padding_mode"],
                                            cval=float(sw["cval"]))

        logits = window(x).float()
        if logits.shape[1] != len(bundle.lut):
            raise ValueError(f"{bundle.path}: the network gives {logits.shape[1]} output channels but "
                             f"channel_def names {len(bundle.lut)}; fix channel_def in configs/metadata.json")
        if flips:
            prob = torch.softmax(logits, dim=1)
            for dims in flips:
                prob += torch.softmax(torch.flip(window(torch.flip(x, dims)).float(), dims), dim=1)
            logits = prob
        channel = torch.argmax(logits, dim=1)[0].to(torch.uint8).cpu().numpy()
    del logits, x
    times["infer_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lut = np.asarray(bundle.lut, dtype=np.uint8)
    labels = labels_to_grid(lut[channel], model_affine, image.shape, image.affine)
    times["resample_s"] = time.perf_counter() - t0
    times["autocast"] = str(dtype).replace("torch.", "") if dtype is not None else "fp32"
    times["device"] = device.type
    return labels, times
