# Config and study loading: everything is checked here, before any job runs.
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from tumorburden.paths import DEFAULT_BUNDLE, ID_REGEX, resolve_bundle  # noqa: E402
from tumorburden.study import StudyError, check_study, private_dir, results_dir  # noqa: E402

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
ENV = "../../envs/tumorburden.yaml"
# envs/tumorburden.post-deploy.sh installs the package from here into a new conda environment.
os.environ.setdefault("TUMORBURDEN_SOURCE", str(Path(workflow.basedir).resolve()))

# The one validation layer (config schema, IDs, ranges, the files the config names, the tables),
# the same function `tumorburden check-study` runs: a bad input stops here, in one line.
try:
    STUDY = check_study(config, SCHEMAS)
except StudyError as exc:
    sys.exit(f"tumorburden: {' '.join(str(exc).split())}")

R = str(results_dir(config))
# A study given as study.dicom_root has its scans discovered by the `discover` checkpoint
# (imaging.smk): SCANS is then read from its manifest once it has run.
DICOM_ROOT = STUDY.dicom_root is not None
# outside results/: series lists of a PACS export, DICOM objects for the hospital's PACS
PRIVATE = str(STUDY.private_dir or private_dir(config))
DICOM_SEG = (config.get("segmentation") or {}).get("dicom_seg", True)
INGEST_EXCLUSIONS = [f"{R}/qc/ingest_exclusions.tsv"] if DICOM_ROOT else []


class DiscoveredScans:
    """scans.tsv of a dicom_root study, with the DataFrame's `loc` and `index`. Reading it inside
    an input function before the checkpoint has run tells Snakemake to run the checkpoint first."""

    def __init__(self):
        self._frame, self._mtime = None, None

    def frame(self):
        path = Path(checkpoints.discover.get().output.scans)
        mtime = path.stat().st_mtime
        if self._frame is None or mtime != self._mtime:
            import pandas as pd

            frame = pd.read_csv(path, sep="\t", dtype={"patient_id": str, "scan_id": str, "image": str})
            frame["mask"] = None  # external masks are a scans.tsv feature
            self._frame, self._mtime = frame.set_index("scan_id", drop=False), mtime
        return self._frame

    @property
    def loc(self):
        return self.frame().loc

    @property
    def index(self):
        return self.frame().index

    def __getattr__(self, name):  # columns, iterrows, ...: as the DataFrame
        if name.startswith("_"):  # copy/pickle protocols must not trigger the checkpoint
            raise AttributeError(name)
        return getattr(self.frame(), name)


SCANS = DiscoveredScans() if DICOM_ROOT else STUDY.scans
CLINICAL_TSV = str(STUDY.clinical_path)
SCANS_TSV = str(STUDY.scans_path)
ANALYSED_COHORTS = STUDY.cohorts + (["all"] if config.get("survival", {}).get("pooled", True) else [])
ENDPOINTS = config.get("survival", {}).get("endpoints", ["pfs", "os"])


wildcard_constraints:
    scan_id=ID_REGEX,
    patient_id=ID_REGEX,
    cohort=ID_REGEX,
    endpoint=r"pfs|os",


def settings(section, without=()):
    """A config section (less the keys `without`) as the JSON of `tumorburden ... --settings`
    (the rules quote it: --settings={params.settings:q}). Leave out the keys a step ignores
    (Snakemake reruns a job whose parameters changed)."""
    chosen = {k: v for k, v in (config.get(section) or {}).items() if k not in without}
    return json.dumps(chosen, sort_keys=True)


_PER_SCAN_TABLE = {}


def once_per_scan_table(compute):
    """compute() cached while the scan table is the same object (a dicom_root study's table only
    exists after the discover checkpoint, so these may not run when the Snakefile is read)."""

    def cached():
        key = id(SCANS.index)
        if _PER_SCAN_TABLE.get(compute.__name__, (None,))[0] != key:
            _PER_SCAN_TABLE[compute.__name__] = (key, compute())
        return _PER_SCAN_TABLE[compute.__name__][1]

    return cached


@once_per_scan_table
def scan_rows():
    """scan_id -> its scans.tsv row as a dict: input functions run for every job, and a
    DataFrame lookup per job was a tenth of the 600 x 6 DAG's build time."""
    return SCANS.to_dict("index")


def scan_row(scan_id):
    return scan_rows()[scan_id]


def external_mask(wc):
    """The scan's external lesion mask, when scans.tsv gives one."""
    mask = scan_row(wc.scan_id).get("mask")
    return {"mask": mask} if isinstance(mask, str) and mask else {}


def scan_files(pattern):
    """One path per scan; for a dicom_root study an input function (scans known after discovery)."""
    if DICOM_ROOT:
        return lambda wc: expand(pattern, scan_id=SCANS.index)
    return expand(pattern, scan_id=SCANS.index)


