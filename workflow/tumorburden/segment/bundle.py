"""A segmentation model as a MONAI bundle folder: weights + configs, run as MONAI runs it.

Layout (MONAI bundle specification, as the model zoo's bundles have it):

    <bundle>/configs/metadata.json   labels (network_data_format.outputs.pred.channel_def) and
                                     input channels
    <bundle>/configs/inference.json  `network_def`, and the inference the bundle declares in MONAI
                                     config syntax: `preprocessing` (LoadImaged, Orientationd,
                                     Spacingd, ScaleIntensityRanged, CropForegroundd, ...), `inferer`
                                     (SlidingWindowInferer), `postprocessing` (argmax, Invertd,
                                     SaveImaged); `python -m monai.bundle run` segments a NIfTI with it
    <bundle>/models/model.pt         state dict (or a checkpoint dict holding one), or
    <bundle>/models/model.ts         TorchScript module (no network_def needed)
    <bundle>/docs/README.md          what it is, how it was trained, its scores

The engine instantiates the bundle's own preprocessing transforms with monai.bundle.ConfigParser
(all but the file reading: the scan is already in memory) and its inferer's settings; of the
postprocessing it takes what decides the labels, the argmax over channels. Bundles without those
declarations (an older form of ours) keep working through a `tumorburden` block in metadata.json
(model spacing, HU window, sliding-window ROI): the two forms cannot be mixed.

A user's own bundle drops in by pointing `segmentation.bundle` at its folder. Its output
channels are matched to our labels by name (channel_def); a channel whose name is not one
of ours (or a known alias) is an error, so a model is never silently half-read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from tumorburden import labels as L

log = logging.getLogger(__name__)

# Names a model may give its output channels -> our label (labels.py, shared with a radiologist's review).
ALIASES = L.ALIASES

# What the `tumorburden` block's keys default to when a bundle of the older form does not say.
PREPROCESSING_DEFAULTS = {
    "spacing_mm": [1.5, 1.5, 1.5],
    "intensity": {"a_min": -1000.0, "a_max": 1000.0, "b_min": -1.0, "b_max": 1.0, "clip": True},
    "roi_size": [96, 96, 96],
    "orientation": "RAS",
}
# The sliding window of a bundle that declares no inferer setting (SlidingWindowInferer's keywords).
INFERER_DEFAULTS = {"roi_size": (96, 96, 96), "sw_batch_size": 2, "overlap": 0.25, "mode": "gaussian",
                    "sigma_scale": 0.125, "padding_mode": "replicate", "cval": 0.0}
# Postprocessing transforms that leave the argmax's labels as they are (on the model's grid): the
# activation is monotonic, Invertd / SaveImaged are our labels_to_grid and the segmentation's writer.
LABEL_NEUTRAL = {"Activationsd", "Activations", "AsDiscreted", "AsDiscrete", "Invertd", "Invert", "SaveImaged",
                 "SaveImage", "EnsureTyped", "EnsureType", "CopyItemsd", "DeleteItemsd", "ToDeviced",
                 "FromMetaTensord", "ToTensord", "SqueezeDimd", "SqueezeDim", "Compose"}


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and what to do."""


_norm = L.normalise_name


@dataclass
class Bundle:
    path: Path
    metadata: dict
    network: torch.nn.Module
    lut: list[int]  # output channel -> our label
    in_channels: int
    preprocess: Callable  # channel-first HU MetaTensor on the scan's grid (RAS affine) -> the model's input
    inferer: dict  # sliding-window settings (INFERER_DEFAULTS' keys), as the bundle declares them
    spacing_mm: tuple[float, float, float] | None  # the model's voxel where the preprocessing resamples to one
    declared: bool = True  # configs/inference.json declares the inference (False: the older tumorburden block)
    weights: Path = field(default=None)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or self.path.name)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "?"))

    @property
    def roi_size(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.inferer["roi_size"])


