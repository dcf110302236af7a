"""Sphinx configuration for the skbatchnet documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Without network access, set ``SKBATCHNET_DOCS_OFFLINE=1``: intersphinx then
fetches no inventories (Sphinx reports a failed fetch as a warning that
``suppress_warnings`` cannot silence, which ``-W`` turns into an error), and
links to numpy, scipy, scikit-learn and Python are rendered as plain text.

Formulas are converted to MathML during the build (``_ext/mathml.py``), so
the pages need no network to show them, the Performance page's figure is
plotted from the recorded benchmark run in ``_data/`` (``_ext/bench_figure.py``),
and the user guide's figures are drawn by the code of the sections they are
in, each within a time budget (``_ext/section_figure.py``).
"""

import importlib.util
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "skbatchnet"
author = "skbatchnet developers"
copyright = "skbatchnet developers"

try:
    import skbatchnet

    release = skbatchnet.__version__
except ImportError:  # building the docs without the package installed
    release = ""
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "mathml",
    "bench_figure",
    "section_figure",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "examples/GALLERY_HEADER.rst"]

# -- API reference -----------------------------------------------------------

autosummary_generate = True
# The class template (_templates/autosummary/class.rst) documents the methods
# skbatchnet defines; numpydoc's own member tables would repeat them.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"member-order": "bysource"}

# -- links to other projects ---------------------------------------------------

OFFLINE = os.environ.get("SKBATCHNET_DOCS_OFFLINE", "") not in ("", "0")

if OFFLINE:
    intersphinx_mapping = {}
else:
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
    }
    intersphinx_timeout = 30

# -- example gallery -------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skbatchnet",),
    "reference_url": {"skbatchnet": None},
    "backreferences_dir": "generated/backreferences",
    "remove_config_comments": True,
    "min_reported_time": 1,
}

# -- HTML --------------------------------------------------------------------------

if importlib.util.find_spec("pydata_sphinx_theme") is not None:
    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_toc_level": 2,
    }
    # Pages without subpages get no (empty) left sidebar, and so more room
    # for code and equations.
    html_sidebars = {
        page: []
        for page in (
            "index",
            "getting_started",
            "user_guide",
            "advanced",
            "performance",
            "dask",
        )
    }
else:
    html_theme = "alabaster"
html_title = f"skbatchnet {release}".strip()
html_static_path = ["_static"]
# MathML, written into the pages by _ext/mathml.py: the browser draws it.
html_math_renderer = "mathml"
html_show_sourcelink = False
