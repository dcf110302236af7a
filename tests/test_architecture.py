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


# -- private names stay private -------------------------------------------------

# The package's compiled extensions: their source is a .pyx, and their names
# are read by the one module that wraps each of them.
COMPILED = {p.stem for p in PACKAGE.glob("*.pyx")}

# Private names one module still takes from another, each with its reason.
# Aim for none: a name another module needs is public.
IMPORTED_PRIVATE_NAMES = set()


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_imports(name, path, modules):
    """``(module, imported name)`` of each private name ``path`` takes from
    another module of the package, by import or as a module's attribute."""
    found, aliases = set(), {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:  # from . import module
                for a in node.names:
                    aliases[a.asname or a.name] = a.name
                continue
            source = node.module.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "skbatchnet."
        ):
            source = node.module.split(".")[1]
        else:
            continue
        if source != name and source not in COMPILED:
            found.update((source, a.name) for a in node.names if _private(a.name))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and aliases.get(node.value.id) in modules
            and aliases[node.value.id] not in COMPILED
            and _private(node.attr)
        ):
            found.add((aliases[node.value.id], node.attr))
    return found


def test_no_module_imports_another_modules_private_name():
    modules = set(_modules()) | COMPILED
    found = {
        (name, source, private)
        for name, path in _modules().items()
        for source, private in _private_imports(name, path, modules)
    }
    unexpected = found - IMPORTED_PRIVATE_NAMES
    assert not unexpected, (
        "modules take private names from other modules (module, from, name): "
        f"{sorted(unexpected)}; give the name a public one, or move it to a "
        "module both can import."
    )
    stale = IMPORTED_PRIVATE_NAMES - found
    assert not stale, f"remove the allow-list entries {sorted(stale)}"


# The tools built on the estimators: they reach an estimator only through its
# public attributes and its training seam (skbatchnet._context).
TOOLS = ["dask", "_dask_average", "_dask_data", "diagnostics", "plotting", "onnx"]

# Private attributes a tool may still read, with the reason. None of them is
# an estimator's.
TOOL_PRIVATE_ATTRIBUTES = {
    # A dask array's meta (an empty block of its type), which dask offers
    # under this name only.
    ("_dask_data", "_meta"),
}


def _foreign_private_attributes(path):
    """Private attributes ``path`` reads or writes on anything but ``self``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.add(node.args[1].value)
    return found


@pytest.mark.parametrize("name", TOOLS)
def test_tools_reach_estimators_only_through_the_seam(name):
    found = {(name, a) for a in _foreign_private_attributes(_modules()[name])}
    unexpected = found - TOOL_PRIVATE_ATTRIBUTES
    assert not unexpected, (
        f"skbatchnet/{name}.py reaches private attributes {sorted(unexpected)}; "
        "use the estimator's training_context() (skbatchnet/_context.py) or a "
        "public attribute instead."
    )


def test_private_name_checks_see_what_they_forbid(tmp_path):
    path = tmp_path / "tool.py"
    path.write_text(
        "from ._base import _hidden, visible\n"
        "from . import backprop\n"
        "def f(est):\n"
        "    est._rng = backprop._check_batch\n"
        "    getattr(est, '_progress', None)\n"
        "    return self._own, est.__class__\n"
    )
    assert _private_imports("tool", path, {"_base", "backprop"}) == {
        ("_base", "_hidden"),
        ("backprop", "_check_batch"),
    }
    assert _foreign_private_attributes(path) == {"_rng", "_check_batch", "_progress"}


def test_convergence_warnings_are_silenced_in_one_place():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert '"ignore::sklearn.exceptions.ConvergenceWarning"' in pyproject
    here = pathlib.Path(__file__).name
    for path in sorted(PACKAGE.parent.glob("tests/*.py")):
        text = path.read_text()
        if path.name == here:
            continue
        assert "ignore::sklearn.exceptions.ConvergenceWarning" not in text, path
        assert 'simplefilter("ignore", ConvergenceWarning)' not in text, path


def test_the_build_sees_every_pxd_a_module_cimports():
    # cythonize rebuilds a module when a .pxd it cimports changes, but only
    # the .pxd files its dependency scan finds: `from . cimport x` it misses.
    dependencies = pytest.importorskip("Cython.Build.Dependencies")
    tree = dependencies.create_dependency_tree()
    cimported = {
        pathlib.Path(p).name
        for module in PACKAGE.glob("*.pyx")
        for p in tree.all_dependencies(str(module))
    }
    assert {p.name for p in PACKAGE.glob("*.pxd")} <= cimported
