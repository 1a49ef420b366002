"""The study a run analyses: its config and its clinical and scans tables, checked before any job runs.

A real study names `study.clinical` and `study.scans` in the config; otherwise the
synthetic trial of `synthetic:` is the study, and its tables are designed (not rendered)
here so that Snakemake knows every scan when it builds the DAG.

`check_study` is the one validation layer: the Snakefile and `tumorburden check-study` both
call it. Every problem is reported as one line that names the file, the line and what is
wrong, `clinical.tsv line 4 (patient_id=P03): pfs_event must be 0 or 1, got 2`, or the config
key, `config key segmentation.bundle: ... is not a folder; ...`.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import yaml

from tumorburden.paths import DEFAULT_BUNDLE, REPO_ROOT, id_problem, inside, resolve_bundle

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
# ID columns of the input tables, and the kind of ID each is (paths.DERIVED_NAMES)
ID_COLUMNS = {"patient_id": "patient_id", "scan_id": "scan_id", "cohort": "cohort"}
# An unknown column at least this similar (difflib ratio, case-insensitive) to a known column the
# table lacks is taken for a misspelling of it: `msk` / `mask` is 0.86, `ecog_ps` / `ecog` 0.73.
MISSPELLING_CUTOFF = 0.8
# Optional columns read when present, beyond those of the schemas.
OPTIONAL_CLINICAL = ("baseline_date",)


class StudyError(ValueError):
    """A bad study table: the message is one line naming file, line and problem."""


@dataclass
class Study:
    name: str
    clinical: pd.DataFrame  # one row per patient
    scans: pd.DataFrame  # one row per scan; `image`/`mask` are absolute paths (or None)
    clinical_path: Path
    scans_path: Path
    synthetic: bool
    cohorts: list[str] = field(default_factory=list)
    # dicom_root studies: scans are discovered by the `discover` checkpoint (scans is None here)
    dicom_root: Path | None = None
    patient_map_path: Path | None = None
    series_override_path: Path | None = None
    private_dir: Path | None = None
    # dicomweb studies (study.dicomweb): a dicom_root study whose root is the private area's cache,
    # filled by the pull (`tumorburden pacs pull`) instead of discovery
    dicomweb: dict | None = None


def config_problem(config: dict, schemas_dir: Path = SCHEMAS_DIR) -> str | None:
    """The first way `config` breaks config.schema.yaml, as one line naming the key; None if it
    conforms (jsonschema, as snakemake.utils.validate would, but worded as one line)."""
    schema = _schema(schemas_dir, "config")
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"config key {key}: {' '.join(error.message.split())} (see config/README.md)"


def results_dir(config: dict) -> Path:
    """results/<study.name>: refused if the name would put it anywhere else."""
    return inside(Path("results"), Path("results") / config["study"]["name"])


def check_study(config: dict, schemas_dir: Path = SCHEMAS_DIR) -> "Study":
    """Every check that can be made before a job runs, for the whole config (the embedded default
    merged with the user's) and the study's tables; the Snakefile and `tumorburden check-study`
    both call this, so they stop on the same inputs with the same one-line message."""
    check_config(config, schemas_dir)
    study = load_study(config, schemas_dir)
    _check_landmark_covariates(config, study)
    return study


# What survival/landmark.py takes from each scan for the landmark super-model; named here so that
# the study check knows them (a landmark covariate is one of these or a clinical.tsv column).
LANDMARK_SCAN_COVARIATES = ("log_burden", "log_burden_change", "log_burden_slope", "new_lesion")


def _check_landmark_covariates(config: dict, study: "Study") -> None:
    covariates = ((config.get("survival") or {}).get("landmark_covariates")) or ()
    for c in covariates:
        if c not in LANDMARK_SCAN_COVARIATES and c not in study.clinical.columns:
            raise StudyError(f"config key survival.landmark_covariates: {c!r} is neither a scan covariate "
                             f"({', '.join(LANDMARK_SCAN_COVARIATES)}) nor a column of {study.clinical_path}; "
                             "choose one of those")


def check_config(config: dict, schemas_dir: Path = SCHEMAS_DIR) -> None:
    """The config alone: schema, study name, [low, high] ranges, and the files and folders it names."""
    study_cfg = config.get("study") if isinstance(config.get("study"), dict) else {}
    if study_cfg.get("dicom_root") and study_cfg.get("scans"):
        raise StudyError("config keys study.dicom_root and study.scans are both set: a study is either a scans "
                         "table or a DICOM export; remove one of them")
    other = [k for k in ("scans", "dicom_root") if study_cfg.get(k)]
    if study_cfg.get("dicomweb") and other:
        raise StudyError(f"config keys study.dicomweb and study.{other[0]} are both set: a study comes from a "
                         "DICOMweb server or from a scans table or DICOM export; remove one of them")
    problem = config_problem(config, schemas_dir)
    if problem:
        raise StudyError(problem)
    problem = id_problem(study_cfg["name"], "study.name", config)
    if problem:
        raise StudyError(f"config key study.name: {problem}")
    for key, value in _ranges(config, _schema(schemas_dir, "config")):
        if value[0] > value[1]:
            raise StudyError(f"config key {key}: {list(value)} is a [low, high] range in the wrong order; "
                             f"write [{value[1]}, {value[0]}]")
    _check_config_paths(config)


def _ranges(config: dict, schema: dict, prefix: str = ""):
    """(key, value) of every setting the config schema declares a [low, high] range ($defs/range,
    or two keys named by `x-ranges`)."""
    for low, high in schema.get("x-ranges") or []:
        if isinstance(config, dict) and config.get(low) is not None and config.get(high) is not None:
            yield f"{prefix}{low}, {prefix}{high}", (config[low], config[high])
    for name, prop in (schema.get("properties") or {}).items():
        value = config.get(name) if isinstance(config, dict) else None
        if value is None:
            continue
        if prop.get("$ref") == "#/$defs/range":
            yield prefix + name, value
        elif "properties" in prop:
            yield from _ranges(value, prop, f"{prefix}{name}.")


def _check_config_paths(config: dict) -> None:
    """Every file or folder the config names exists, reported under its key rather than later as
    a job's missing input."""
    study_cfg = config["study"]
    for key, kind in (("clinical", "file"), ("scans", "file"), ("patient_map", "file"),
                      ("series_override", "file"), ("dicom_root", "folder")):
        value = study_cfg.get(key)
        if value is None:
            continue
        path = Path(value).expanduser()
        ok = path.is_dir() if kind == "folder" else path.is_file()
        if not ok:
            where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
            found = "is a folder, not a file" if path.is_dir() else "is a file, not a folder" if path.exists() else "does not exist"
            raise StudyError(f"config key study.{key}: {value}{where} {found}; fix the path")
    review = (config.get("review") or {}).get("dir")
    if review is not None and not Path(review).expanduser().is_dir():
        where = "" if Path(review).is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise StudyError(f"config key review.dir: {review}{where} is not a folder; make it, or point it at the "
                         "folder the radiologist's DICOM-SEG / RTSTRUCT objects are put in")
    scores = (config.get("design") or {}).get("scores")
    if scores is not None and not Path(scores).expanduser().is_file():
        where = "" if Path(scores).is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise StudyError(f"config key design.scores: {scores}{where} is not a file; point it at a run's "
                         "truth/scores.csv, or set it to null")
    segmentation = config.get("segmentation") or {}
    if segmentation.get("models"):
        _check_model_list(segmentation)
    elif segmentation.get("engine", "monai") == "monai":
        _check_bundle(segmentation.get("bundle", DEFAULT_BUNDLE))
    elif segmentation.get("engine") == "nnunet":
        _check_nnunet_model(segmentation.get("model"))


def _check_model_list(segmentation: dict) -> None:
    """segmentation.models: each model's labels against its entry and the precedence (model_labels.py),
    and each bundle's weights, read from the models' files before any job."""
    from tumorburden.model_labels import ModelListError, plan_models

    if segmentation.get("engine", "monai") == "classical":
        raise StudyError("config key segmentation.models: the models replace the engine, but segmentation.engine "
                         "is classical; leave engine at monai, or drop the models list")
    try:
        plan = plan_models(segmentation)
    except ModelListError as exc:
        raise StudyError(str(exc)) from exc
    for entry in plan.entries:
        if entry.kind == "bundle":
            _check_bundle(str(entry.path), key=f"segmentation.models[{entry.index}].bundle")


def _check_bundle(value: str, key: str = "segmentation.bundle") -> None:
    bundle = resolve_bundle(value)
    what = "a MONAI bundle folder (configs/metadata.json and models/model.pt or models/model.ts)"
    if not bundle.is_dir():
        raise StudyError(f"config key {key}: {value} is not a folder; point it at {what}, "
                         "or leave the key out for the shipped demo model")
    if not (bundle / "configs" / "metadata.json").is_file():
        raise StudyError(f"config key {key}: {bundle} has no configs/metadata.json; point it at {what}")
    weights = [bundle / "models" / name for name in ("model.ts", "model.pt")]
    if not any(w.is_file() and w.stat().st_size > 0 for w in weights):
        raise StudyError(f"config key {key}: {bundle} has no models/model.pt or models/model.ts "
                         f"(or it is empty); copy the weights there, or train them (snakemake train_segmentation)")
    # an edited config with a syntax error stops the run here, not in each segment job (the declarations
    # themselves are MONAI's to build, when the job loads the bundle)
    for path in sorted((bundle / "configs").glob("*.json")):
        try:
            content = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StudyError(f"config key {key}: {path} is not valid JSON ({exc}); fix the file") from None
        if not isinstance(content, dict):
            raise StudyError(f"config key {key}: {path} must hold a JSON object (a MONAI bundle config), "
                             f"not a {type(content).__name__}; fix the file")


def _check_nnunet_model(value: str | None) -> None:
    """The trained model is there (its contents are read, and checked, when a segment job loads it)."""
    get = ("download the trained model (its nnUNet_results folder <Trainer>__<Plans>__<Configuration>/ or the zip "
           "nnUNetv2_export_model_to_zip made of it) and point segmentation.model at it")
    if not value:
        raise StudyError(f"config key segmentation.model: not set, and segmentation.engine is nnunet; {get}")
    model = resolve_bundle(value)
    if not model.exists():
        raise StudyError(f"config key segmentation.model: {value} does not exist; {get}")


def default_config() -> dict:
    """config/config.yaml, the defaults a run starts from (Snakefile's `configfile:`)."""
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def merged_config(user: dict) -> dict:
    """The embedded default config updated with the user's, as Snakemake merges `--configfile`."""
    from snakemake.utils import update_config

    config = default_config()
    update_config(config, user)
    return config


def load_study(config: dict, schemas_dir: Path) -> Study:
    """Load and check the study named by `config` (the whole config dict)."""
    study_cfg = config.get("study") or {}
    name = study_cfg.get("name", "study")
    if study_cfg.get("dicom_root") or study_cfg.get("dicomweb"):
        return _load_dicom_root_study(config, schemas_dir)
    if study_cfg.get("clinical") or study_cfg.get("scans"):
        clinical_path = Path(study_cfg["clinical"])
        scans_path = Path(study_cfg["scans"])
        clinical = read_table(clinical_path)
        scans = read_table(scans_path)
        check_clinical(clinical, clinical_path, schemas_dir, config)
        check_scans(scans, scans_path, clinical, schemas_dir, config)
        scans = _resolve_paths(scans, scans_path)
        synthetic = False
    else:
        from tumorburden.synth.trial import design_trial

        trial = design_trial(config.get("synthetic") or {})
        out = results_dir({"study": {"name": name}}) / "synthetic"
        clinical_path, scans_path = out / "clinical.tsv", out / "scans.tsv"
        clinical = trial.clinical.copy()
        scans = trial.scans.copy()
        scans["image"] = [str(out / p) for p in scans["image"]]
        for column in ("mask", "bodycomp"):
            if column not in scans:
                scans[column] = None
        synthetic = True
    clinical = clinical.set_index("patient_id", drop=False)
    scans = scans.set_index("scan_id", drop=False)
    cohorts = sorted(clinical["cohort"].astype(str).unique())
    return Study(name, clinical, scans, clinical_path, scans_path, synthetic, cohorts)


def read_clinical_table(path: Path, schemas_dir: Path = SCHEMAS_DIR) -> pd.DataFrame:
    """clinical.tsv, checked as at workflow start, with IDs and cohort as text and
    covariates typed by pandas; for stages run on their own."""
    path = Path(path)
    check_clinical(read_table(path), path, schemas_dir)
    return _typed(path, {"patient_id": str, "cohort": str})


def read_scans_table(path: Path, schemas_dir: Path = SCHEMAS_DIR) -> pd.DataFrame:
    """scans.tsv, checked for columns, types and unique scan IDs (image paths are not
    needed by the stages that read it), with `days` as float."""
    path = Path(path)
    scans = read_table(path)
    schema = _schema(schemas_dir, "scans")
    schema["required"] = [c for c in schema["required"] if c != "image"]
    _check_rows(scans, path, schema, "scan_id")
    _check_unique(scans, path, "scan_id")
    scans = _typed(path, {"patient_id": str, "scan_id": str, "image": str, "mask": str,
                                  "bodycomp": str})
    return scans.assign(days=scans["days"].astype(float))


def _typed(path: Path, text_columns: dict) -> pd.DataFrame:
    return pd.read_csv(path, sep="," if path.suffix.lower() == ".csv" else "\t", dtype=text_columns)


def read_table(path: Path) -> pd.DataFrame:
    """Read a TSV (or CSV by extension) with every value as text; types are checked later."""
    if not path.exists():
        raise StudyError(f"{path}: file not found (check study.clinical / study.scans in the config)")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    kind = "CSV" if sep == "," else "tab-separated"
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise StudyError(f"{path}: the file is empty; write a header line and one row per record ({kind})") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise StudyError(f"{path}: cannot be read as a {kind} table ({' '.join(str(exc).split())})") from None
    df.columns = [c.strip() for c in df.columns]
    if df.empty:
        raise StudyError(f"{path}: the table has a header but no rows; add one row per record below the header")
    return df


def _schema(schemas_dir: Path, name: str) -> dict:
    """A schema of workflow/schemas (a copy: callers may adapt it)."""
    return copy.deepcopy(_parsed_schema(Path(schemas_dir) / f"{name}.schema.yaml"))


@functools.lru_cache(maxsize=None)
def _parsed_schema(path: Path) -> dict:
    # parsed once per process: PyYAML's pure-Python parser takes a quarter second for the config schema
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _typed_record(row: pd.Series, schema: dict) -> dict:
    """Convert the text of a row to what the schema expects, leaving bad values as text."""
    record = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue  # an empty cell is a missing value: `required` reports it
        prop = schema.get("properties", {}).get(key, {})
        kind = prop.get("type")
        if kind == "number" or "enum" in prop and all(isinstance(v, int) for v in prop["enum"]):
            try:
                number = float(value)
                value = int(number) if number.is_integer() and "enum" in prop else number
            except ValueError:
                pass
        record[key] = value
    return record


def _describe(error: jsonschema.ValidationError) -> str:
    column = error.path[0] if error.path else None
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"{missing} is missing"
    if error.validator == "enum":
        allowed = " or ".join(str(v) for v in error.validator_value)
        return f"{column} must be {allowed}, got {error.instance!r}"
    if error.validator == "type":
        return f"{column} must be a {error.validator_value}, got {error.instance!r}"
    if error.validator == "minimum":
        return f"{column} must be >= {error.validator_value}, got {error.instance!r}"
    return f"{column}: {error.message}" if column else error.message


def _misspelling(column: str, absent: list[str]) -> str | None:
    """The known column (absent from the table) that `column` looks like a misspelling of."""
    by_lower = {a.lower(): a for a in absent}
    match = difflib.get_close_matches(column.strip().lower(), list(by_lower), n=1, cutoff=MISSPELLING_CUTOFF)
    return by_lower[match[0]] if match else None


def _check_columns(df: pd.DataFrame, path: Path, schema: dict, optional: tuple = ()) -> None:
    """Required columns present; a column that looks like a misspelt known one (required or optional)
    is named, since it would otherwise be ignored or read as a covariate."""
    known = list(schema.get("properties", {})) + [c for c in optional if c not in schema.get("properties", {})]
    absent = [c for c in known if c not in df.columns]
    unknown = [c for c in df.columns if c not in known]
    for column in unknown:
        meant = _misspelling(column, absent)
        if meant is not None:
            raise StudyError(f"{path}: column {column!r} looks like a misspelling of {meant!r}, which the table "
                             f"lacks; rename the column to {meant} (or to a name further from it if it is another column)")
    missing = [c for c in schema.get("required", []) if c not in df.columns]
    if missing:
        raise StudyError(f"{path}: missing column(s) {', '.join(missing)} (columns found: {', '.join(df.columns)})")


def _check_rows(df: pd.DataFrame, path: Path, schema: dict, key: str, config: dict | None = None,
                optional: tuple = ()) -> None:
    """Columns, then each row in file order: schema (types, codes, bounds), finite numbers, safe IDs."""
    _check_columns(df, path, schema, optional)
    validator = jsonschema.validators.validator_for(schema)(schema)
    numbers = [c for c, p in schema.get("properties", {}).items() if p.get("type") == "number" and c in df.columns]
    ids = [c for c in ID_COLUMNS if c in schema.get("properties", {}) and c in df.columns]
    for i, (_, row) in enumerate(df.iterrows()):
        ident = row.get(key)
        if isinstance(ident, str) and len(ident) > 40:  # a too-long ID is named by its start
            ident = ident[:20] + "..."
        where = f"{path} line {i + 2}" + (f" ({key}={ident})" if isinstance(ident, str) else "")
        record = _typed_record(row, schema)
        for column in numbers:  # before the schema, whose bounds would pass nan and call -inf merely negative
            value = record.get(column)
            if isinstance(value, float) and not math.isfinite(value):
                raise StudyError(f"{where}: {column} must be a finite number of days, got {row[column]!r}; "
                                 "write the time (or leave the row out)")
        errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
        if errors:
            raise StudyError(f"{where}: {_describe(errors[0])}")
        for column in ids:
            problem = id_problem(row[column], ID_COLUMNS[column], config)
            if problem:
                raise StudyError(f"{where}: {problem}")


def _check_unique(df: pd.DataFrame, path: Path, column: str) -> None:
    dup = df[column].duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((df[column] == df[column].iloc[i]).to_numpy())[0])
        raise StudyError(
            f"{path} line {i + 2}: duplicate {column} {df[column].iloc[i]!r} (first on line {first + 2}); {column} must be unique"
        )


