# Config and study loading: everything is checked here, before any job runs.
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from tumorburden.paths import ID_REGEX  # noqa: E402
from tumorburden.study import StudyError, check_study, private_dir, results_dir, review_dir  # noqa: E402
from tumorburden.workflow_plan import (  # noqa: E402
    DYNAMIC_KEYS,
    JOINT_KEYS,
    PREDICTION_KEYS,
    DiscoveredScans,
    StudyPlan,
    analysed_cohorts,
    model_fingerprint,
    model_weights,
    section,
    settings_json,
)

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
DICOM_SEG = section(config, "segmentation")["dicom_seg"]
INGEST_EXCLUSIONS = [f"{R}/qc/ingest_exclusions.tsv"] if DICOM_ROOT else []


SCANS = DiscoveredScans(lambda: checkpoints.discover.get().output.scans) if DICOM_ROOT else STUDY.scans
# Every per-scan and per-patient lookup of the input functions (workflow/tumorburden/workflow_plan.py).
PLAN = StudyPlan(SCANS, R, synthetic=STUDY.synthetic)
CLINICAL_TSV = str(STUDY.clinical_path)
SCANS_TSV = str(STUDY.scans_path)
ANALYSED_COHORTS = analysed_cohorts(STUDY.cohorts, section(config, "survival"))
ENDPOINTS = section(config, "survival")["endpoints"]


wildcard_constraints:
    scan_id=ID_REGEX,
    patient_id=ID_REGEX,
    cohort=ID_REGEX,
    endpoint=r"pfs|os",


def settings(section, without=()):
    """A config section as the rules' --settings JSON (quoted: --settings={params.settings:q})."""
    return settings_json(config, section, without)


def scan_files(pattern):
    """One path per scan; for a dicom_root study an input function (scans known after discovery)."""
    if DICOM_ROOT:
        return lambda wc: expand(pattern, scan_id=SCANS.index)
    return expand(pattern, scan_id=SCANS.index)


def final_targets():
    targets = [
        f"{R}/tables/lesions.parquet",
        f"{R}/tables/burden.parquet",
        f"{R}/tables/site_kinetics.parquet",
        f"{R}/tables/body_composition.parquet",
        f"{R}/tables/features.parquet",
        f"{R}/survival/cox.csv",
        f"{R}/survival/performance.csv",
        f"{R}/survival/validation.csv",
        f"{R}/survival/dynamic_accuracy.csv",
        f"{R}/survival/joint_model.csv",
    ]
    targets += figure_targets()  # workflow/rules/figures_common.smk
    if STUDY.synthetic:
        targets.append(f"{R}/truth/scores.csv")
    if DICOM_ROOT:
        targets.append(f"{R}/manifest/series.parquet")
    if DICOM_SEG and not DICOM_ROOT:
        targets += dicom_seg_targets()  # segment.smk
    if REVIEW["dir"]:
        targets.append(f"{R}/tables/review.parquet")  # review.smk
    return targets


def discovered_scan_targets(wildcards):
    """Per-scan files `rule all` asks for in a dicom_root study, known once discovery has run."""
    return dicom_seg_targets() if DICOM_SEG and DICOM_ROOT else []


# Segmentation (segment.smk): the bundle, a scan's inputs, DICOM sources and their DICOM-SEG.
SEGMENTATION = section(config, "segmentation")  # with its defaults (segment.smk reads the engine)
MODEL_WEIGHTS = model_weights(SEGMENTATION)
MODEL_FINGERPRINT = model_fingerprint(SEGMENTATION)


def scans_of(wc):
    return PLAN.scans_of(wc.patient_id)


def patient_scan_files(wc, pattern):
    return PLAN.patient_scan_files(wc.patient_id, pattern)


def patient_files(pattern):
    """One path per patient (pattern with {patient_id}): the tracked outputs of the per-patient jobs;
    for a dicom_root study an input function (patients known after discovery)."""
    if DICOM_ROOT:
        return lambda wc: [pattern.format(patient_id=p) for p in PLAN.patients()]
    return [pattern.format(patient_id=p) for p in PLAN.patients()]


def external_files_of(wc, column):
    return PLAN.external_files(wc.patient_id, column)


def segment_inputs(wc):
    return PLAN.segment_inputs(wc.patient_id, MODEL_WEIGHTS)


def scan_source(scan_id):
    return PLAN.scan_source(scan_id)


def ingest_source_args(wc):
    return PLAN.ingest_sources(wc.patient_id, DICOM_ROOT)


def truth_folders():
    return PLAN.truth_folders()


def is_dicom_source(scan_id):
    return PLAN.is_dicom_source(scan_id)


def dicom_scans_of_patient():
    return PLAN.dicom_scans_of_patient()


def dicom_seg_inputs(wc):
    return PLAN.dicom_seg_inputs(wc.patient_id)


def dicom_segmentations_of_patient(wc):
    return PLAN.dicom_segmentations_of_patient(wc.patient_id)


def dicom_series_of_patient(wc):
    return PLAN.dicom_series_of_patient(wc.patient_id)


def dicom_seg_targets(wildcards=None):
    return PLAN.dicom_seg_targets()


# Lesions (lesions.smk): each patient's reference scan for registration.
def reference_scan_of_patient():
    return PLAN.reference_scan_of_patient()


# Review (review.smk): a radiologist's corrected segmentations in the review folder, each matched to its scan
# by its header when the DAG is built; a reviewed scan's lesions reach `track` from its own rule, so
# nothing of the model's segmentation or of any other scan reruns.
# review.dir, or for a dicomweb study the private folder `snakemake fetch_reviews` fills (study.review_dir)
REVIEW = {**section(config, "review"), "dir": review_dir(config)}


def _choose_reviews():
    from tumorburden.segment.review import ReviewError, choose_reviews

    rows = PLAN.scan_rows()
    ours = {s: f"{PRIVATE}/dicom_seg/{row['patient_id']}/{s}.dcm" for s, row in rows.items()}
    try:
        choice = choose_reviews(Path(REVIEW["dir"]), {s: row["image"] for s, row in rows.items()},
                                REVIEW["series_description"], ours)
    except ReviewError as exc:
        sys.exit(f"tumorburden: {' '.join(str(exc).split())}")
    for line in choice.notices():  # a radiologist who corrected a scan twice
        print(line, file=sys.stderr)
    return choice


def _review_choice():
    """The study's ReviewChoice (segment/review.py), read once; None without review.dir."""
    return PLAN.once_per_scan_table("reviews", _choose_reviews) if REVIEW["dir"] else None


def reviews():
    """scan_id -> the scan's review object (segment/review.py: choose_reviews); {} without review.dir."""
    choice = _review_choice()
    return choice.paths() if choice else {}


def passed_over_reviews():
    """scan_id -> the reviews of the scan not taken (an older correction), with the reason, for the
    review table: as JSON, a rule parameter."""
    choice = _review_choice()
    return json.dumps(choice.passed_over_table() if choice else {}, sort_keys=True)


if REVIEW["dir"] and not DICOM_ROOT:
    reviews()  # a review that fits no scan stops the run here, before any job


def reviewed_lesions(wildcards=None):
    """The reviewed scans' own lesion tables (review.smk), which `track` reads in place of the model's."""
    return [f"{R}/scans/{s}/review/lesions.parquet" for s in sorted(reviews())]


def tracked_lesions(wildcards=None):
    """Each scan's lesion table for `track`: the reviewed one where the radiologist reviewed the scan."""
    found = reviews()
    return [f"{R}/scans/{s}/review/lesions.parquet" if s in found else f"{R}/scans/{s}/lesions.parquet"
            for s in SCANS.index]


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
