"""Fixtures for the segmentation tests."""

import pytest

from torso_phantom import make_phantom


@pytest.fixture(scope="session")
def phantom():
    return make_phantom()