def check_clinical(clinical: pd.DataFrame, path: Path, schemas_dir: Path, config: dict | None = None) -> None:
    survival = (config or {}).get("survival") or {}
    joint_covariates = tuple((survival.get("joint") or {}).get("covariates") or ())
    covariates = tuple(survival.get("covariates") or ()) + joint_covariates
    _check_rows(clinical, path, _schema(schemas_dir, "clinical"), "patient_id", config,
                optional=OPTIONAL_CLINICAL + covariates)
    for column in joint_covariates:  # the joint model's hazard takes them as numbers
        if column not in clinical.columns:
            raise StudyError(f"{path}: survival.joint.covariates names {column!r}, which is not a column; "
                             f"add it or remove it from survival.joint.covariates")
        values = pd.to_numeric(clinical[column], errors="coerce")
        bad = np.flatnonzero((values.isna() & clinical[column].notna()).to_numpy())
        if len(bad):
            i = int(bad[0])
            raise StudyError(f"{path} line {i + 2} (patient_id={clinical['patient_id'].iloc[i]}): {column} "
                             f"{clinical[column].iloc[i]!r} is not a number, and survival.joint.covariates enters it "
                             f"in the hazard as one; code it as numbers (e.g. 0/1) or remove it from the list")
    _check_unique(clinical, path, "patient_id")
    pfs, os_ = pd.to_numeric(clinical["pfs_days"]), pd.to_numeric(clinical["os_days"])
    for i in np.flatnonzero((os_ < pfs).to_numpy()):
        raise StudyError(
            f"{path} line {i + 2} (patient_id={clinical['patient_id'].iloc[i]}): os_days {clinical['os_days'].iloc[i]} is "
            f"less than pfs_days {clinical['pfs_days'].iloc[i]}, impossible when progression-free survival counts "
            "death as an event; correct the times (os_days >= pfs_days)")


