"""The user guide's and the advanced page's code blocks run and print what
the pages say they print."""

import doctest
import pathlib

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES = [DOCS / "user_guide.rst", DOCS / "advanced.rst"]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_doctests(page):
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted > 0, f"{page} has no examples"
    assert result.failed == 0, f"{result.failed} examples in {page} failed"
