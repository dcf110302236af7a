"""Sphinx configuration for the skbatchnet documentation."""

import importlib.util

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
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
]

autosummary_generate = True
numpydoc_show_class_members = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
}

templates_path = ["_templates"]
exclude_patterns = ["_build"]

if importlib.util.find_spec("pydata_sphinx_theme") is not None:
    html_theme = "pydata_sphinx_theme"
else:
    html_theme = "alabaster"
