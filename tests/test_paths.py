"""IDs that become file names: the safe pattern, the computed length limit, and the guard that
keeps every file the pipeline writes inside results/<name>/ (issue 14, traversal IDs and names)."""

import os
import re
from pathlib import Path

import pandas as pd
import pytest
from workflow_run import snakemake

from tumorburden.paths import DERIVED_NAMES, NAME_MAX, id_problem, inside, max_id_length
from tumorburden.study import merged_config


@pytest.mark.parametrize("good", ["P01", "SYN-001", "a", "9", "pt_1.2-b", "A" * 200])
def test_safe_ids_pass(good):
    assert id_problem(good, "scan_id") is None


@pytest.mark.parametrize("bad", [".", "..", "-h", "--help", ".hidden", "_x", "a/b", "../x", "a b", "a;b", "é", ""])
def test_unsafe_ids_are_refused(bad):
    problem = id_problem(bad, "patient_id")
    assert problem is not None and "patient_id" in problem


@pytest.mark.parametrize("kind", sorted(DERIVED_NAMES))
def test_the_longest_id_fits_every_derived_name_and_one_more_character_does_not(tmp_path, kind):
    """Every file name built from an ID of the maximal length can be created on this file system;
    an ID one character longer is refused (and would not fit the longest name)."""
    config = merged_config({})
    limit = max_id_length(kind, config)
    longest = "a" * limit
    assert id_problem(longest, kind, config) is None
    assert id_problem(longest + "a", kind, config) is not None
    groupings = [re.sub(r"[^A-Za-z0-9._-]+", "-", g) for g in config["figures"]["km_groupings"]]
    names = [t.replace("{grouping}", g).format(longest) for t in DERIVED_NAMES[kind] for g in groupings]
    for name in names:
        (tmp_path / name).touch()
        (tmp_path / name).unlink()
    assert max(len(n) for n in names) == NAME_MAX
    too_long = max(names, key=len).replace(longest, longest + "a")
    with pytest.raises(OSError):
        (tmp_path / too_long).touch()


def _rule_names(repo_root, wildcard):
    """The last path component of every path the rules build from a wildcard, e.g. '{}.json'."""
    names = set()
    for smk in (repo_root / "workflow" / "rules").glob("*.smk"):
        for path in re.findall(r'f"([^"]*\{\{?' + wildcard + r'\}\}?[^"]*)"', smk.read_text()):
            component = path.split("/")[path.split("/").index(next(p for p in path.split("/") if wildcard in p))]
            names.add(re.sub(r"\{\{?" + wildcard + r"\}\}?", "{}", component))
    return names


@pytest.mark.parametrize("wildcard", ["scan_id", "patient_id"])
def test_derived_names_cover_every_name_the_rules_build(repo_root, wildcard):
    """No rule builds a longer name around an ID than DERIVED_NAMES assumes (so the limit holds)."""
    built = _rule_names(repo_root, wildcard)
    assert built, wildcard
    longest_assumed = max(len(t) for t in DERIVED_NAMES[wildcard])
    for name in built:
        assert len(name) <= longest_assumed, f"{name} (from workflow/rules) is longer than DERIVED_NAMES['{wildcard}']"


def test_cohort_names_match_the_figure_names():
    """DERIVED_NAMES assumes the figures' names (figures/names.py, which the rules use too)."""
    from tumorburden.figures import names

    assert names.km_stem("C", "pfs", "G") + ".pdf" == "km_{}_pfs_{grouping}.pdf".format("C", grouping="G")
    assert names.swimmer_stem("C", 999999) + ".pdf" == "swimmer_{}_p999999.pdf".format("C")
    assert "km_{}_pfs_{grouping}.pdf" in DERIVED_NAMES["cohort"] and "swimmer_{}_p999999.pdf" in DERIVED_NAMES["cohort"]


def test_inside_refuses_paths_that_leave_the_root(tmp_path):
    root = tmp_path / "results" / "study"
    (root / "scans").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "scans" / "link")
    assert inside(root, root / "scans" / "S1" / "image.nii.gz") == root / "scans" / "S1" / "image.nii.gz"
    for escape in (root / ".." / "x", root / "scans" / ".." / ".." / "x", root / "scans" / "link" / "f.dcm", root,
                   root / "."):
        with pytest.raises(ValueError, match="resolves outside"):
            inside(root, escape)


def _tree(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if ".snakemake" not in p.relative_to(folder).parts}


TRAVERSALS = [
    ("study.name", {"name": ".."}, None, None),
    ("study.name", {"name": "."}, None, None),
    ("patient_id", {}, {"patient_id": ".."}, None),
    ("scan_id", {}, None, {"scan_id": ".."}),
    ("scan_id", {}, None, {"scan_id": "x/../../../y"}),
    ("cohort", {}, {"cohort": "../../c"}, None),
]


@pytest.mark.e2e  # runs Snakemake
@pytest.mark.parametrize("what, study, clinical, scans", TRAVERSALS, ids=[f"{t[0]}={list((t[1] or t[2] or t[3]).values())[0]}" for t in TRAVERSALS])
def test_traversal_ids_and_names_write_nothing_anywhere(tmp_path, what, study, clinical, scans):
    """Snakemake itself, on a study whose name or IDs would lead out of results/<name>/: it stops
    before any job with one line naming the ID, and no file appears (outside .snakemake/)."""
    work = tmp_path / "work"
    (work / "img").mkdir(parents=True)
    (work / "img" / "a.nii.gz").write_bytes(b"")
    rows = {"patient_id": "P01", "cohort": "lung", "pfs_days": 10, "pfs_event": 1, "os_days": 20, "os_event": 1}
    pd.DataFrame([{**rows, **(clinical or {})}]).to_csv(work / "clinical.tsv", sep="\t", index=False)
    scan = {"patient_id": (clinical or {}).get("patient_id", "P01"), "scan_id": "S1", "days": 0, "image": "img/a.nii.gz"}
    pd.DataFrame([{**scan, **(scans or {})}]).to_csv(work / "scans.tsv", sep="\t", index=False)
    config = {"study": {"name": "t", "clinical": str(work / "clinical.tsv"), "scans": str(work / "scans.tsv"), **study},
              "segmentation": {"engine": "classical"}}
    before = _tree(tmp_path)
    proc = snakemake(work, config)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tumorburden:")]
    assert len(errors) == 1 and what in errors[0] and "not a safe ID" in errors[0], proc.stderr[-2000:]
    assert _tree(tmp_path) - before == {"work/config.yaml"}
