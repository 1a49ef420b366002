import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tumorburden.cli import build_parser, main

STAGES = ["synth-trial", "synth-render", "ingest", "segment", "measure", "register", "track", "burden", "site-burden", "body-composition",
          "features", "survival", "prediction", "dynamic", "joint", "figures", "score", "check-study", "discover",
          "merge-exclusions", "segment-dicom", "segment-train", "segment-evaluate", "pacs", "review", "review-table",
          "design"]


def test_every_stage_has_a_subcommand():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_help(stage):
    proc = subprocess.run([sys.executable, "-m", "tumorburden.cli", stage, "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "usage: tumorburden" in proc.stdout


def test_user_error_is_one_line(tmp_path, capsys):
    code = main(["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "x.nii.gz")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tumorburden ingest: error:")
    assert "\n" not in err and "missing" in err


@pytest.mark.parametrize("args, says", [
    (["--segmentation", "a.nii.gz", "b.nii.gz", "--series", "A", "--out-dir", "o", "--scan-id", "a", "b"],
     "2 segmentations but 1 series"),
    (["--segmentation", "a.nii.gz", "b.nii.gz", "--series", "A", "B", "--out", "x.dcm"], "--out takes one scan"),
    (["--segmentation", "a.nii.gz", "--series", "A", "--out-dir", "o"], "needs one --scan-id per --segmentation"),
])
def test_segment_dicom_pairs_every_segmentation_with_its_series(args, says, capsys):
    """One DICOM-SEG job per patient pairs scans, series and names by position: a mismatch stops
    with one line before anything is written."""
    with pytest.raises(SystemExit) as exc:
        main(["segment-dicom", "--patient-id", "P1", *args])
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_rendering_a_patient_not_in_the_trial_is_one_line_naming_it(tmp_path, capsys):
    code = main(["synth-render", "--settings", '{"n_patients": 3}', "--patient-id", "SYN-999",
                 "--dicom-dir", str(tmp_path / "d"), "--truth-dir", str(tmp_path / "t")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tumorburden synth-render: error:") and "SYN-999" in err and "\n" not in err
    assert not (tmp_path / "d").exists()


def test_a_finished_command_logs_its_own_wall_and_cpu_time(tmp_path):
    """The last log line of every command is its cost to its end (Snakemake's benchmark files stop
    sampling a long job's CPU; this line is what benchmarks/job_costs.py reads)."""
    proc = subprocess.run([sys.executable, "-m", "tumorburden.cli", "synth-trial", "--settings", '{"n_patients": 4}',
                           "--out-dir", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    m = re.search(r"tumorburden synth-trial: done: ([0-9.]+) s wall, ([0-9.]+) CPU-s$", last)
    assert m, last
    wall, cpu = map(float, m.groups())
    assert wall > 0 and cpu > 0.2  # the interpreter's imports alone cost more than that


def test_the_console_script_ends_without_teardown_but_with_its_files_log_and_exit_code(tmp_path):
    """Run as a rule runs it (the console script: the process ends in os._exit), a command still leaves
    its output file whole, its log lines (the `done:` cost line last) on stderr and its exit code, 0 or 1."""
    table = tmp_path / "t.tsv"
    table.write_text("days\tevent\tarm\n" + "".join(f"{10 * i + 5}\t{i % 2}\t{'ab'[i % 3 == 0]}\n" for i in range(40)))
    script = shutil.which("tumorburden", path=str(Path(sys.executable).parent))
    assert script, "the tumorburden console script is not installed beside this Python (make setup)"
    command = [script, "survival", "km", "--table", str(table), "--duration", "days",
               "--event", "event", "--group", "arm"]
    ok = subprocess.run([*command, "--out", str(tmp_path / "km.csv")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"done: [\d.]+ s wall, [\d.]+ CPU-s\n$", ok.stderr), ok.stderr
    assert (tmp_path / "km.csv").read_text().startswith("group,") and (tmp_path / "km_curve.csv").stat().st_size > 0
    bad = subprocess.run([*command[:-6], "--duration", "arm", "--event", "event", "--out", str(tmp_path / "x.csv")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("tumorburden survival: error:"), bad.stderr
