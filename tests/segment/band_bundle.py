"""Bundles whose networks have fixed weights and a known answer: each output channel but the
first fires where the (windowed, scaled) CT value lies in its band, so a test knows which label
every voxel must get. Channels are named as a real model's (an organ model's TotalSegmentator
names, a lesion model's), to exercise the name mapping."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPACING = (4.0, 4.0, 4.0)


class Bands(torch.nn.Module):
    """Channel 0 (background) is 0.5 everywhere; channel c > 0 is 1 inside |x - centre_c| < width."""

    def __init__(self, centres: list[float], widths: list[float]):
        super().__init__()
        self.centres = torch.tensor(centres, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.widths = torch.tensor(widths, dtype=torch.float32).view(1, -1, 1, 1, 1)

    def forward(self, x):
        bands = (torch.abs(x - self.centres) < self.widths).float()
        return torch.cat([torch.full_like(x, 0.5), bands], dim=1)


def write_band_bundle(folder: Path, bands: dict, width_hu: float = 50.0) -> Path:
    """A TorchScript bundle: channel names -> the HU each fires at, or (HU, half-width) (the window
    is -1000..1000 HU scaled to -1..1; the model grid is the scan's 4 mm grid, so no resampling
    blurs the bands)."""
    bands = {k: (v if isinstance(v, (tuple, list)) else (v, width_hu)) for k, v in bands.items()}
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    channel_def = {"0": "background", **{str(i): name for i, name in enumerate(bands, start=1)}}
    meta = {
        "name": folder.name, "version": "0.1",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": 1}},
            "outputs": {"pred": {"type": "image", "num_channels": len(channel_def), "channel_def": channel_def}},
        },
        "tumorburden": {"spacing_mm": list(SPACING), "roi_size": [32, 32, 32],
                        "intensity": {"a_min": -1000.0, "a_max": 1000.0, "b_min": -1.0, "b_max": 1.0, "clip": True}},
    }
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    net = Bands([c / 1000.0 for c, _ in bands.values()], [w / 1000.0 for _, w in bands.values()])
    torch.jit.script(net).save(str(folder / "models" / "model.ts"))
    return folder