def check_scans(scans: pd.DataFrame, path: Path, clinical: pd.DataFrame, schemas_dir: Path,
                config: dict | None = None) -> None:
    _check_rows(scans, path, _schema(schemas_dir, "scans"), "scan_id", config)
    _check_unique(scans, path, "scan_id")
    known = set(clinical["patient_id"])
    base = path.parent
    first_on_day: dict[tuple[str, float], int] = {}
    for i, (_, row) in enumerate(scans.iterrows()):
        where = f"{path} line {i + 2} (scan_id={row['scan_id']})"
        if row["patient_id"] not in known:
            raise StudyError(f"{where}: patient_id {row['patient_id']!r} is not in the clinical table; add the patient or remove the scan")
        day = (row["patient_id"], float(row["days"]))
        if day in first_on_day:
            j = first_on_day[day]
            raise StudyError(f"{where}: patient {row['patient_id']} already has a scan on day {row['days']} "
                             f"(scan_id={scans['scan_id'].iloc[j]}, line {j + 2}); a patient's burden is one value "
                             "per day: keep one of the two scans")
        first_on_day[day] = i
        for column in ("image", "mask", "bodycomp"):
            value = row.get(column)
            if isinstance(value, str) and value:
                target = Path(value) if Path(value).is_absolute() else base / value
                if not target.exists():
                    raise StudyError(f"{where}: {column} {value!r} does not exist (relative paths resolve against {base})")


