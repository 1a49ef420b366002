"""What the Snakemake rules ask of the study while the DAG is built: each scan's row, its inputs,
its patient's reference scan, the patients with DICOM sources, and a config section as a rule's
`--settings` JSON. `workflow/rules/common.smk` holds one `StudyPlan` and thin wrappers around it.

Input functions run once per job, and at IMPACT size (600 patients x 6 scans) the DAG has tens
of thousands of them: every lookup here is a dict lookup on a table computed once per scan table
(BENCHMARKS.md, DAG build). A `dicom_root` study's scan table exists only after the `discover`
checkpoint has run; `DiscoveredScans` stands in for it until then.

Light on purpose (pandas and the study model only): Snakemake imports it for every run.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tumorburden.baseline import reference_scans
from tumorburden.paths import POOLED, resolve_bundle
from tumorburden.study import default_config


# Keys of the `survival` section that only the prediction models read (`tumorburden prediction`):
# the `survival` rule leaves them out of its settings, so that editing them does not redo it.
PREDICTION_KEYS = ("model_sets", "horizons_days", "calibration_groups", "rmst_tau_days")
# ... and those only the dynamic (`tumorburden dynamic`) and joint (`tumorburden joint`) models read.
DYNAMIC_KEYS = ("landmarks_days", "landmark_window_days", "landmark_covariates", "landmark_baseline")
JOINT_KEYS = ("joint",)


def settings_json(config: dict, section: str, without=()) -> str:
    """A config section (less the keys `without`) as the JSON of `tumorburden ... --settings`.
    Keys sorted, so the same settings give the same string: Snakemake reruns a job whose
    parameters changed, so a rule leaves out the keys its step ignores."""
    chosen = {k: v for k, v in (config.get(section) or {}).items() if k not in without}
    return json.dumps(chosen, sort_keys=True)


@functools.cache
def _defaults() -> dict:
    return default_config()


def section(config: dict, name: str) -> dict:
    """A config section with the embedded defaults (config/config.yaml, equal to the code's, checked
    by tests/test_config.py) under the user's keys: a run started in another working directory
    (`snakemake --directory`) has only the user's config, so the rules must not assume the rest."""
    return {**(_defaults().get(name) or {}), **(config.get(name) or {})}


def analysed_cohorts(cohorts, survival: dict) -> list[str]:
    """The cohorts the survival stage analyses: each one, then all together when `pooled`."""
    return list(cohorts) + ([POOLED] if survival["pooled"] else [])


def read_discovered_scans(path: Path) -> pd.DataFrame:
    """The scans table the `discover` checkpoint writes (manifest/scans.tsv), indexed by scan_id,
    in the shape of a scans.tsv study's table (no external masks: those are a scans.tsv feature)."""
    frame = pd.read_csv(path, sep="\t", dtype={"patient_id": str, "scan_id": str, "image": str})
    frame["mask"] = None
    return frame.set_index("scan_id", drop=False)


class DiscoveredScans:
    """scans.tsv of a dicom_root study, with the DataFrame's `loc`, `index` and columns.

    `manifest` returns the checkpoint's scans.tsv path; in the Snakefile it is
    `checkpoints.discover.get().output.scans`, which raises Snakemake's IncompleteCheckpointException
    before the checkpoint has run: reading the table inside an input function is what tells
    Snakemake to run discovery first. Re-read when the file changes (a rerun of discovery)."""

    def __init__(self, manifest: Callable[[], str | Path]):
        self._manifest = manifest
        self._frame, self._mtime = None, None

    def frame(self) -> pd.DataFrame:
        path = Path(self._manifest())
        mtime = path.stat().st_mtime
        if self._frame is None or mtime != self._mtime:
            self._frame, self._mtime = read_discovered_scans(path), mtime
        return self._frame

    @property
    def loc(self):
        return self.frame().loc

    @property
    def index(self):
        return self.frame().index

    def __len__(self):
        return len(self.frame())

    def __getitem__(self, key):
        return self.frame()[key]

    def __getattr__(self, name):  # to_dict, columns, ...: as the DataFrame
        if name.startswith("_"):  # copy/pickle protocols must not trigger the checkpoint
            raise AttributeError(name)
        return getattr(self.frame(), name)


def is_dicom_path(image) -> bool:
    """A scan's image names a DICOM series (a folder or a discovery series list), not a NIfTI file."""
    return not str(image).endswith((".nii", ".nii.gz"))


def _models(segmentation: dict) -> list[tuple[str, Path]]:
    """("bundle" | "nnunet", path) of each model the segmentation runs (`segmentation` with its defaults)."""
    if segmentation.get("models"):
        return [(kind, resolve_bundle(entry[kind])) for entry in segmentation["models"] if isinstance(entry, dict)
                for kind in ("bundle", "nnunet") if entry.get(kind)]
    if segmentation["engine"] == "nnunet" and segmentation.get("model"):
        return [("nnunet", resolve_bundle(segmentation["model"]))]
    if segmentation["engine"] == "monai":
        return [("bundle", resolve_bundle(segmentation["bundle"]))]
    return []


