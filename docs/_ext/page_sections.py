"""A page cut into its top-level sections, and a section's examples run.

Shared by the docs build (``section_figure.py``, which draws a section's
figure from its code) and the tests (``tests/test_tutorial.py``, which run
each section of the user guide on its own), so both read a page the same
way. Needs no Sphinx.
"""

import contextlib
import doctest
import io
import re

RULE = re.compile(r"^(=+)\s*$")


def top_level_sections(text):
    """The page cut at its top-level headings: ``[(title, first_line, text)]``.

    A top-level heading is a title underlined with ``=`` and no overline
    (the page title has one). The text before the first such heading comes
    first, titled ``'(introduction)'``. ``first_line`` counts from 0, so a
    section's lines keep their numbers in the page.
    """
    lines = text.splitlines(keepends=True)
    starts, titles = [0], ["(introduction)"]
    for i in range(1, len(lines)):
        title, rule = lines[i - 1].strip(), RULE.match(lines[i])
        overlined = i >= 2 and RULE.match(lines[i - 2])
        if (
            rule
            and title
            and not RULE.match(lines[i - 1])
            and len(rule.group(1)) >= len(title)
            and not overlined
        ):
            starts.append(i - 1)
            titles.append(title)
    starts.append(len(lines))
    return [
        (title, start, "".join(lines[start:stop]))
        for title, start, stop in zip(titles, starts, starts[1:])
    ]


def run_examples(text, name):
    """Run the doctest examples of ``text`` in a fresh namespace.

    Examples that expect an exception may raise it; any other exception
    propagates. What they print is discarded (the tests compare it).
    Returns the namespace.
    """
    namespace = {"__name__": name}
    examples = doctest.DocTestParser().get_examples(text)
    with contextlib.redirect_stdout(io.StringIO()):
        for example in examples:
            code = compile(example.source, f"<{name}, line {example.lineno}>", "exec")
            try:
                exec(code, namespace)
            except Exception:
                if example.exc_msg is None:
                    raise
    return namespace
