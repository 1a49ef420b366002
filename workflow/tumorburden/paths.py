"""Names the pipeline derives from a study's IDs, and the rule that keeps its files inside the study.

Patient, scan and cohort IDs and the study name become folder and file names under
`results/<study.name>/` (and the private area). An ID therefore matches `ID_PATTERN` (a letter
or digit first, then letters, digits, `.`, `_`, `-`: so no `.`, `..`, hidden names or leading
`-` that a command would read as an option) and is short enough that the longest file name
built from it still fits the file system's limit (`NAME_MAX` bytes). The longest names are
listed in `DERIVED_NAMES`, one template per kind of ID, so the limit is computed, not guessed.

Light on purpose (no numpy, no torch): the Snakefile imports it when it reads the config.
"""

from __future__ import annotations

import re
from pathlib import Path

import tumorburden

ID_REGEX = r"[A-Za-z0-9][A-Za-z0-9._-]*"
ID_PATTERN = re.compile(rf"^{ID_REGEX}$")
# Linux, macOS and Windows file systems all allow 255 bytes per path component; IDs are ASCII.
NAME_MAX = 255
REPO_ROOT = Path(tumorburden.__file__).resolve().parents[2]
DEFAULT_BUNDLE = "models/tumorburden_ct"  # segmentation.bundle: the shipped demo model
# figures.km_groupings (the figures read their default from here): KM figure names, and so the
# cohort ID limit, are built from them, and this module must not import the figures.
KM_GROUPINGS = ("none", "baseline_volume_median")
# The cohort name of the analysis of all cohorts together (survival.pooled): survival tables, figure
# names and the workflow's targets spell it so.
POOLED = "all"

# The longest file names built around each kind of ID (`{}` is the ID). A DICOM date lies
# in 0001..9999, so a dicom_root scan's day is at most 7 digits with its sign; a fourth study
# of a patient on one day gets `_4` (3 digits leave room for 999).
DERIVED_NAMES = {
    "scan_id": ["{}", "{}.json", "{}.png", "{}.log", "{}.tsv", "{}.dcm"],
    "patient_id": ["{}", "{}.log", "{}.tsv", "{}_d-3652059_999.json", "{}_nodate_999.json"],
    "study.name": ["{}"],
    # km_<cohort>_<endpoint>_<grouping>.<pdf|png> per figures.km_groupings; swimmer pages numbered from 1
    "cohort": ["km_{}_pfs_{grouping}.pdf", "swimmer_{}_p999999.pdf"],
}


def slug(name: str) -> str:
    """A name made safe for a file name: 'baseline_volume_ml:median' -> 'baseline_volume_ml-median'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-") or "none"


def _groupings(config: dict | None) -> list[str]:
    chosen = ((config or {}).get("figures") or {}).get("km_groupings") or KM_GROUPINGS
    return [slug(g) for g in chosen]


def max_id_length(kind: str, config: dict | None = None) -> int:
    """The longest ID of this kind whose every derived file name fits in NAME_MAX bytes."""
    longest = 0
    for template in DERIVED_NAMES[kind]:
        for grouping in _groupings(config) if "{grouping}" in template else [""]:
            longest = max(longest, len(template.replace("{grouping}", grouping).replace("{}", "")))
    return NAME_MAX - longest


def id_problem(value, kind: str, config: dict | None = None) -> str | None:
    """Why `value` cannot be an ID of this kind (one phrase), or None."""
    if not isinstance(value, str) or not value:
        return f"{kind} is empty"
    if not ID_PATTERN.match(value):
        return (f"{kind} {value!r} is not a safe ID: use letters, digits, '.', '_', '-' only, starting with a "
                "letter or digit (so no '.', '..' or leading '-')")
    limit = max_id_length(kind, config)
    if len(value) > limit:
        return (f"{kind} {value[:20]}... is {len(value)} characters; at most {limit} fit the file names built "
                f"from it ({NAME_MAX} bytes each): shorten it")
    return None


def inside(root: Path, path: Path) -> Path:
    """`path`, after checking that it resolves to something below `root` (symbolic links and `..`
    followed; `root` itself does not count): the last guard before a file or folder whose name
    is built from an ID is written or deleted."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if base not in resolved.parents:
        raise ValueError(f"{path}: resolves outside {root}; refusing to write there (check the study's IDs and "
                         "study.name against the ID rules in config/README.md)")
    return Path(path)


def resolve_bundle(path: str | Path) -> Path:
    """A relative segmentation bundle path is looked up in the working directory, then in the repository."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path
