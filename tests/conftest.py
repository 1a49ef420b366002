import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def schemas_dir() -> Path:
    return ROOT / "workflow" / "schemas"
