"""Property-based tests of the table validation (hypothesis): every valid pair of clinical and
scans tables passes check_study, and every single mutation of one (an unsafe or duplicate ID,
a non-finite or impossible time, a bad event code, two scans on one day, a misspelt column,
a scan of an unknown patient) stops it with one line naming the row (or the column)."""

import copy
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tumorburden.study import StudyError, check_study, merged_config

ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,11}", fullmatch=True)
DAYS = st.floats(min_value=0, max_value=3000, allow_nan=False, allow_infinity=False).map(lambda d: round(d, 1))
BASE_CONFIG = merged_config({})
PROPERTIES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def studies(draw):
    """A valid study: clinical rows (unique patient IDs, os_days >= pfs_days) and scans rows
    (unique scan IDs, one scan per patient and day, every patient known)."""
    patients = draw(st.lists(ID, min_size=1, max_size=6, unique_by=str.lower))
    cohorts = draw(st.lists(ID, min_size=1, max_size=3))
    rows = []
    for pid in patients:
        pfs = draw(DAYS)
        rows.append({"patient_id": pid, "cohort": draw(st.sampled_from(cohorts)), "pfs_days": pfs,
                     "pfs_event": draw(st.sampled_from([0, 1])), "os_days": round(pfs + draw(DAYS), 1),
                     "os_event": draw(st.sampled_from([0, 1])), "age": draw(st.integers(18, 95))})
    clinical = pd.DataFrame(rows)
    scan_ids = iter(draw(st.lists(ID, min_size=len(patients) * 4, max_size=len(patients) * 4, unique=True)))
    scan_rows = []
    for pid in patients:
        for day in draw(st.lists(st.integers(-60, 1500), min_size=1, max_size=4, unique=True)):
            scan_rows.append({"patient_id": pid, "scan_id": next(scan_ids), "days": day, "image": "img"})
    scans = pd.DataFrame(scan_rows)
    order = draw(st.permutations(range(len(scans))))  # scans.tsv need not be sorted
    return clinical, scans.iloc[list(order)].reset_index(drop=True)


def run_check(folder: Path, clinical: pd.DataFrame, scans: pd.DataFrame):
    (folder / "img").mkdir(exist_ok=True)
    clinical.to_csv(folder / "clinical.tsv", sep="\t", index=False)
    scans.to_csv(folder / "scans.tsv", sep="\t", index=False)
    config = copy.deepcopy(BASE_CONFIG)
    config["study"] = {"name": "prop", "clinical": str(folder / "clinical.tsv"), "scans": str(folder / "scans.tsv")}
    return check_study(config)


@PROPERTIES
@given(studies())
def test_valid_tables_pass(study):
    clinical, scans = study
    with tempfile.TemporaryDirectory() as tmp:
        checked = run_check(Path(tmp), clinical, scans)
    assert sorted(checked.scans.index) == sorted(scans["scan_id"])
    assert sorted(checked.clinical.index) == sorted(clinical["patient_id"])