def _resolve_paths(scans: pd.DataFrame, scans_path: Path) -> pd.DataFrame:
    base = scans_path.parent.resolve()
    out = scans.copy()
    out["days"] = pd.to_numeric(out["days"])
    for column in ("mask", "bodycomp"):
        if column not in out:
            out[column] = None
    for column in ("image", "mask", "bodycomp"):
        out[column] = [
            None if not isinstance(v, str) or not v else str(Path(v) if Path(v).is_absolute() else base / v)
            for v in out[column]
        ]
    return out


# --- studies given as a PACS export (study.dicom_root) -------------------------------------

PATIENT_MAP_COLUMNS = ("dicom_patient_id", "patient_id")
OVERRIDE_COLUMNS = ("scan_id", "series_uid")


def private_dir(config: dict) -> Path:
    """Where paths under dicom_root are kept (they may carry hospital IDs): never under results/."""
    study_cfg = config.get("study") or {}
    if study_cfg.get("private_dir"):
        return Path(study_cfg["private_dir"])
    return inside(Path("private"), Path("private") / study_cfg.get("name", "study"))


REVIEWS = "reviews"  # under the private area: a dicomweb study's reviews, fetched from the server


def review_dir(config: dict, existing: bool = True) -> Path | None:
    """The folder of the radiologist's review objects (docs/review.md): `review.dir`; for a DICOMweb
    study without it, `<private>/reviews`, where `snakemake fetch_reviews` downloads the reviews from
    the server. With `existing`, that default counts only once the folder exists (no review step
    before a fetch). None: no review step."""
    configured = (config.get("review") or {}).get("dir")
    if configured:
        return Path(configured)
    if not (config.get("study") or {}).get("dicomweb"):
        return None
    folder = private_dir(config) / REVIEWS
    return folder if folder.is_dir() or not existing else None


