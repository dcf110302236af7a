"""The package's structure: no import cycles, modules a maintainer can read.

The layers themselves are declared in pyproject.toml and checked by
``lint-imports``; a layers contract allows cycles between modules of one
layer, which this test forbids. Imports inside functions count too: a cycle
hidden in a method is still a cycle.
"""

import ast
import io
import pathlib
import re
import tokenize

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "skbatchnet"
MAX_CODE_LINES = 350


def _modules():
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}


def _imports(path, names):
    """Modules of the package that ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:  # from . import name
                found.update(a.name for a in node.names if a.name in names)
            else:
                found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "skbatchnet."
        ):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("skbatchnet."):
                    found.add(alias.name.split(".")[1])
    return found & set(names)


def _cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_cycles():
    modules = _modules()
    # The package's __init__ re-exports from every module; it is the top.
    graph = {
        name: _imports(path, modules) - {"__init__"}
        for name, path in modules.items()
        if name != "__init__"
    }
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _code_lines(path):
    """Lines holding code: no blank lines, comments, docstrings or doc templates."""
    source = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.update(range(first.lineno, first.end_lineno + 1))
        if isinstance(node, ast.Assign) and isinstance(
            node.value, ast.Constant | ast.JoinedStr
        ):
            if node.end_lineno > node.lineno:  # a multi-line docstring template
                docs.update(range(node.lineno, node.end_lineno + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT}
    skip |= {tokenize.DEDENT, tokenize.ENDMARKER}
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docs)


def _sources():
    """Every source file of the package, by name: Python, .pyx and .pxd."""
    return {p.name: p for p in sorted(PACKAGE.glob("*.p[yx]*")) if p.suffix != ".pyc"}


def _cython_code_lines(path):
    """Lines of a .pyx or .pxd holding code: no blank lines, comments or
    docstrings (a triple-quoted string that is a statement of its own, or a
    ``__doc__``); C code a ``cdef extern`` block carries in a string counts."""
    lines, docstring, c_code, previous = 0, False, False, ""
    for line in path.read_text().splitlines():
        text = line.strip()
        if docstring:
            docstring = '"""' not in text
            continue
        if c_code:
            lines += bool(text)
            c_code = '"""' not in text
            continue
        if re.match(r'("""|[\w.]+__doc__ = """)', text):
            if previous.startswith("cdef extern"):
                lines, c_code = lines + 1, text.count('"""') == 1
            else:
                docstring = text.count('"""') == 1
            continue
        lines += bool(text) and not text.startswith("#")
        previous = text or previous
    return lines


def test_the_compiled_line_counter_skips_docstrings_and_comments(tmp_path):
    path = tmp_path / "x.pyx"
    path.write_text(
        '"""Module\ndoc."""\n\n# a comment\ncdef int f():\n    """One line."""\n'
        '    return 1\nf.__doc__ = """Two\nlines."""\ncdef extern from *:\n'
        '    """\n    int g(void);\n    """\n'
    )
    # cdef int f(), return 1, cdef extern, and the C block's three lines.
    assert _cython_code_lines(path) == 6


@pytest.mark.parametrize("name", sorted(_sources()))
def test_modules_stay_readable_in_one_sitting(name):
    path = _sources()[name]
    lines = (_code_lines if path.suffix == ".py" else _cython_code_lines)(path)
    assert lines <= MAX_CODE_LINES, (
        f"skbatchnet/{name} has {lines} code lines; split it by responsibility "
        f"(at most {MAX_CODE_LINES})."
    )
