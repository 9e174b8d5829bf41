"""Every example of the gallery (examples/plot_*.py) runs without error.

Each runs in a fresh interpreter, as sphinx-gallery and a user would run it,
with the Agg backend and every warning turned into an error.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("plot_*.py"))


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {
        "plot_quickstart",
        "plot_model_selection",
        "plot_compare_intervals",
        "plot_lipschitz_radius",
        "plot_recertify",
    } <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    # The examples import the smoothlearn under test, wherever pytest found it.
    env = dict(
        os.environ,
        MPLBACKEND="Agg",
        PYTHONWARNINGS="error",
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
