"""Figures drawn, while the docs are built, by the code of the page they are on.

A page whose sections each run on their own (the user guide) places a figure
with::

    .. section-figure:: name.png
       :alt: what the figure shows
       :budget: 10

       The caption.

When Sphinx reads the directive, this extension takes the doctest examples
of the enclosing top-level section, from its heading down to the directive,
runs them in a fresh namespace (as ``tests/test_tutorial.py`` runs each
section), and saves the last matplotlib figure they drew to
``generated/<page>/name.png``, which the directive then shows like
``.. figure::``. The figure is therefore the picture of the code printed
above it, and cannot drift from it.

``:budget:`` (required) is the most seconds the section's code may take, figure
included; a slower run is a Sphinx warning, which ``-W`` makes an error. The
time taken is logged for each figure. The code runs with one BLAS thread,
as the tests run the gallery: its matrices are small, and on a busy machine
several threads per process can make them many times slower.
"""

import time
import warnings
from pathlib import Path

from docutils.parsers.rst import directives
from docutils.parsers.rst.directives.images import Figure
from page_sections import run_examples, top_level_sections
from sphinx.util import logging

logger = logging.getLogger(__name__)

OUTPUT = Path("generated")


class SectionFigure(Figure):
    """``.. figure::`` of an image drawn by the section's own code."""

    option_spec = dict(Figure.option_spec, budget=directives.positive_int)

    def run(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from threadpoolctl import threadpool_limits

        env = self.state.document.settings.env
        source = Path(self.state.document.current_source)
        # self.lineno counts from 1; the directive's own line is not code.
        line = self.lineno - 1
        text = source.read_text(encoding="utf-8")
        title, start, section = next(
            s for s in reversed(top_level_sections(text)) if s[1] <= line
        )
        code = "".join(section.splitlines(keepends=True)[: line - start])
        name = self.arguments[0]
        if "budget" not in self.options:
            raise self.error(f"section-figure {name} states no :budget: (seconds)")
        budget = self.options.pop("budget")
        plt.close("all")
        began = time.perf_counter()
        with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
            # Fits stopped after a few epochs on purpose; the page says so.
            warnings.filterwarnings("ignore", "Stochastic Optimizer: Maximum iter")
            run_examples(code, f"{source.name}: {title}")
        figures = plt.get_fignums()
        if not figures:
            raise self.error(f"the section {title!r} drew no figure for {name}")
        output = Path(env.srcdir) / OUTPUT / env.docname
        output.mkdir(parents=True, exist_ok=True)
        plt.figure(figures[-1]).savefig(output / name, dpi=100, bbox_inches="tight")
        plt.close("all")
        elapsed = time.perf_counter() - began
        logger.info("section-figure %s: %.1f s (budget %d s)", name, elapsed, budget)
        if elapsed > budget:
            logger.warning(
                "section-figure %s: the code of %r took %.1f s, over its budget "
                "of %d s; make it faster or raise :budget:",
                name,
                title,
                elapsed,
                budget,
                location=(env.docname, self.lineno),
            )
        env.note_dependency(str(source))
        self.arguments[0] = f"/{OUTPUT.as_posix()}/{env.docname}/{name}"
        return super().run()


def setup(app):
    app.add_directive("section-figure", SectionFigure)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
