import os
import sys
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each for the tests' own torch, BLAS and
    # OpenMP work (set before numpy or torch loads; a pipeline job still sets its rule's threads), and
    # OpenMP threads that sleep rather than spin while they wait, so that the other worker's
    # Snakemake jobs are not slowed by busy-waiting threads
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402
from workflow_run import TINY, snakemake  # noqa: E402

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
    items[:] = sorted(items, key=_module_rank(items))


# `make test` runs the modules on two pytest-xdist workers, one module to a worker at a time, in the
# order below (the same on every worker: each collects and sorts the same way). First the SLURM
# module: it builds the shared run and then mostly waits on SLURM, which is when the other worker
# gets the CPU; then the unit-test modules, then the end-to-end modules that need no shared run, and
# last the ones that do, by when it is built.
FIRST_MODULES = ("tests/cluster/",)


def _module_rank(items):
    def module(item):
        return item.nodeid.split("::")[0]

    shared = {module(i) for i in items if "synthetic_run" in i.fixturenames}
    e2e = {module(i) for i in items if i.get_closest_marker("e2e") is not None}

    def rank(item):
        m = module(item)
        if m.startswith(FIRST_MODULES):
            return 0
        return 3 if m in shared else 2 if m in e2e else 1

    return rank


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """One Snakemake run of the tiny synthetic trial, shared by every end-to-end test (and by every
    pytest-xdist worker: the first to need it builds it, the other waits for it)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: one folder per session
    workdir = root / "e2e-shared"
    failed = root / "e2e-shared.failed"
    with FileLock(str(root / "e2e-shared.build.lock")):
        if failed.exists():
            pytest.fail(failed.read_text())
        if not (root / "e2e-shared.done").exists():
            workdir.mkdir(exist_ok=True)
            proc = snakemake(workdir, TINY)
            if proc.returncode != 0:
                failed.write_text("the shared tiny run failed:\n" + proc.stderr[-4000:])
                pytest.fail(failed.read_text())
            (root / "e2e-shared.done").write_text("")
    return workdir / "results" / "tiny"
