# Config and study loading: everything is checked here, before any job runs.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from tumorburden.study import StudyError, config_problem, load_study, results_dir  # noqa: E402

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
ENV = "../../envs/tumorburden.yaml"
# envs/tumorburden.post-deploy.sh installs the package from here into a new conda environment.
os.environ.setdefault("TUMORBURDEN_SOURCE", str(Path(workflow.basedir).resolve()))

try:
    validate(config, schema=str(SCHEMAS / "config.schema.yaml"))
except Exception as exc:  # snakemake's message spans many lines: say it in one
    sys.exit(f"tumorburden: {config_problem(config, SCHEMAS) or ' '.join(str(exc).split())}")

try:
    STUDY = load_study(config, SCHEMAS)
except StudyError as exc:
    sys.exit(f"tumorburden: {exc}")

R = str(results_dir(config))
SCANS = STUDY.scans
CLINICAL_TSV = str(STUDY.clinical_path)
SCANS_TSV = str(STUDY.scans_path)
ANALYSED_COHORTS = STUDY.cohorts + (["all"] if config.get("survival", {}).get("pooled", True) else [])
ENDPOINTS = config.get("survival", {}).get("endpoints", ["pfs", "os"])


wildcard_constraints:
    scan_id=r"[A-Za-z0-9._-]+",
    cohort=r"[A-Za-z0-9._-]+",
    endpoint=r"pfs|os",


def settings(section):
    """A config section as a shell-quoted JSON argument for `tumorburden ... --settings`."""
    return shlex.quote(json.dumps(config.get(section) or {}, sort_keys=True))


def external_mask(wc):
    """The scan's external lesion mask, when scans.tsv gives one."""
    mask = SCANS.loc[wc.scan_id, "mask"]
    return {"mask": mask} if isinstance(mask, str) and mask else {}


def scan_files(pattern):
    return expand(pattern, scan_id=SCANS.index)


def final_targets():
    targets = [
        f"{R}/tables/lesions.parquet",
        f"{R}/tables/burden.parquet",
        f"{R}/tables/features.parquet",
        f"{R}/survival/cox.csv",
        f"{R}/survival/performance.csv",
    ]
    targets += expand(
        f"{R}/figures/km_{{cohort}}_{{endpoint}}.{{ext}}",
        cohort=ANALYSED_COHORTS,
        endpoint=ENDPOINTS,
        ext=["pdf", "png"],
    )
    if STUDY.synthetic:
        targets.append(f"{R}/truth/scores.csv")
    return targets
