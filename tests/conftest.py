"""Shared fixtures: a tiny deterministic torch model and data."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)