def _nnunet_checkpoints(model: Path, segmentation: dict) -> str | list[str]:
    """An nnU-Net model's weights as files: the zip itself, or the checkpoint of each fold in use (a
    folder's own time does not change when a file inside it is replaced). A path that is not there
    stays as it is: the segment job says what to download."""
    if not model.is_dir():
        return str(model)
    nnunet = {**(section({}, "segmentation").get("nnunet") or {}), **(segmentation.get("nnunet") or {})}
    found = sorted(model.rglob(f"fold_*/{nnunet['checkpoint']}"))
    if nnunet["folds"] is not None:
        found = [f for f in found if f.parent.name in {f"fold_{fold}" for fold in nnunet["folds"]}]
    return [str(f) for f in found] or str(model)


def model_weights(segmentation: dict) -> dict:
    """The models' weights, inputs of the segment job (new weights redo the segmentation):
    {"weights": ...} for one model, {"weights_<n>": ...} for each of `segmentation.models`. A
    bundle's TorchScript (models/model.ts) when it has one, else models/model.pt; an nnU-Net model's
    zip or the checkpoints of its folds. `segmentation` is the section with its defaults (`section`)."""
    out = {}
    for kind, path in _models(segmentation):
        if kind == "nnunet":
            weights = _nnunet_checkpoints(path, segmentation)
        else:
            ts = path / "models" / "model.ts"
            weights = str(ts if ts.exists() else path / "models" / "model.pt")
        out[f"weights_{len(out) + 1}"] = weights
    if segmentation.get("models"):
        return out
    return {"weights": out["weights_1"]} if out else {}


# A model's files, besides its weights, that decide its labels: a bundle's configs (declared
# preprocessing, inferer, postprocessing, label names), an nnU-Net model's plans and dataset.json
MODEL_DESCRIPTION = {"bundle": ("configs/**/*.json", "configs/**/*.yaml", "configs/**/*.yml"),
                     "nnunet": ("**/plans.json", "**/dataset.json")}


def model_fingerprint(segmentation: dict) -> str:
    """A digest of the contents of every model's description files (MODEL_DESCRIPTION), a param of
    the segment job: editing one redoes the segmentation (Snakemake's params trigger) while a copy
    of the same files does not (file times would). A zipped model is an input by its time."""
    digest = hashlib.sha256()
    for n, (kind, path) in enumerate(_models(segmentation), start=1):
        digest.update(f"{n}:{kind}\n".encode())  # not the path: the settings param has it as configured
        if path.is_dir():
            for name in sorted({f for pattern in MODEL_DESCRIPTION[kind] for f in path.glob(pattern)}):
                digest.update(f"{name.relative_to(path)}\n".encode() + name.read_bytes())
    return digest.hexdigest()[:16]