def channel_lut(channel_def: dict, where: str) -> list[int]:
    """Output channel index -> our label, from a bundle's channel_def {"0": "background", ...}."""
    try:
        items = sorted((int(k), v) for k, v in channel_def.items())
    except (TypeError, ValueError, AttributeError):
        raise BundleError(f"{where}: channel_def must map channel numbers to label names, got {channel_def!r}")
    if [k for k, _ in items] != list(range(len(items))):
        raise BundleError(f"{where}: channel_def must number the channels 0..n-1, got {[k for k, _ in items]}")
    lut, unknown = [], []
    for k, name in items:
        label = ALIASES.get(_norm(name))
        if label is None:
            unknown.append(f"{k}={name!r}")
        lut.append(label)
    if unknown:
        raise BundleError(
            f"{where}: output channels {', '.join(unknown)} do not map to tumorburden labels "
            f"({', '.join(sorted(set(L.NAMES.values())))}); rename them in channel_def "
            "(e.g. 'tumor' -> 'lesion') or merge them in the model")
    if not any(label in L.LESION_LABELS for label in lut):
        raise BundleError(f"{where}: no output channel is a lesion (channel_def {channel_def}); "
                          "a tumour-burden model must predict 'lesion'")
    return lut


def load_bundle(path: str | Path, device: torch.device | str = "cpu", channel_map=None) -> Bundle:
    """Read a bundle folder; errors name the missing or wrong file. `channel_map(channel_def, where)
    -> lut`: how output channels become our labels, `channel_lut` unless given (a model of
    `segmentation.models` maps only the channels its entry uses: segment/compose.py)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: segmentation bundle folder not found; set segmentation.bundle to a MONAI "
                          "bundle folder (configs/metadata.json + models/model.pt) or use the shipped models/tumorburden_ct")
    meta_path = path / "configs" / "metadata.json"
    if not meta_path.exists():
        raise BundleError(f"{meta_path}: missing; a bundle needs configs/metadata.json with "
                          "network_data_format (see models/tumorburden_ct/configs/metadata.json)")
    metadata = _read_json(meta_path)
    fmt = metadata.get("network_data_format") or {}
    try:
        inputs = fmt["inputs"]["image"]
        outputs = fmt["outputs"]["pred"]
        channel_def = outputs["channel_def"]
    except (KeyError, TypeError):
        raise BundleError(f"{meta_path}: needs network_data_format.inputs.image and "
                          "network_data_format.outputs.pred.channel_def (label per output channel)")
    in_channels = int(inputs.get("num_channels", 1))
    if in_channels != 1:
        raise BundleError(f"{meta_path}: the model takes {in_channels} input channels; tumorburden feeds one CT "
                          "channel, so use a single-channel (CT only) model")
    lut = (channel_map or channel_lut)(channel_def, str(meta_path))
    if "num_channels" in outputs and int(outputs["num_channels"]) != len(lut):
        raise BundleError(f"{meta_path}: outputs.pred.num_channels is {outputs['num_channels']} but channel_def "
                          f"names {len(lut)} channels; make them agree")
    inference_path = path / "configs" / "inference.json"
    inference = _read_json(inference_path) if inference_path.exists() else {}
    if "preprocessing" in inference:
        ours = sorted(set(metadata.get("tumorburden") or {}) & set(PREPROCESSING_DEFAULTS))
        if ours:
            raise BundleError(f"{meta_path}: tumorburden.{ours[0]} repeats what configs/inference.json declares "
                              "(preprocessing, inferer); delete it from the tumorburden block: the declaration is what runs")
        preprocess, spacing, inferer = declared_inference(inference, path, metadata)
    else:
        preprocess, spacing, inferer = _tumorburden_block(metadata, meta_path)
        log.info("%s: no preprocessing in configs/inference.json; read the tumorburden block of metadata.json "
                 "(declare preprocessing and inferer in inference.json, as models/tumorburden_ct does, so that "
                 "`python -m monai.bundle run` runs the bundle too)", path)

    network, weights = _load_network(path, device, inference)
    return Bundle(path=path, metadata=metadata, network=network, lut=lut, in_channels=in_channels,
                  preprocess=preprocess, inferer=inferer, spacing_mm=spacing, declared="preprocessing" in inference,
                  weights=weights)


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(content, dict):
        raise BundleError(f"{path}: must hold a JSON object (MONAI bundle config), got {type(content).__name__}")
    return content


def _tumorburden_block(metadata: dict, meta_path: Path) -> tuple[Callable, tuple, dict]:
    """The older form: spacing, HU window, orientation and ROI in metadata.json's `tumorburden` block."""
    from tumorburden.segment import engine

    pre = {**PREPROCESSING_DEFAULTS, **(metadata.get("tumorburden") or {})}
    intensity = {**PREPROCESSING_DEFAULTS["intensity"], **(pre.get("intensity") or {})}
    spacing = tuple(float(v) for v in pre["spacing_mm"])
    roi = tuple(int(v) for v in pre["roi_size"])
    if len(spacing) != 3 or min(spacing) <= 0 or len(roi) != 3 or min(roi) <= 0:
        raise BundleError(f"{meta_path}: tumorburden.spacing_mm and roi_size must be three positive numbers")
    return (engine.preprocess_transform(spacing, intensity, str(pre["orientation"])), spacing,
            {**INFERER_DEFAULTS, "roi_size": roi})


