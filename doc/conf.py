"""Sphinx configuration of the smoothlearn documentation.

Build (from the repository root; no Makefile needed, no network needed)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W -b html doc doc/_build/html

The build runs every example of ``examples/`` through sphinx-gallery.
"""

import os
import re
import sys
from datetime import date

sys.path.insert(0, os.path.abspath(".."))

import smoothlearn

project = "smoothlearn"
author = "the smoothlearn developers"
copyright = f"{date.today().year}, {author}"
version = release = smoothlearn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
root_doc = "index"
default_role = "literal"
nitpicky = False

# -- autodoc / autosummary / numpydoc ---------------------------------------
autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
autodoc_typehints = "none"  # numpydoc "Parameters" sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# No intersphinx: the build must work offline.

# -- sphinx-gallery ------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "min_reported_time": 1,
}

# -- HTML -----------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "Randomized-smoothing certification, the scikit-learn way",
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_static_path = []
html_show_sourcelink = False


# -- docstring hooks ------------------------------------------------------------
# scikit-learn's metadata-routing methods (set_fit_request, ...) are generated
# on every estimator and document sklearn's own glossary: not ours to show.
_ROUTING = re.compile(r"^set_\w+_request$")

# "ndarray of shape (n_features_in_,)": a trailing underscore is a reST
# reference; quote such names inside "shape (...)" of parameter type lines.
_SHAPE = re.compile(r"shape \(([^)]*)\)")
_TRAILING = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?![`\w])")


def _skip_member(app, what, name, obj, skip, options):
    if _ROUTING.match(name):
        return True
    return None


def _quote_shapes(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        lines[i] = _SHAPE.sub(
            lambda m: "shape (" + _TRAILING.sub(r"``\1``", m.group(1)) + ")", line
        )


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _quote_shapes)
