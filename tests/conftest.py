import os
import sys
from pathlib import Path

import pytest
from workflow_run import TINY, snakemake

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def schemas_dir() -> Path:
    return ROOT / "workflow" / "schemas"


def pytest_collection_modifyitems(items):
    # `make test-fast` selects `-m "not e2e"`: a test on the shared run without the marker would
    # start a 10-minute Snakemake run inside it
    unmarked = [i.nodeid for i in items if "synthetic_run" in i.fixturenames and i.get_closest_marker("e2e") is None]
    if unmarked:
        raise pytest.UsageError(f"{unmarked[0]} uses the shared Snakemake run: mark it @pytest.mark.e2e")


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """One Snakemake run of the tiny synthetic trial, shared by every end-to-end test."""
    workdir = tmp_path_factory.mktemp("e2e")
    proc = snakemake(workdir, TINY)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir / "results" / "tiny"