def declared_inference(config: dict, root: Path, metadata: dict | None = None) -> tuple[Callable, tuple | None, dict]:
    """(preprocess, model spacing or None, sliding-window settings) from a bundle's inference config.

    The bundle's own transform objects are built by MONAI's ConfigParser, as `monai.bundle run`
    builds them; only LoadImage(d) is left out, since the scan arrives as the in-memory image it
    would have read (HU, RAS affine). Errors name inference.json and the key."""
    from monai.bundle import ConfigParser
    from monai.inferers import SlidingWindowInferer
    from monai.transforms import Compose, LoadImage, LoadImaged, MapTransform, Spacing, Spacingd

    where = Path(root) / "configs" / "inference.json"
    parser = ConfigParser(dict(config))
    if "bundle_root" in parser:
        parser["bundle_root"] = str(root)
    if metadata is not None:
        parser.read_meta(metadata)
    try:
        pre = parser.get_parsed_content("preprocessing")
    except Exception as exc:
        raise BundleError(f"{where}: preprocessing cannot be built ({_one_line(exc)})") from exc
    if isinstance(pre, (list, tuple)):
        pre = Compose(list(pre))
    if not isinstance(pre, Compose):
        raise BundleError(f"{where}: preprocessing must be a Compose (or a list) of MONAI transforms, "
                          f"got {type(pre).__name__}")
    steps = list(pre.flatten().transforms)
    loaders = [t for t in steps if isinstance(t, (LoadImage, LoadImaged))]
    steps = [t for t in steps if not isinstance(t, (LoadImage, LoadImaged))]
    # LoadImage(d) hands on a channel-less image unless it adds the channel itself
    channel_first = any(getattr(getattr(t, "_loader", t), "ensure_channel_first", False) for t in loaders)
    image_key = parser.get_parsed_content("image_key") if "image_key" in parser else "image"
    pre.transforms = steps
    keyed = any(isinstance(t, MapTransform) for t in steps)
    spacing = None
    for t in steps:
        sp = getattr(t, "spacing_transform", t) if isinstance(t, Spacingd) else t
        if isinstance(sp, Spacing):
            pix = [float(v) for v in sp.pixdim]
            spacing = tuple(pix[:3]) if len(pix) >= 3 else None

    def preprocess(image):
        from monai.data import MetaTensor

        if not channel_first:
            # what LoadImaged gives: no channel axis, and the meta saying so (EnsureChannelFirstd adds it)
            image = MetaTensor(image.as_tensor()[0], affine=image.affine,
                               meta={"original_channel_dim": "no_channel", "space": "RAS"})
        try:
            out = pre({image_key: image})[image_key] if keyed else pre(image)
        except Exception as exc:  # MONAI wraps a transform's failure in a RuntimeError naming the transform
            raise BundleError(f"{where}: preprocessing failed on the scan ({_one_line(exc)}); its transforms "
                              f"must take the image under the key {image_key!r} alone") from exc
        if not isinstance(out, MetaTensor) or out.ndim != 4:
            raise BundleError(f"{where}: preprocessing must give a channel-first 3-D MetaTensor (an affine is "
                              f"needed to bring the labels back), got {type(out).__name__} of {tuple(out.shape)}")
        return out

    inferer = dict(INFERER_DEFAULTS)
    if "inferer" not in parser:
        raise BundleError(f"{where}: declares preprocessing but no inferer; add "
                          "\"inferer\": {\"_target_\": \"SlidingWindowInferer\", \"roi_size\": [96, 96, 96], ...}")
    try:
        declared = parser.get_parsed_content("inferer")
    except Exception as exc:
        raise BundleError(f"{where}: inferer cannot be built ({_one_line(exc)})") from exc
    if not isinstance(declared, SlidingWindowInferer):
        raise BundleError(f"{where}: inferer is a {type(declared).__name__}; tumorburden runs whole scans "
                          "through a SlidingWindowInferer: declare one (roi_size, overlap, mode ...)")
    for key in INFERER_DEFAULTS:
        inferer[key] = getattr(declared, key)
    roi = inferer["roi_size"]
    roi = [roi] * 3 if isinstance(roi, int) else list(roi)
    if len(roi) != 3 or min(int(v) for v in roi) <= 0:
        raise BundleError(f"{where}: inferer roi_size must be three positive numbers, got {inferer['roi_size']!r}")
    inferer["roi_size"] = tuple(int(v) for v in roi)
    _check_postprocessing(parser, where)
    return preprocess, spacing, inferer