class StudyPlan:
    """The per-scan and per-patient lookups of the rules' input functions, over the study's scan
    table (`Study.scans`, or a `DiscoveredScans`), with results under `results`.

    Derived tables are computed on first use and kept while the scan table is the same object, so
    that nothing reads a dicom_root study's table before its checkpoint has run, and a rerun
    discovery is seen."""

    def __init__(self, scans, results: str | Path, synthetic: bool = False):
        self.scans = scans
        self.results = str(results)
        self.synthetic = synthetic
        self._cache: dict[str, tuple[int, object]] = {}

    def once_per_scan_table(self, name: str, compute: Callable[[], object]):
        """compute(), kept under `name` while the scan table is the same object."""
        key = id(self.scans.index)  # a DiscoveredScans re-read gives a new index object
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            hit = self._cache[name] = (key, compute())
        return hit[1]

    # per scan
    def scan_rows(self) -> dict[str, dict]:
        """scan_id -> its row as a dict (a DataFrame lookup per job was a tenth of the DAG build)."""
        return self.once_per_scan_table("scan_rows", lambda: self.scans.to_dict("index"))

    def scan_row(self, scan_id: str) -> dict:
        return self.scan_rows()[scan_id]

    def scan_ids(self) -> list[str]:
        return list(self.scans.index)

    def external_file(self, scan_id: str, column: str) -> str | None:
        """The path scans.tsv gives the scan in `column` (`mask`: an external lesion mask, `bodycomp`:
        a body-composition folder); None when the cell is empty."""
        value = self.scan_row(scan_id).get(column)
        return value if isinstance(value, str) and value else None

    def scan_source(self, scan_id: str) -> str:
        """What a scan's jobs take as input for its image: the image itself, or for the synthetic
        trial the patient's rendered folder (rendering is one job per patient; a file inside a
        directory output cannot be an input)."""
        image = self.scan_row(scan_id)["image"]
        return str(Path(image).parent) if self.synthetic else image

    def is_dicom_source(self, scan_id: str) -> bool:
        return is_dicom_path(self.scan_row(scan_id)["image"])

    def patient_of(self, scan_id: str) -> str:
        return self.scan_row(scan_id)["patient_id"]

    # per patient
    def patients(self) -> list[str]:
        return self.once_per_scan_table("patients", lambda: sorted(set(self.scans["patient_id"])))

    def scans_of_patient(self) -> dict[str, list[str]]:
        """patient -> their scan ids, in the table's order."""
        def compute():
            by_patient: dict[str, list[str]] = {}
            for scan_id, patient in zip(self.scans.index, self.scans.loc[:, "patient_id"]):
                by_patient.setdefault(patient, []).append(scan_id)
            return by_patient
        return self.once_per_scan_table("scans_of_patient", compute)

    def scans_of(self, patient_id: str) -> list[str]:
        return self.scans_of_patient()[patient_id]

    def patient_scan_files(self, patient_id: str, pattern: str) -> list[str]:
        """One path per scan of the patient (pattern with {scan_id})."""
        return [pattern.format(scan_id=s) for s in self.scans_of(patient_id)]

    def external_files(self, patient_id: str, column: str) -> list[tuple[str, str]]:
        """(scan_id, path) of the patient's scans whose scans.tsv row fills `column` (mask, bodycomp)."""
        pairs = [(s, self.external_file(s, column)) for s in self.scans_of(patient_id)]
        return [(s, path) for s, path in pairs if path]

    def segment_inputs(self, patient_id: str, weights: dict) -> dict:
        """The segment job's inputs: the patient's ingest record (their images), external masks and
        body-composition folders, and the model weights."""
        return {"ingested": f"{self.results}/qc/ingest/{patient_id}.tsv",
                "masks": [m for _, m in self.external_files(patient_id, "mask")],
                "bodycomp": [m for _, m in self.external_files(patient_id, "bodycomp")], **weights}

    def ingest_sources(self, patient_id: str, discovered: bool) -> list[str]:
        """How `tumorburden ingest` is told the patient's sources, one per scan: the series lists
        discovery wrote (a dicom_root study), else the image paths of scans.tsv (after `--`: a path
        is never read as an option)."""
        images = [self.scan_row(s)["image"] for s in self.scans_of(patient_id)]
        return ["--series-list", *images] if discovered else ["--", *images]

    def dicom_scans_of_patient(self) -> dict[str, list[str]]:
        """patient -> their scans whose source is DICOM (a NIfTI source has no series for a
        DICOM-SEG to reference); patients without one are absent."""
        def compute():
            by_patient: dict[str, list[str]] = {}
            for scan_id, patient, image in zip(self.scans.index, self.scans.loc[:, "patient_id"],
                                               self.scans.loc[:, "image"]):
                if is_dicom_path(image):
                    by_patient.setdefault(patient, []).append(scan_id)
            return by_patient
        return self.once_per_scan_table("dicom_scans_of_patient", compute)

    def dicom_seg_inputs(self, patient_id: str) -> dict:
        """The DICOM-SEG job's inputs: the patient's segment record (their segmentations) and the
        DICOM sources the SEGs reference."""
        scans = self.dicom_scans_of_patient()[patient_id]
        return {"segmented": f"{self.results}/qc/segment/{patient_id}.tsv",
                "sources": sorted({self.scan_source(s) for s in scans})}

    def dicom_segmentations_of_patient(self, patient_id: str) -> list[str]:
        return [f"{self.results}/scans/{s}/segmentation.nii.gz" for s in self.dicom_scans_of_patient()[patient_id]]

    def dicom_series_of_patient(self, patient_id: str) -> list[str]:
        return [self.scan_row(s)["image"] for s in self.dicom_scans_of_patient()[patient_id]]

    def dicom_seg_targets(self) -> list[str]:
        """dicom_seg/<patient_id>/ (a DICOM-SEG per DICOM-sourced scan) for every patient with one."""
        return [f"{self.results}/dicom_seg/{p}" for p in self.dicom_scans_of_patient()]

    def reference_scan_of_patient(self) -> dict[str, str]:
        """patient -> the scan each of their scans is registered to (`tumorburden.baseline`)."""
        def compute():
            scans = self.scans.loc[:, ["patient_id", "scan_id", "days"]]
            return reference_scans(scans.reset_index(drop=True).astype({"days": float})).to_dict()
        return self.once_per_scan_table("reference_scan_of_patient", compute)

    def truth_folders(self) -> list[str]:
        """truth/scans/<patient_id>/ of every patient of a synthetic trial (<scan_id>/ inside); [] otherwise."""
        if not self.synthetic:
            return []
        return [f"{self.results}/truth/scans/{p}" for p in self.patients()]