def _load_dicom_root_study(config: dict, schemas_dir: Path) -> Study:
    study_cfg = config["study"]
    name = study_cfg["name"]
    source = "dicomweb" if study_cfg.get("dicomweb") else "dicom_root"
    if study_cfg.get("scans"):
        raise StudyError(f"config: study.{source} and study.scans are both set; name one (a scans table or a DICOM source)")
    for key in ("clinical", "patient_map"):
        if not study_cfg.get(key):
            raise StudyError(f"config: study.{source} needs study.{key} (see config/README.md)")
    if source == "dicomweb":
        root = private_dir(config) / "pacs"  # the pull's cache (tumorburden.pacs.pull.CACHE)
    else:
        root = Path(study_cfg["dicom_root"])
        if not root.is_dir():
            raise StudyError(f"{root}: study.dicom_root is not a folder")
    clinical_path = Path(study_cfg["clinical"])
    clinical = read_table(clinical_path)
    check_clinical(clinical, clinical_path, schemas_dir, config)
    baseline_dates(clinical, clinical_path)
    map_path = Path(study_cfg["patient_map"])
    read_patient_map(map_path, clinical)
    override_path = Path(study_cfg["series_override"]) if study_cfg.get("series_override") else None
    if override_path is not None:
        read_series_override(override_path)
    clinical = clinical.set_index("patient_id", drop=False)
    cohorts = sorted(clinical["cohort"].astype(str).unique())
    scans_path = results_dir(config) / "manifest" / "scans.tsv"
    return Study(name, clinical, None, clinical_path, scans_path, False, cohorts, dicom_root=root,
                 patient_map_path=map_path, series_override_path=override_path, private_dir=private_dir(config),
                 dicomweb=study_cfg.get("dicomweb"))