def _check_postprocessing(parser, where: Path) -> None:
    """The labels are the argmax over the output channels at the model's grid (the engine's own way);
    a bundle whose postprocessing thresholds channels (multi-label) is not one label per voxel."""
    post = parser.get("postprocessing") if "postprocessing" in parser else None
    found = []

    def walk(node):
        if isinstance(node, dict):
            target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
            if target:
                found.append((target, node))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(post)
    discrete = [n for t, n in found if t in ("AsDiscreted", "AsDiscrete")]
    if discrete and not any(n.get("argmax") is True for n in discrete):
        raise BundleError(f"{where}: postprocessing's AsDiscreted does not take the argmax; tumorburden reads one "
                          "label per voxel (the argmax over channels): a multi-label (thresholded) model is not supported")
    ignored = sorted({t for t, _ in found} - LABEL_NEUTRAL)
    if ignored:
        log.warning("%s: postprocessing %s not applied (the engine takes the argmax at the model's grid and brings "
                    "the labels back to the scan's grid itself)", where, ", ".join(ignored))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _load_network(path: Path, device, inference: dict) -> tuple[torch.nn.Module, Path]:
    ts, pt = path / "models" / "model.ts", path / "models" / "model.pt"
    if ts.exists():
        try:
            net = torch.jit.load(str(ts), map_location=device)
        except Exception as exc:  # torch raises many types for a bad archive
            raise BundleError(f"{ts}: not a loadable TorchScript file ({' '.join(str(exc).split())[:200]})") from exc
        return net.eval(), ts
    if not pt.exists():
        raise BundleError(f"{path / 'models'}: neither model.pt (state dict) nor model.ts (TorchScript) found; "
                          "put the trained weights there")
    net_def = _network_def(path, inference)
    from monai.bundle import ConfigParser

    try:
        # within the whole config when it is inference.json's: a network_def may refer to other keys
        parser = ConfigParser(dict(inference) if "network_def" in inference else {"network_def": net_def})
        if "bundle_root" in parser:
            parser["bundle_root"] = str(path)
        net = parser.get_parsed_content("network_def")
    except Exception as exc:
        raise BundleError(f"{path}: network_def cannot be built ({' '.join(str(exc).split())[:300]})") from exc
    try:
        state = torch.load(str(pt), map_location=device, weights_only=True)
    except Exception as exc:
        raise BundleError(f"{pt}: cannot read the weights ({' '.join(str(exc).split())[:200]})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise BundleError(f"{pt}: the weights do not fit network_def ({' '.join(first[:2])[:300]}); "
                          "check the network definition in configs/inference.json") from exc
    return net.to(device).eval(), pt


def _network_def(path: Path, inference: dict) -> dict:
    if "network_def" in inference:
        return inference["network_def"]
    cfg = path / "configs" / "metadata.json"
    if cfg.exists():
        content = _read_json(cfg)
        if "network_def" in content:
            return content["network_def"]
    raise BundleError(f"{path / 'configs'}: no network_def in inference.json or metadata.json; a state-dict "
                      "model needs one (e.g. {\"_target_\": \"SegResNet\", ...}), or ship models/model.ts")
