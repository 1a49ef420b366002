"""Tiny MONAI bundles for the engine tests: an untrained UNet, and a fixed 'threshold network'
whose answer is known (lesion wherever HU > 0), so the whole inference path can be checked."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tumorburden import labels as L

CHANNELS = {"0": "background", "1": "lesion"}


def metadata(channel_def=None, in_channels=1, spacing=(4.0, 4.0, 4.0), roi=(32, 32, 32)) -> dict:
    channel_def = channel_def or CHANNELS
    return {
        "name": "tiny", "version": "0.1",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": in_channels}},
            "outputs": {"pred": {"type": "image", "num_channels": len(channel_def), "channel_def": channel_def}},
        },
        "tumorburden": {"spacing_mm": list(spacing), "roi_size": list(roi),
                        "intensity": {"a_min": -1000.0, "a_max": 1000.0, "b_min": -1.0, "b_max": 1.0, "clip": True}},
    }


def unet_def(out_channels=2) -> dict:
    return {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": out_channels,
            "channels": [4, 8], "strides": [2], "num_res_units": 0}


def write_bundle(folder: Path, meta: dict | None = None, network_def: dict | None = None,
                 state: dict | None = None) -> Path:
    from monai.bundle import ConfigParser

    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    meta = meta or metadata()
    network_def = network_def or unet_def(len(meta["network_data_format"]["outputs"]["pred"]["channel_def"]))
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    (folder / "configs" / "inference.json").write_text(json.dumps({"network_def": network_def}))
    if state is None:
        torch.manual_seed(0)
        state = ConfigParser({"n": network_def}).get_parsed_content("n").state_dict()
    torch.save(state, folder / "models" / "model.pt")
    return folder


class Threshold(torch.nn.Module):
    """Two channels: background = -x, lesion = +x, so argmax = lesion where the scaled HU > 0."""

    def forward(self, x):
        return torch.cat([-x, x], dim=1)


def write_threshold_bundle(folder: Path, spacing=(4.0, 4.0, 4.0), roi=(32, 32, 32)) -> Path:
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata(spacing=spacing, roi=roi)))
    scripted = torch.jit.script(Threshold())
    scripted.save(str(folder / "models" / "model.ts"))
    return folder


LESION = L.LESION
