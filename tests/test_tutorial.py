"""The docs' code blocks run and print what the pages say they print.

- Each top-level section of the user guide runs on its own, in a fresh
  namespace, so that a reader can start at any section: a section that used
  a name from an earlier one would fail here.
- The advanced page's blocks share one session.
- Getting started runs as a reader meets it, and any warning that its code
  does not catch itself fails the test.

The user guide's figures are drawn by blocks that start with
``>>> import matplotlib.pyplot as plt`` (the docs build saves them, see
``docs/_ext/section_figure.py``); without matplotlib those blocks are
skipped and the rest of their section still runs.
"""

import doctest
import importlib.util
import pathlib
import re
import sys
import warnings

import pytest
from threadpoolctl import threadpool_limits

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
USER_GUIDE = DOCS / "user_guide.rst"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
FIGURE_BLOCK = ">>> import matplotlib.pyplot as plt"

sys.path.insert(0, str(DOCS / "_ext"))
from page_sections import top_level_sections  # noqa: E402

SECTIONS = [
    (title, start, text)
    for title, start, text in top_level_sections(USER_GUIDE.read_text())
    if ">>>" in text
]


def without_figures(text):
    """``text`` with its figure-drawing doctest blocks blanked out.

    The lines are kept (empty), so the line numbers of failures still point
    into the page.
    """
    lines = text.splitlines(keepends=True)
    blanking = False
    for i, line in enumerate(lines):
        if line.startswith(FIGURE_BLOCK):
            blanking = True
        elif not line.strip():
            blanking = False
        if blanking:
            lines[i] = "\n"
    return "".join(lines)


def run_doctest(text, name, lineno, globs=None):
    test = doctest.DocTestParser().get_doctest(
        text, {} if globs is None else globs, name, str(USER_GUIDE), lineno
    )
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    # As the docs build runs them: one BLAS thread, which the small
    # matrices of the pages do not need more of.
    with threadpool_limits(1, user_api="blas"):
        runner.run(test)
    return runner.summarize(verbose=False)


def test_the_user_guide_is_cut_into_its_sections():
    # Every example of the page is in exactly one section that runs.
    parser = doctest.DocTestParser()
    whole = len(parser.get_examples(USER_GUIDE.read_text()))
    assert sum(len(parser.get_examples(text)) for _, _, text in SECTIONS) == whole
    assert len(SECTIONS) >= 12
    assert SECTIONS[0][0] == "A worked example by hand"


@pytest.mark.parametrize(
    "title, start, text", SECTIONS, ids=[title for title, _, _ in SECTIONS]
)
def test_user_guide_section_runs_on_its_own(title, start, text):
    if importlib.util.find_spec("matplotlib") is None:
        text = without_figures(text)
    else:
        import matplotlib

        matplotlib.use("Agg")
    try:
        result = run_doctest(text, title, start)
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} examples of {title!r} failed"


def test_a_section_that_borrows_a_name_fails():
    # The per-section run is what catches a name defined in another section.
    _, start, text = SECTIONS[1]
    borrowed = text + "\n>>> gradients(0.0)\narray([-3., -4.,  1.])\n"
    result = run_doctest(without_figures(borrowed), "borrowed", start)
    assert result.failed == 1


def test_figure_blocks_are_recognised():
    text = ">>> a = 1\n\n>>> import matplotlib.pyplot as plt\n>>> b = 2\n\n>>> c = 3\n"
    assert without_figures(text) == ">>> a = 1\n\n\n\n\n>>> c = 3\n"


def test_advanced_page_doctests():
    page = DOCS / "advanced.rst"
    result = doctest.testfile(str(page), module_relative=False, optionflags=FLAGS)
    assert result.attempted > 0, f"{page} has no examples"
    assert result.failed == 0, f"{result.failed} examples in {page} failed"


def test_getting_started_runs_without_an_unexpected_warning():
    page = DOCS / "getting_started.rst"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = doctest.testfile(str(page), module_relative=False, optionflags=FLAGS)
    assert result.attempted >= 5, "getting started shows its code as doctests"
    assert result.failed == 0, f"{result.failed} examples in {page} failed"
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


def test_every_user_guide_figure_is_checked_in_the_browser():
    figures = re.findall(r"^\.\. section-figure:: (\S+)", USER_GUIDE.read_text(), re.M)
    spec = importlib.util.spec_from_file_location(
        "check_site", DOCS.parent / ".ci" / "check_site.py"
    )
    if importlib.util.find_spec("websocket") is None:
        pytest.skip("check_site needs websocket-client (the docs extra)")
    check_site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_site)
    (page,) = [p for p in check_site.PAGES if p.path == "user_guide.html"]
    assert len(figures) >= 6
    assert sorted(page.figures) == sorted(figures)
