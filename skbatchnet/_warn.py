"""Warnings attributed to the user's line, whatever the call depth.

A fixed ``stacklevel`` counts frames from the line that warns, but the depth
between the user's call and that line differs between solvers, between a
plain ``fit`` and one inside a ``Pipeline`` or ``GridSearchCV``, and between
scikit-learn versions. :func:`warn` instead walks the stack out of the
libraries in between (this package, scikit-learn, joblib) and attributes the
warning to the first frame outside them: the line that called into them.
Python 3.12's ``warnings.warn(skip_file_prefixes=...)`` does the same, but
the package supports 3.10 and 3.11, so it walks the stack itself.
"""

import sys
import warnings

__all__ = ["warn"]

# The libraries between a user's call and a warning, by top-level package
# name: a module's name, unlike its file, is the same in a source tree, in
# site-packages and in a zip, and names no sibling (sklearn_extra is not
# sklearn).
LIBRARIES = frozenset({"skbatchnet", "sklearn", "joblib"})


def _in_libraries(frame):
    name = frame.f_globals.get("__name__") or ""
    return name.partition(".")[0] in LIBRARIES


def stacklevel():
    """The ``stacklevel`` that names the first frame outside the libraries.

    Counted for a ``warnings.warn`` call made by the caller of this function
    (level 1 is that caller's own line). When every frame is inside the
    libraries (a library calling itself), the outermost frame is named.
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _in_libraries(frame):
        frame, level = frame.f_back, level + 1
    return level


def warn(message, category=UserWarning):
    """``warnings.warn(message, category)`` attributed to the user's line.

    Parameters
    ----------
    message : str
    category : type of Warning, default=UserWarning
    """
    # stacklevel() counts from this frame; warnings.warn's level 1 is here too.
    warnings.warn(message, category, stacklevel=stacklevel())
