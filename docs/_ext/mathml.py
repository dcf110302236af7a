"""Render the documentation's LaTeX math as MathML when the HTML is built.

Browsers draw MathML themselves, so a page needs no script, no font download
and no network to show its formulas: a local build, an archived CI artifact
and an offline laptop show the same page. The conversion is done by
``latex2mathml`` (pure Python, in the ``docs`` extra).

latex2mathml passes a command it does not know through as text (``\\foo``
becomes the identifier "\\foo"); such a formula is reported as a Sphinx
warning, which ``-W`` turns into an error, rather than shipped with LaTeX in
it.
"""

import re
from html import escape

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)

# '\\[2ex]': extra space after a row. latex2mathml would print "[2ex]" at the
# start of the next row; MathML's rows are spaced by the table, so drop it.
ROW_SPACING = re.compile(r"\\\\\[[^\]]*\]")
# Text that is still LaTeX after the conversion: a command, or an alignment
# mark outside a table.
LEFTOVER = re.compile(r">[^<]*(\\[A-Za-z]+|&(?![#\w]+;))[^<]*<")


def to_mathml(latex, display, node):
    """The MathML of ``latex``; warns when part of it stayed LaTeX."""
    source = ROW_SPACING.sub(r"\\\\", latex.strip())
    try:
        mathml = convert(source, display=display)
    except Exception as error:  # latex2mathml raises its own exception classes
        logger.warning(
            "latex2mathml cannot convert %r: %s; rewrite the formula",
            latex,
            error,
            location=node,
        )
        return f"<code>{escape(latex)}</code>"
    leftover = LEFTOVER.search(mathml)
    if leftover:
        logger.warning(
            "latex2mathml left %r unconverted in %r; rewrite the formula with "
            "commands it supports",
            leftover.group(1),
            latex,
            location=node,
        )
    # The source, for screen readers and for copying.
    return mathml.replace("<math ", f'<math alttext="{escape(latex.strip())}" ', 1)


def visit_math(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(to_mathml(node.astext(), "inline", node))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    # Sphinx's convention: equations separated by a blank line are shown one
    # below the other. The theme lays div.math out as a row (the number on
    # the right), so the equations get a column of their own.
    self.body.append('<div class="mathml-display">')
    for part in node.astext().split("\n\n"):
        if part.strip():
            self.body.append(to_mathml(part, "block", node))
    self.body.append("</div></div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer(
        "mathml",
        inline_renderers=(visit_math, None),
        block_renderers=(visit_displaymath, None),
    )
    app.add_css_file("mathml.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