def _mutate(draw, clinical: pd.DataFrame, scans: pd.DataFrame):
    """One mutation: returns (clinical, scans, table name, what the message must contain)."""
    clinical, scans = clinical.astype(object).copy(), scans.astype(object).copy()
    i = draw(st.integers(0, len(clinical) - 1))
    k = draw(st.integers(0, len(scans) - 1))
    pid, sid = clinical.loc[i, "patient_id"], scans.loc[k, "scan_id"]
    kind = draw(st.sampled_from(["bad_patient_id", "bad_scan_id", "duplicate_patient", "duplicate_scan",
                                 "non_finite", "os_before_pfs", "bad_event", "negative_time", "same_day",
                                 "unknown_patient", "misspelt_column", "cohort"]))
    if kind == "bad_patient_id":
        new = draw(st.sampled_from(["..", ".", "-h", "--help", "a b", "x/../y", ".hidden", "P" * 300]))
        clinical.loc[i, "patient_id"] = new
        scans.loc[scans["patient_id"] == pid, "patient_id"] = new
        return clinical, scans, "clinical.tsv", [f"line {i + 2} ", "patient_id"]
    if kind == "bad_scan_id":
        scans.loc[k, "scan_id"] = draw(st.sampled_from(["..", "-h", "--help", "a;b", "s/../t", "S" * 300]))
        return clinical, scans, "scans.tsv", [f"line {k + 2} ", "scan_id"]
    if kind == "duplicate_patient":
        if len(clinical) < 2:
            return _mutate(draw, clinical, scans)
        j = draw(st.integers(1, len(clinical) - 1))
        clinical.loc[j, "patient_id"] = clinical.loc[j - 1, "patient_id"]
        return clinical, scans, "clinical.tsv", [f"line {j + 2}:", f"first on line {j + 1}"]
    if kind == "duplicate_scan":
        if len(scans) < 2:
            return _mutate(draw, clinical, scans)
        j = draw(st.integers(1, len(scans) - 1))
        scans.loc[j, "scan_id"] = scans.loc[j - 1, "scan_id"]
        return clinical, scans, "scans.tsv", [f"line {j + 2}:", "duplicate scan_id"]
    if kind == "non_finite":
        column = draw(st.sampled_from(["pfs_days", "os_days"]))
        clinical.loc[i, column] = draw(st.sampled_from(["nan", "inf", "-inf", "NaN", "Infinity"]))
        return clinical, scans, "clinical.tsv", [f"line {i + 2} (patient_id={pid})", column, "finite"]
    if kind == "os_before_pfs":
        clinical.loc[i, "pfs_days"] = clinical.loc[i, "os_days"] + draw(st.floats(0.5, 500)).__round__(1)
        return clinical, scans, "clinical.tsv", [f"line {i + 2} (patient_id={pid})", "os_days"]
    if kind == "bad_event":
        column = draw(st.sampled_from(["pfs_event", "os_event"]))
        clinical.loc[i, column] = draw(st.sampled_from([2, -1, "yes", "0.5"]))
        return clinical, scans, "clinical.tsv", [f"line {i + 2} (patient_id={pid})", f"{column} must be 0 or 1"]
    if kind == "negative_time":
        column = draw(st.sampled_from(["pfs_days", "os_days"]))
        clinical.loc[i, column] = -draw(st.floats(0.5, 100)).__round__(1)
        return clinical, scans, "clinical.tsv", [f"line {i + 2} (patient_id={pid})", f"{column} must be >= 0"]
    if kind == "same_day":
        of_patient = scans.index[scans["patient_id"] == scans.loc[k, "patient_id"]]
        if len(of_patient) < 2:
            if "dup" + sid in set(scans["scan_id"]):
                return _mutate(draw, clinical, scans)
            scans = pd.concat([scans, scans.loc[[k]].assign(scan_id="dup" + sid)], ignore_index=True)
            later, first = len(scans) - 1, k
        else:
            first, later = of_patient[0], of_patient[1]
            scans.loc[later, "days"] = scans.loc[first, "days"]
        return clinical, scans, "scans.tsv", [f"line {later + 2} (scan_id={scans.loc[later, 'scan_id']})",
                                              f"line {first + 2})", "already has a scan on day"]
    if kind == "unknown_patient":
        scans.loc[k, "patient_id"] = "zz-not-enrolled"
        return clinical, scans, "scans.tsv", [f"line {k + 2} (scan_id={sid})", "not in the clinical table"]
    if kind == "misspelt_column":
        table, column = draw(st.sampled_from([("clinical", "os_days"), ("clinical", "pfs_event"), ("scans", "image"),
                                              ("scans", "days"), ("scans", "mask"), ("clinical", "ecog")]))
        typo = draw(st.sampled_from([column.upper(), column[:-1], column + "s", column[:1] + column[2:]]))
        if typo == column or (table == "clinical" and typo in clinical) or (table == "scans" and typo in scans):
            return _mutate(draw, clinical, scans)
        if table == "clinical":
            clinical = clinical.rename(columns={column: typo}) if column in clinical else clinical.assign(**{typo: 1})
        else:
            scans = scans.rename(columns={column: typo}) if column in scans else scans.assign(**{typo: "img"})
        return clinical, scans, f"{table}.tsv", [f"column {typo!r} looks like a misspelling of {column!r}"]
    # cohort names become file names too
    clinical.loc[i, "cohort"] = draw(st.sampled_from(["..", "-h", "lung/../x", "C" * 300]))
    return clinical, scans, "clinical.tsv", [f"line {i + 2} (patient_id={pid})", "cohort"]


@st.composite
def mutated_studies(draw):
    clinical, scans = draw(studies())
    return _mutate(draw, clinical, scans)


@PROPERTIES
@given(mutated_studies())
def test_single_mutations_fail_naming_the_row(mutated):
    clinical, scans, table, says = mutated
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(StudyError) as info:
            run_check(Path(tmp), clinical, scans)
    message = str(info.value)
    assert "\n" not in message
    assert f"{table}" in message.split(":")[0], message
    for part in says:
        assert part in message, (part, message)
