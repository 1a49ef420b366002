"""The study a run analyses: its clinical and scans tables, checked before any job runs.

A real study names `study.clinical` and `study.scans` in the config; otherwise the
synthetic trial of `synthetic:` is the study, and its tables are designed (not rendered)
here so that Snakemake knows every scan when it builds the DAG.

Every problem is reported as one line that names the file, the line and what is wrong:
`clinical.tsv line 4 (patient_id=P03): pfs_event must be 0 or 1, got 2`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import yaml

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"


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


def config_problem(config: dict, schemas_dir: Path = SCHEMAS_DIR) -> str | None:
    """The first way `config` breaks config.schema.yaml, as one line naming the key; None if it
    conforms. (The workflow validates with snakemake.utils.validate; this words its failure.)"""
    schema = _schema(schemas_dir, "config")
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    if error is None:
        return None
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"config key {key}: {' '.join(error.message.split())} (see config/README.md)"


def results_dir(config: dict) -> Path:
    return Path("results") / config["study"]["name"]


def load_study(config: dict, schemas_dir: Path) -> Study:
    """Load and check the study named by `config` (the whole config dict)."""
    study_cfg = config.get("study") or {}
    name = study_cfg.get("name", "study")
    if study_cfg.get("dicom_root"):
        return _load_dicom_root_study(config, schemas_dir)
    if study_cfg.get("clinical") or study_cfg.get("scans"):
        clinical_path = Path(study_cfg["clinical"])
        scans_path = Path(study_cfg["scans"])
        clinical = read_table(clinical_path)
        scans = read_table(scans_path)
        check_clinical(clinical, clinical_path, schemas_dir)
        check_scans(scans, scans_path, clinical, schemas_dir)
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
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: cannot be read as a {'CSV' if sep == ',' else 'tab-separated'} table ({' '.join(str(exc).split())})") from None
    df.columns = [c.strip() for c in df.columns]
    if df.empty:
        raise StudyError(f"{path}: the table has no rows")
    return df


def _schema(schemas_dir: Path, name: str) -> dict:
    return yaml.safe_load((Path(schemas_dir) / f"{name}.schema.yaml").read_text())


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
    if error.validator == "pattern":
        return f"{column} {error.instance!r} has characters outside [A-Za-z0-9._-]"
    if error.validator == "enum":
        allowed = " or ".join(str(v) for v in error.validator_value)
        return f"{column} must be {allowed}, got {error.instance!r}"
    if error.validator == "type":
        return f"{column} must be a {error.validator_value}, got {error.instance!r}"
    if error.validator == "minimum":
        return f"{column} must be >= {error.validator_value}, got {error.instance!r}"
    return f"{column}: {error.message}" if column else error.message


def _check_rows(df: pd.DataFrame, path: Path, schema: dict, key: str) -> None:
    missing = [c for c in schema.get("required", []) if c not in df.columns]
    if missing:
        raise StudyError(f"{path}: missing column(s) {', '.join(missing)} (columns found: {', '.join(df.columns)})")
    validator = jsonschema.validators.validator_for(schema)(schema)
    for i, (_, row) in enumerate(df.iterrows()):
        errors = sorted(validator.iter_errors(_typed_record(row, schema)), key=lambda e: list(e.path))
        if errors:
            ident = row.get(key)
            where = f"line {i + 2}" + (f" ({key}={ident})" if isinstance(ident, str) else "")
            raise StudyError(f"{path} {where}: {_describe(errors[0])}")


def _check_unique(df: pd.DataFrame, path: Path, column: str) -> None:
    dup = df[column].duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((df[column] == df[column].iloc[i]).to_numpy())[0])
        raise StudyError(
            f"{path} line {i + 2}: duplicate {column} {df[column].iloc[i]!r} (first on line {first + 2}); {column} must be unique"
        )


def check_clinical(clinical: pd.DataFrame, path: Path, schemas_dir: Path) -> None:
    _check_rows(clinical, path, _schema(schemas_dir, "clinical"), "patient_id")
    _check_unique(clinical, path, "patient_id")


def check_scans(scans: pd.DataFrame, path: Path, clinical: pd.DataFrame, schemas_dir: Path) -> None:
    _check_rows(scans, path, _schema(schemas_dir, "scans"), "scan_id")
    _check_unique(scans, path, "scan_id")
    known = set(clinical["patient_id"])
    base = path.parent
    for i, (_, row) in enumerate(scans.iterrows()):
        where = f"{path} line {i + 2} (scan_id={row['scan_id']})"
        if row["patient_id"] not in known:
            raise StudyError(f"{where}: patient_id {row['patient_id']!r} is not in the clinical table; add the patient or remove the scan")
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
    return Path(study_cfg.get("private_dir") or Path("private") / study_cfg.get("name", "study"))


def _load_dicom_root_study(config: dict, schemas_dir: Path) -> Study:
    study_cfg = config["study"]
    name = study_cfg["name"]
    root = Path(study_cfg["dicom_root"])
    if study_cfg.get("scans"):
        raise StudyError("config: study.dicom_root and study.scans are both set; name one (a scans table or a DICOM root)")
    for key in ("clinical", "patient_map"):
        if not study_cfg.get(key):
            raise StudyError(f"config: study.dicom_root needs study.{key} (see config/README.md)")
    if not root.is_dir():
        raise StudyError(f"{root}: study.dicom_root is not a folder")
    clinical_path = Path(study_cfg["clinical"])
    clinical = read_table(clinical_path)
    check_clinical(clinical, clinical_path, schemas_dir)
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
                 patient_map_path=map_path, series_override_path=override_path, private_dir=private_dir(config))


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
