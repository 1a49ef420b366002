"""The stage commands the rules run quote every value they are handed (issue 14): paths with
spaces stay one argument, and no value can be read as an option."""

import json
import re
import shlex

import pandas as pd
import pytest
from workflow_run import snakemake

from tumorburden.cli import build_parser


def shell_strings(repo_root):
    """(file, text) of every `shell:` command of workflow/rules/*.smk."""
    out = []
    for smk in sorted((repo_root / "workflow" / "rules").glob("*.smk")):
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == "shell:":
                parts = []
                for follow in lines[i + 1:]:
                    if not follow.strip().startswith('"'):
                        break
                    parts.append(follow.strip()[1:-1])
                out.append((smk.name, "".join(parts)))
    return out


def many_valued_options():
    """--options of `tumorburden` stages that take several values (the only ones that cannot use --opt=value)."""
    options = set()
    parser = build_parser()
    stages = next(a for a in parser._actions if a.dest == "command").choices
    subparsers = list(stages.values())
    for stage in list(subparsers):  # `figures` has its own subcommands
        for action in stage._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                subparsers += list(action.choices.values())
    for stage in subparsers:
        for action in stage._actions:
            if action.nargs in ("+", "*"):
                options.update(action.option_strings)
    return options


def split(command: str) -> list[str]:
    """The words of a shell command as sh reads them, `(`, `)`, `>`, `&&` apart."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def test_every_placeholder_of_every_shell_command_is_quoted(repo_root):
    commands = shell_strings(repo_root)
    assert len(commands) >= 15
    for name, command in commands:
        for field in re.findall(r"\{([^{}]*)\}", command):
            assert field.endswith(":q"), f"{name}: {{{field}}} in {command!r} is not quoted ({{x:q}})"


def test_single_values_are_given_as_option_equals_value(repo_root):
    """`--scan-id -h` would make argparse read -h as an option; `--scan-id=-h` cannot."""
    allowed = many_valued_options()
    assert {"--lesions", "--tissue", "--overlays", "--segmentation", "--series"} <= allowed
    for name, command in shell_strings(repo_root):
        for option in re.findall(r"(--[a-z-]+) \{", command):
            assert option in allowed, f"{name}: write {option}={{...:q}} in {command!r}"


@pytest.mark.e2e  # runs Snakemake
def test_commands_keep_paths_with_spaces_whole(tmp_path):
    """A dry run (--printshellcmds) of a study whose tables, images and masks lie in folders with
    spaces: every printed command splits into the intended arguments."""
    data = tmp_path / "my study" / "CT scans"
    data.mkdir(parents=True)
    (data / "scan one.nii.gz").write_bytes(b"")
    (data / "lesion mask.nii.gz").write_bytes(b"")
    clinical = pd.DataFrame({"patient_id": ["P01"], "cohort": ["lung"], "pfs_days": [10], "pfs_event": [1],
                             "os_days": [20], "os_event": [1]})
    clinical.to_csv(tmp_path / "my study" / "clinical table.tsv", sep="\t", index=False)
    pd.DataFrame({"patient_id": ["P01", "P01"], "scan_id": ["S1", "S2"], "days": [0, 40],
                  "image": ["CT scans/scan one.nii.gz"] * 2, "mask": ["CT scans/lesion mask.nii.gz", ""]}) \
        .to_csv(tmp_path / "my study" / "scans table.tsv", sep="\t", index=False)
    work = tmp_path / "work"
    work.mkdir()
    config = {"study": {"name": "spaces", "clinical": str(tmp_path / "my study" / "clinical table.tsv"),
                        "scans": str(tmp_path / "my study" / "scans table.tsv")},
              "segmentation": {"engine": "classical"}}
    proc = snakemake(work, config, "-n", "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = [line.split("Shell command: ", 1)[1] if "Shell command: " in line else line
                for line in proc.stdout.splitlines() + proc.stderr.splitlines()]
    commands = [c for c in commands if re.match(r"^\(?tumorburden ", c)]
    assert commands, proc.stdout[-2000:] + proc.stderr[-2000:]
    image, mask = str(data / "scan one.nii.gz"), str(data / "lesion mask.nii.gz")
    seen = {"ingest": 0, "segment": 0, "clinical": 0}
    for command in commands:
        words = [w for w in split(command) if w != "("]
        for word in words:
            if word.startswith("--settings="):
                assert isinstance(json.loads(word[len("--settings="):]), dict)
            if word.startswith("--clinical="):
                assert word == f"--clinical={config['study']['clinical']}"
                seen["clinical"] += 1
        if words[:2] == ["tumorburden", "ingest"]:  # one job for the patient's two scans
            assert words[words.index("--") + 1:words.index("--") + 3] == [image, image] and words[words.index("--") + 3] == ">"
            seen["ingest"] += 1
        if words[:2] == ["tumorburden", "segment"]:  # one job for the patient's two scans
            seen["segment"] += 1
            assert words[words.index("--scan-id") + 1:words.index("--scan-id") + 3] == ["S1", "S2"]
            masks = [w for w in words if w.startswith("--mask")]
            assert masks == [f"--mask=S1={mask}"]  # the mask is S1's only
    assert seen["ingest"] == 1 and seen["segment"] == 1 and seen["clinical"] >= 1
    assert sum(f"--mask=S1={mask}" in split(c) for c in commands) == 1
