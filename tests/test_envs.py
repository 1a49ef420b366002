"""envs/*.yaml (the conda environments of `--software-deployment-method conda`) pin exactly
what requirements.lock pins, and nothing in them depends on where the file lies (Snakemake
copies it into .snakemake/conda/ before creating the environment)."""

import re

import pytest
import yaml


def lock_pins(repo_root) -> dict:
    pins = {}
    for line in (repo_root / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def env_files(repo_root):
    files = sorted((repo_root / "envs").glob("*.yaml"))
    assert files, "no conda environment in envs/"
    return files


def test_every_env_pins_exactly_the_lock(repo_root):
    lock = lock_pins(repo_root)
    for path in env_files(repo_root):
        env = yaml.safe_load(path.read_text())
        deps = env["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        pins = {}
        for requirement in pip:
            assert "==" in requirement, f"{path.name}: '{requirement}' is not an exact pin (name==version)"
            name, version = requirement.split("==")
            assert _canonical(name) not in pins, f"{path.name}: {name} pinned twice"
            pins[_canonical(name)] = version
        missing = sorted(set(lock) - set(pins))
        extra = sorted(set(pins) - set(lock))
        assert not missing and not extra, f"{path.name} vs requirements.lock: missing {missing}, not in the lock {extra}"
        wrong = {n: (pins[n], lock[n]) for n in lock if pins[n] != lock[n]}
        assert not wrong, f"{path.name} pins other versions than requirements.lock (env, lock): {wrong}"


def test_env_python_is_the_project_python(repo_root):
    makefile = (repo_root / "Makefile").read_text()
    python = re.search(r"PYTHON \?= python(\d+\.\d+)", makefile).group(1)
    for path in env_files(repo_root):
        deps = yaml.safe_load(path.read_text())["dependencies"]
        assert f"python={python}" in deps, f"{path.name}: conda python must be {python} like `make setup`"


@pytest.mark.parametrize("bad", ["-r ", "-e ", "../", "file:"])
def test_env_refers_to_no_path(repo_root, bad):
    for path in env_files(repo_root):
        body = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert bad not in body, f"{path.name}: '{bad}' breaks once Snakemake copies the file into .snakemake/conda/"


def test_rules_use_an_env_that_exists(repo_root):
    for rules in (repo_root / "workflow/rules").glob("*.smk"):
        for env in re.findall(r'ENV = "([^"]+)"', rules.read_text()):
            assert (rules.parent / env).resolve().is_file(), f"{rules.name}: {env} not found"