def baseline_dates(clinical: pd.DataFrame, path: Path) -> dict[str, str]:
    """patient_id -> baseline date (ISO), from the clinical table's `baseline_date` column."""
    if "baseline_date" not in clinical.columns:
        raise StudyError(f"{path}: a dicom_root study needs a baseline_date column (YYYY-MM-DD, treatment start) "
                         "to turn study dates into scan days")
    out = {}
    for i, (pid, value) in enumerate(zip(clinical["patient_id"], clinical["baseline_date"])):
        try:
            out[str(pid)] = date.fromisoformat(value.strip()).isoformat()
        except (ValueError, TypeError, AttributeError):
            raise StudyError(f"{path} line {i + 2} (patient_id={pid}): baseline_date must be a date YYYY-MM-DD, got {value!r}") from None
    return out


def read_patient_map(path: Path, clinical: pd.DataFrame) -> pd.DataFrame:
    """The user's table linking each DICOM PatientID to the study's pseudonymous patient_id.

    Its hospital IDs are only ever read, never copied into results/."""
    table = read_table(path)
    missing = [c for c in PATIENT_MAP_COLUMNS if c not in table.columns]
    if missing:
        raise StudyError(f"{path}: missing column(s) {', '.join(missing)} (the patient map has dicom_patient_id and patient_id)")
    known = set(clinical["patient_id"])
    for i, pid in enumerate(table["patient_id"]):
        if not isinstance(pid, str) or pid not in known:
            raise StudyError(f"{path} line {i + 2}: patient_id {pid!r} is not in the clinical table; add the patient or remove the row")
    for column in PATIENT_MAP_COLUMNS:
        dup = table[column].duplicated()
        if dup.any():
            i = int(dup.to_numpy().nonzero()[0][0])
            what = "a DICOM PatientID" if column == "dicom_patient_id" else f"patient_id {table[column].iloc[i]!r}"
            raise StudyError(f"{path} line {i + 2}: {what} appears twice; each patient has one row")
        if table[column].isna().any():
            i = int(table[column].isna().to_numpy().nonzero()[0][0])
            raise StudyError(f"{path} line {i + 2}: {column} is empty")
    return table


def read_series_override(path: Path) -> pd.DataFrame:
    """Optional table forcing a series (or `exclude`) per scan_id, as named in manifest/series.parquet."""
    table = read_table(path)
    missing = [c for c in OVERRIDE_COLUMNS if c not in table.columns]
    if missing:
        raise StudyError(f"{path}: missing column(s) {', '.join(missing)} (scan_id and series_uid, or series_uid = exclude)")
    _check_unique(table, path, "scan_id")
    for i, uid in enumerate(table["series_uid"]):
        if not isinstance(uid, str) or not (uid == "exclude" or all(p.isdigit() for p in uid.split("."))):
            raise StudyError(f"{path} line {i + 2}: series_uid must be a DICOM UID (digits and dots) or 'exclude', got {uid!r}")
    return table
