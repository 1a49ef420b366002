"""Several segmentation models composed (`segmentation.models`): which of our labels each gives.

Read from the models' own label lists before any weights load or image is read, so that a run
with a bad list stops at `check-study` (the Snakefile's check) with one line naming the key:

    segmentation:
      models:
        - bundle: models/tumorburden_ct          # a MONAI bundle folder: channel_def names its labels
          use: [lesion, lymph_node_lesion, skeletal_muscle, subcutaneous_fat, visceral_fat]
          ignore: [lung, liver]
        - nnunet: /models/Dataset291_TotalSegmentator_part1_organs   # nnU-Net: dataset.json `labels`
          name: organs
          use: [liver, spleen, kidney_left, kidney_right, lung_upper_lobe_left, vertebrae_L3]
          ignore: rest                            # every other class of the model, said explicitly
      precedence: [lesion, lymph_node_lesion, liver, lung, ..., subcutaneous_fat]

Rules (config/README.md): each model's label (its channel or class name) is either used, then
it must map to one of ours (labels.label_of_name), or ignored by name or by `ignore: rest`;
never dropped silently. Each of our labels comes from one model: two models giving the same label
is an error that says which to drop. Where models disagree on a voxel, the label earlier in
`segmentation.precedence` wins (the default: lesions over organs over body composition); a label a
model gives that the precedence does not list is an error. Some model must give a lesion label.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tumorburden import labels as L
from tumorburden.paths import resolve_bundle

# Lesions over organs over body composition: a lesion inside the liver is a lesion, an organ
# model's liver wins over a body-composition model's fat at the organ's edge, and the L3 vertebra
# over the rest of the bone where a model gives both.
DEFAULT_PRECEDENCE = ["lesion", "lymph_node_lesion", "liver", "lung", "spleen", "kidney", "adrenal_gland",
                      "pancreas", "brain", "vertebra_L3", "bone", "skeletal_muscle", "visceral_fat",
                      "subcutaneous_fat"]
KINDS = ("bundle", "nnunet")


class ModelListError(ValueError):
    """A `segmentation.models` list that cannot be composed; the message names the key."""


@dataclass
class ModelEntry:
    """One model of the list: where it is, and its labels (by the model's index) mapped to ours."""

    index: int  # 1-based, as the key in messages says: segmentation.models[1]
    kind: str  # bundle | nnunet
    path: Path
    name: str
    label_names: dict[int, str]  # the model's own labels: index -> name
    lut: dict[int, int] = field(default_factory=dict)  # model index -> our label (0: ignored / background)

    @property
    def provides(self) -> frozenset[int]:
        return frozenset(v for v in self.lut.values() if v != L.BACKGROUND)

    @property
    def key(self) -> str:
        return f"segmentation.models[{self.index}] ({self.name})"

    def used_names(self) -> dict[str, int]:
        """The model's used label names -> our label (what an engine needs to map its output)."""
        return {self.label_names[i]: lab for i, lab in self.lut.items() if lab != L.BACKGROUND}


@dataclass
class ModelPlan:
    entries: list[ModelEntry]
    precedence: list[int]  # our labels, highest first

    def rank(self) -> list[int]:
        """rank[label]: higher wins; background and labels nobody gives rank 0."""
        out = [0] * (max(L.ALL_NAMES) + 1)
        for i, label in enumerate(self.precedence):
            out[label] = len(self.precedence) - i
        return out

    @property
    def provides(self) -> frozenset[int]:
        return frozenset().union(*(e.provides for e in self.entries))

    @property
    def organ_model(self) -> bool:
        """Some model gives an organ of the organ map (labels.ORGAN_LABELS): lesions then get their
        finding site from it (lesions/measure.py)."""
        return bool(self.provides & set(L.ORGAN_LABELS))


def model_list(segmentation: dict) -> list:
    return list(segmentation.get("models") or [])


def plan_models(segmentation: dict) -> ModelPlan:
    """Check `segmentation.models` (and `precedence`) against the models' label lists; the plan."""
    entries = []
    for i, raw in enumerate(model_list(segmentation), start=1):
        entries.append(_entry(i, raw))
    if not entries:
        raise ModelListError("config key segmentation.models: the list is empty; name at least one model, or "
                             "leave the key out for segmentation.bundle")
    names = {}
    for e in entries:
        if e.name in names:
            raise ModelListError(f"config key segmentation.models[{e.index}]: name {e.name!r} is also the name of "
                                 f"segmentation.models[{names[e.name]}]; give one of them another `name`")
        names[e.name] = e.index
    givers: dict[int, ModelEntry] = {}
    for e in entries:
        for label in sorted(e.provides):
            if label in givers:
                other = givers[label]
                raise ModelListError(
                    f"config key segmentation.models: {L.ALL_NAMES[label]} is given by {other.key} and {e.key}; "
                    f"each of our labels comes from one model: list its names under `ignore` of the model that "
                    f"should not give it (the precedence orders different labels, not two sources of one)")
            givers[label] = e
    precedence = _precedence(segmentation.get("precedence") or DEFAULT_PRECEDENCE)
    for label, e in sorted(givers.items()):
        if label not in precedence:
            raise ModelListError(
                f"config key segmentation.precedence: {L.ALL_NAMES[label]} (given by {e.key}) is not in the list; "
                "add it where it should win over the labels after it")
    if not any(label in givers for label in L.LESION_LABELS):
        raise ModelListError(
            "config key segmentation.models: no model gives a lesion label (lesion or lymph_node_lesion), which "
            "every stage after segmentation measures; add a lesion model, or `use` its lesion channel")
    return ModelPlan(entries=entries, precedence=[p for p in precedence if p in givers])


def _precedence(names) -> list[int]:
    if not isinstance(names, (list, tuple)):
        raise ModelListError(f"config key segmentation.precedence: a list of label names, got {names!r}")
    out = []
    for name in names:
        label = L.label_of_our_name(str(name))
        if label is None or label == L.BACKGROUND:
            raise ModelListError(f"config key segmentation.precedence: {name!r} is none of our labels "
                                 f"({', '.join(v for k, v in L.ALL_NAMES.items() if k)})")
        if label in out:
            raise ModelListError(f"config key segmentation.precedence: {L.ALL_NAMES[label]} is listed twice "
                                 f"(as {name!r}); keep one place")
        out.append(label)
    return out


def _entry(index: int, raw) -> ModelEntry:
    key = f"config key segmentation.models[{index}]"
    if not isinstance(raw, dict):
        raise ModelListError(f"{key}: each model is a mapping such as {{bundle: <folder>}} or "
                             f"{{nnunet: <folder or zip>}}, got {raw!r}")
    kinds = [k for k in KINDS if raw.get(k)]
    if len(kinds) != 1:
        raise ModelListError(f"{key}: name exactly one of `bundle: <folder>` (MONAI bundle) or "
                             f"`nnunet: <folder or zip>` (nnU-Net v2 trained model), got {sorted(raw)}")
    kind = kinds[0]
    path = resolve_bundle(str(raw[kind]))
    if not path.exists():
        fetch = ("the bundle folder" if kind == "bundle" else
                 "the nnU-Net trained-model folder (DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>) or the "
                 "zip nnUNetv2_export_model_to_zip wrote; nothing is downloaded at run time")
        raise ModelListError(f"{key}: {raw[kind]} does not exist; put {fetch} there")
    name = str(raw.get("name") or path.name.removesuffix(".zip"))
    key = f"config key segmentation.models[{index}] ({name})"
    label_names = _bundle_labels(path, key) if kind == "bundle" else _nnunet_labels(path, key)
    entry = ModelEntry(index=index, kind=kind, path=path, name=name, label_names=label_names)
    entry.lut = _lut(entry, raw.get("use"), raw.get("ignore"), key)
    return entry


def _lut(entry: ModelEntry, use, ignore, key: str) -> dict[int, int]:
    by_name = {L.normalise_name(n): i for i, n in entry.label_names.items()}

    def indices(names, what):
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise ModelListError(f"{key}: `{what}` is a list of the model's label names, got {names!r}")
        missing = [n for n in names if L.normalise_name(n) not in by_name]
        if missing:
            raise ModelListError(f"{key}: `{what}` names {', '.join(map(repr, missing))}, which the model does not "
                                 f"have (its labels: {_listing(entry.label_names)})")
        return {by_name[L.normalise_name(n)] for n in names}

    background = {i for i, n in entry.label_names.items() if L.label_of_name(n) == L.BACKGROUND}
    rest = ignore == "rest"
    ignored = set() if ignore is None or rest else indices(ignore, "ignore")
    if use is None:
        if rest:
            raise ModelListError(f"{key}: `ignore: rest` needs a `use` list (else it ignores every label)")
        used = set(entry.label_names) - ignored - background
    else:
        used = indices(use, "use") - background
        both = used & ignored
        if both:
            raise ModelListError(f"{key}: {_listing({i: entry.label_names[i] for i in both})} both used and ignored")
        left = set(entry.label_names) - used - ignored - background
        if left and not rest:
            raise ModelListError(
                f"{key}: labels {_listing({i: entry.label_names[i] for i in left})} are neither used nor ignored; "
                "list them under `ignore`, or write `ignore: rest` to ignore every label not in `use`")
    lut = {i: L.BACKGROUND for i in entry.label_names}
    unknown = []
    for i in sorted(used):
        label = L.label_of_name(entry.label_names[i])
        if label is None:
            unknown.append(entry.label_names[i])
        else:
            lut[i] = label
    if unknown:
        raise ModelListError(
            f"{key}: {', '.join(map(repr, unknown))} map(s) to none of our labels "
            f"({', '.join(v for k, v in L.ALL_NAMES.items() if k)} and their aliases, labels.py); "
            "add them to the entry's `ignore` (or `ignore: rest` beside a `use` list)")
    if not any(v != L.BACKGROUND for v in lut.values()):
        raise ModelListError(f"{key}: the entry uses none of the model's labels; `use` at least one, or drop the model")
    return lut


def _listing(names: dict[int, str], limit: int = 12) -> str:
    items = [f"{n!r}" for _, n in sorted(names.items())]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _bundle_labels(path: Path, key: str) -> dict[int, str]:
    meta = path / "configs" / "metadata.json"
    if not meta.is_file():
        raise ModelListError(f"{key}: {meta} is missing; a MONAI bundle names its labels in "
                             "configs/metadata.json network_data_format.outputs.pred.channel_def")
    try:
        channel_def = json.loads(meta.read_text())["network_data_format"]["outputs"]["pred"]["channel_def"]
        return {int(k): str(v) for k, v in channel_def.items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelListError(f"{key}: {meta} has no readable network_data_format.outputs.pred.channel_def "
                             f"({type(exc).__name__}: {exc})") from exc


def _nnunet_labels(path: Path, key: str) -> dict[int, str]:
    """dataset.json's `labels` ({name: index}, nnU-Net v2) of a trained-model folder or its zip."""
    where, text = _nnunet_dataset_json(path, key)
    try:
        raw = json.loads(text)["labels"]
        out = {}
        for name, value in raw.items():
            if isinstance(value, (list, tuple)):  # region-based training: a region is not one label
                raise ModelListError(f"{key}: {where} declares region {name!r} = {value}; region-based nnU-Net "
                                     "models are not supported as one of segmentation.models")
            if name != L.NNUNET_IGNORE:  # not an output of the network
                out[int(value)] = str(name)
        return out
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ModelListError):
            raise
        raise ModelListError(f"{key}: {where} has no readable `labels` {{name: index}} ({type(exc).__name__}: "
                             f"{exc})") from exc


def _nnunet_dataset_json(path: Path, key: str) -> tuple[str, str]:
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ModelListError(f"{key}: {path} is neither a folder nor a zip; point it at an nnU-Net trained-model "
                                 "folder or the zip nnUNetv2_export_model_to_zip wrote")
        with zipfile.ZipFile(path) as z:
            found = sorted((n for n in z.namelist() if n.endswith("/dataset.json") or n == "dataset.json"),
                           key=lambda n: n.count("/"))
            if not found:
                raise ModelListError(f"{key}: {path} holds no dataset.json; is it an nnU-Net model zip?")
            return f"{path}:{found[-1]}", z.read(found[-1]).decode()
    found = [path / "dataset.json"] if (path / "dataset.json").is_file() else sorted(path.glob("*/dataset.json"))
    if len(found) != 1:
        raise ModelListError(f"{key}: {path} has {'no' if not found else 'more than one'} dataset.json; point it at "
                             "one trained model, DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>")
    return str(found[0]), found[0].read_text()
