"""config/config.yaml is the one place users read defaults: the code's defaults must agree."""

import pytest
import yaml
from snakemake.utils import validate

from tumorburden import design
from tumorburden.figures import settings as figure_settings
from tumorburden.imaging import ingest
from tumorburden.kinetics import bodycomp, burden, features
from tumorburden.lesions import measure, track
from tumorburden.lesions import review as lesion_review
from tumorburden.segment import review as segment_review
from tumorburden.segment import run as segment_run
from tumorburden.segment import train as segment_train
from tumorburden.survival import analysis
from tumorburden.synth import trial


@pytest.fixture(scope="module")
def config(repo_root):
    return yaml.safe_load((repo_root / "config/config.yaml").read_text())


def test_default_config_matches_schema(config, repo_root):
    validate(dict(config), str(repo_root / "workflow/schemas/config.schema.yaml"))


@pytest.mark.parametrize(
    "section, defaults, internal",
    [
        ("imaging", ingest.DEFAULTS, set()),
        ("segmentation", {**segment_run.DEFAULTS, "train": segment_train.DEFAULTS}, {"lesions"}),
        ("lesions", {**measure.DEFAULTS, **track.DEFAULTS}, set()),
        ("kinetics", {**burden.DEFAULTS, **features.DEFAULTS}, set()),
        ("body_composition", bodycomp.DEFAULTS, set()),
        ("survival", analysis.DEFAULTS, set()),
        ("synthetic", trial.DEFAULTS, set()),
        ("figures", figure_settings.DEFAULTS, set()),
        ("review", {**segment_review.DEFAULTS, **lesion_review.DEFAULTS}, set()),
        ("design", design.DEFAULTS, set()),
    ],
)
def test_code_defaults_equal_config(config, section, defaults, internal):
    documented = config[section]
    assert set(documented) == set(defaults) - internal, f"config/config.yaml [{section}] and the code disagree on keys"
    for key, value in documented.items():
        assert defaults[key] == value, f"{section}.{key}: config says {value!r}, code says {defaults[key]!r}"


def test_every_config_key_is_documented(config, repo_root):
    readme = (repo_root / "config/README.md").read_text()
    for section, values in config.items():
        assert f"## `{section}`" in readme, section
        for key in values:
            assert f"`{key}" in readme or f"{key}`" in readme, f"{section}.{key} is not in config/README.md"
