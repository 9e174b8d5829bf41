"""The documentation builds with ``sphinx -W`` (no warnings), offline.

Slow.  The gallery pages are built without executing the examples
(``-D plot_gallery=0``): tests/test_examples.py already runs each one, and
running them twice would double the suite's longest part.  A plain
``python -m sphinx -b html doc doc/_build/html`` executes them.  The ``test``
extra installs sphinx, numpydoc and sphinx-gallery, so this test runs (and
fails, rather than skips) wherever the README's test command was used.
"""

import importlib
import pkgutil
import re
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


# ---------------------------------------------------------------------------
# doc/api.rst lists every public class, function and constant
# ---------------------------------------------------------------------------
_DIRECTIVE = re.compile(
    r"^\.\. (?:py:)?(?:auto)?(?:class|function|data|exception)::\s+(\S+)"
)


def _public_modules():
    """Every module of the package whose dotted name has no private part."""
    import smoothlearn

    yield smoothlearn
    for info in pkgutil.walk_packages(smoothlearn.__path__, "smoothlearn."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts):
            continue
        yield importlib.import_module(info.name)


def _documented_objects(text):
    """The objects api.rst documents: autosummary entries and directives,
    each qualified by the ``currentmodule`` in force."""
    current, in_summary, found = "smoothlearn", False, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            current = stripped.split("::", 1)[1].strip()
            continue
        if stripped.startswith(".. autosummary::"):
            in_summary = True
            continue
        if line and not line.startswith(" "):
            in_summary = False  # any unindented line ends an autosummary
        match = _DIRECTIVE.match(stripped)
        if match:
            found.append(f"{current}.{match.group(1)}")
        elif in_summary and stripped and not stripped.startswith(":"):
            found.append(f"{current}.{stripped}")
    return found


def _resolve(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_api_reference_lists_every_public_name():
    # Every public module declares __all__ (possibly empty), and each name in
    # it is documented in doc/api.rst under some public path: the same object
    # (smoothlearn.CertificationResult is smoothlearn.result.CertificationResult).
    documented = {}
    for dotted in _documented_objects((ROOT / "doc" / "api.rst").read_text()):
        documented[id(_resolve(dotted))] = dotted  # raises if api.rst names junk
    missing, without_all = [], []
    for module in _public_modules():
        names = getattr(module, "__all__", None)
        if names is None:
            without_all.append(module.__name__)
            continue
        for name in names:
            if name == "__version__":
                continue
            if id(getattr(module, name)) not in documented:
                missing.append(f"{module.__name__}.{name}")
    assert not without_all, f"public modules without __all__: {without_all}"
    assert not missing, f"public names missing from doc/api.rst: {missing}"
    # The command's entry point is the one public name of smoothlearn.cli.
    assert "smoothlearn.cli.main" in documented.values()


def test_api_reference_checker_sees_entries():
    # The parser of api.rst finds what is there and nothing else, so the test
    # above can fail.
    text = """
.. currentmodule:: smoothlearn.radius

.. autosummary::
   :toctree: generated/

   gaussian_radius
   solve_s0

Prose line.

.. data:: X
   :type: int

   A description, not an entry.

   not_an_entry
"""
    assert _documented_objects(text) == [
        "smoothlearn.radius.gaussian_radius",
        "smoothlearn.radius.solve_s0",
        "smoothlearn.radius.X",
    ]