def final_targets():
    targets = [
        f"{R}/tables/lesions.parquet",
        f"{R}/tables/burden.parquet",
        f"{R}/tables/features.parquet",
        f"{R}/survival/cox.csv",
        f"{R}/survival/performance.csv",
        f"{R}/survival/validation.csv",
    ]
    targets += figure_targets()  # workflow/rules/figures.smk
    if STUDY.synthetic:
        targets.append(f"{R}/truth/scores.csv")
    if DICOM_ROOT:
        targets.append(f"{R}/manifest/series.parquet")
    if DICOM_SEG and not DICOM_ROOT:
        targets += dicom_seg_targets()  # segment.smk
    return targets


def discovered_scan_targets(wildcards):
    """Per-scan files `rule all` asks for in a dicom_root study, known once discovery has run."""
    return dicom_seg_targets() if DICOM_SEG and DICOM_ROOT else []


# Segmentation (segment.smk): the bundle, a scan's inputs, DICOM sources and their DICOM-SEG.
SEGMENTATION = config.get("segmentation") or {}


def _model_weights():
    """{"weights": the bundle's weights file} for the monai engine, else {}."""
    if SEGMENTATION.get("engine", "monai") != "monai":
        return {}
    bundle = resolve_bundle(SEGMENTATION.get("bundle", DEFAULT_BUNDLE))
    weights = bundle / "models" / "model.ts"
    return {"weights": str(weights if weights.exists() else bundle / "models" / "model.pt")}


MODEL_WEIGHTS = _model_weights()


def segment_inputs(wc):
    """The scan's image, external mask / TotalSegmentator folder, and the model weights."""
    inputs = {"image": f"{R}/scans/{wc.scan_id}/image.nii.gz", **external_mask(wc), **MODEL_WEIGHTS}
    bodycomp = scan_row(wc.scan_id).get("bodycomp")
    if isinstance(bodycomp, str) and bodycomp:
        inputs["bodycomp"] = bodycomp
    return inputs


def scan_source(scan_id):
    """What a scan's jobs take as input for its image: the image itself, or for the synthetic trial
    the patient's rendered folder (rendering is one job per patient; a file inside a directory
    output cannot be an input), with the image named as a parameter."""
    image = scan_row(scan_id)["image"]
    return str(Path(image).parent) if STUDY.synthetic else image


def truth_folders():
    """truth/scans/<patient_id>/ of every patient of the synthetic trial (<scan_id>/ inside)."""
    if not STUDY.synthetic:
        return []
    return expand(f"{R}/truth/scans/{{patient_id}}", patient_id=sorted(set(SCANS["patient_id"])))


def _is_dicom_path(image):
    return not str(image).endswith((".nii", ".nii.gz"))


def is_dicom_source(scan_id):
    return _is_dicom_path(scan_row(scan_id)["image"])


@once_per_scan_table
def dicom_scans_of_patient():
    """patient -> their scans whose source is a DICOM folder (a NIfTI source has no series for a
    DICOM-SEG to reference)."""
    by_patient = {}
    for scan_id, patient, image in zip(SCANS.index, SCANS.loc[:, "patient_id"], SCANS.loc[:, "image"]):
        if _is_dicom_path(image):
            by_patient.setdefault(patient, []).append(scan_id)
    return by_patient


def dicom_seg_inputs(wc):
    scans = dicom_scans_of_patient()[wc.patient_id]
    return {"segmentations": [f"{R}/scans/{s}/segmentation.nii.gz" for s in scans],
            "sources": sorted({scan_source(s) for s in scans})}


def dicom_series_of_patient(wc):
    return [scan_row(s)["image"] for s in dicom_scans_of_patient()[wc.patient_id]]


def dicom_seg_targets(wildcards=None):
    """dicom_seg/<patient_id>/ (a DICOM-SEG per DICOM-sourced scan) for every patient with one."""
    return [f"{R}/dicom_seg/{p}" for p in dicom_scans_of_patient()]


# Lesions (lesions.smk): each patient's reference scan for registration.
from tumorburden.baseline import reference_scans

@once_per_scan_table
def reference_scan_of_patient():
    """patient -> reference scan."""
    scans = SCANS.loc[:, ["patient_id", "scan_id", "days"]]
    return reference_scans(scans.reset_index(drop=True).astype({"days": float}))


def reference_of(wc):
    return reference_scan_of_patient()[scan_row(wc.scan_id)["patient_id"]]


# On a SLURM cluster (executor slurm), before the first sbatch: every rule's and group's request
# held against the partitions (and lowered with cluster.fit: cap), then the pending watch
# (workflow/tumorburden/cluster.py). Other executors: nothing.
onstart:
    from tumorburden.cluster import ClusterError, on_start

    try:
        on_start(workflow, config)
    except ClusterError as exc:
        sys.exit(f"tumorburden: {exc}")


def design_scores():
    """The segmentation error `snakemake design` simulates: design.scores, else this run's
    truth/scores.csv when it exists (a finished synthetic run), else none (design.error)."""
    given = (config.get("design") or {}).get("scores")
    if given:
        return given
    own = Path(f"{R}/truth/scores.csv")
    return str(own) if own.exists() else []
