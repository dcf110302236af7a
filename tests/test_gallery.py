"""Each gallery example runs, and the claims its asserts check hold.

The examples live in docs/examples (sphinx-gallery format). They are run as
scripts, with matplotlib's non-interactive Agg backend; their figures are
closed afterwards.
"""

import pathlib
import runpy

import pytest
from threadpoolctl import threadpool_limits

EXAMPLES = sorted(
    (pathlib.Path(__file__).resolve().parents[1] / "docs" / "examples").glob(
        "plot_*.py"
    )
)


def test_there_are_examples():
    assert EXAMPLES, "no docs/examples/plot_*.py found"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_gallery_example_runs(path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Examples may refer to files next to them, as sphinx-gallery runs them.
    monkeypatch.chdir(path.parent)
    # The examples multiply matrices of at most a few thousand rows, which one
    # BLAS thread handles as fast as several; on a busy machine, several
    # threads per process can make them many times slower.
    try:
        with threadpool_limits(1, user_api="blas"):
            runpy.run_path(str(path), run_name="__main__")
    finally:
        plt.close("all")
