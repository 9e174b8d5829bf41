"""The documentation builds with ``sphinx -W`` (no warnings), offline.

Slow.  The gallery pages are built without executing the examples
(``-D plot_gallery=0``): tests/test_examples.py already runs each one, and
running them twice would double the suite's longest part.  A plain
``python -m sphinx -b html doc doc/_build/html`` executes them.  The ``test``
extra installs sphinx, numpydoc and sphinx-gallery, so this test runs (and
fails, rather than skips) wherever the README's test command was used.
"""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_sphinx_build_without_warnings(tmp_path):
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "matplotlib"):
        importlib.import_module(module)  # the test extra installs them all
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-D",
            "plot_gallery=0",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(ROOT / "doc"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (tmp_path / "html" / "index.html").is_file()
    assert (tmp_path / "html" / "auto_examples" / "index.html").is_file()
