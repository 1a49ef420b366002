"""A segmentation model as a MONAI bundle folder: weights + configs/metadata.json.

Layout (MONAI bundle specification):

    <bundle>/configs/metadata.json   labels (network_data_format.outputs.pred.channel_def),
                                     input channels, and the `tumorburden` block: model
                                     spacing, intensity window, sliding-window ROI
    <bundle>/configs/inference.json  `network_def` (MONAI config syntax), for a state dict
    <bundle>/models/model.pt         state dict (or a checkpoint dict holding one), or
    <bundle>/models/model.ts         TorchScript module (no network_def needed)
    <bundle>/docs/README.md          what it is, how it was trained, its scores

A user's own bundle drops in by pointing `segmentation.bundle` at its folder. Its output
channels are matched to our labels by name (channel_def); a channel whose name is not one
of ours (or a known alias) is an error, so a model is never silently half-read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tumorburden import labels as L

log = logging.getLogger(__name__)

# Names a model may give its output channels -> our label (labels.py, shared with a radiologist's review).
ALIASES = L.ALIASES

# What `tumorburden` keys default to when a user's bundle does not say.
PREPROCESSING_DEFAULTS = {
    "spacing_mm": [1.5, 1.5, 1.5],
    "intensity": {"a_min": -1000.0, "a_max": 1000.0, "b_min": -1.0, "b_max": 1.0, "clip": True},
    "roi_size": [96, 96, 96],
    "orientation": "RAS",
}


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
    spacing_mm: tuple[float, float, float]
    intensity: dict
    roi_size: tuple[int, int, int]
    orientation: str
    weights: Path = field(default=None)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or self.path.name)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "?"))


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
    try:
        metadata = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: not valid JSON ({exc})") from exc
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
    pre = {**PREPROCESSING_DEFAULTS, **(metadata.get("tumorburden") or {})}
    intensity = {**PREPROCESSING_DEFAULTS["intensity"], **(pre.get("intensity") or {})}
    spacing = tuple(float(v) for v in pre["spacing_mm"])
    roi = tuple(int(v) for v in pre["roi_size"])
    if len(spacing) != 3 or min(spacing) <= 0 or len(roi) != 3 or min(roi) <= 0:
        raise BundleError(f"{meta_path}: tumorburden.spacing_mm and roi_size must be three positive numbers")

    network, weights = _load_network(path, device)
    return Bundle(path=path, metadata=metadata, network=network, lut=lut, in_channels=in_channels,
                  spacing_mm=spacing, intensity=intensity, roi_size=roi, orientation=str(pre["orientation"]),
                  weights=weights)


def _load_network(path: Path, device) -> tuple[torch.nn.Module, Path]:
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
    net_def = _network_def(path)
    from monai.bundle import ConfigParser

    try:
        parser = ConfigParser({"network_def": net_def})
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


def _network_def(path: Path) -> dict:
    for name in ("inference.json", "metadata.json"):
        cfg = path / "configs" / name
        if cfg.exists():
            try:
                content = json.loads(cfg.read_text())
            except json.JSONDecodeError as exc:
                raise BundleError(f"{cfg}: not valid JSON ({exc})") from exc
            if "network_def" in content:
                return content["network_def"]
    raise BundleError(f"{path / 'configs'}: no network_def in inference.json or metadata.json; a state-dict "
                      "model needs one (e.g. {\"_target_\": \"SegResNet\", ...}), or ship models/model.ts")
