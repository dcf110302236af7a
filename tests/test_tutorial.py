"""The user guide's code blocks run and print what the page says they print."""

import doctest
import pathlib
import warnings

from sklearn.exceptions import ConvergenceWarning

USER_GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "user_guide.rst"


def test_user_guide_doctests():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = doctest.testfile(
            str(USER_GUIDE),
            module_relative=False,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        )
    assert result.attempted > 0, f"{USER_GUIDE} has no examples"
    assert result.failed == 0, f"{result.failed} examples in {USER_GUIDE} failed"
