"""The extras install what they promise: ``pip install ".[docs]"`` alone
builds the docs.

The docs build imports every module the API page documents and runs every
gallery example, so the docs extra (with the package's own dependencies)
must provide every package those import. The imports are read from the
sources; the packages that provide them, from the installed distributions.
"""

import ast
import importlib.metadata
import pathlib
import re
import sys

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skbatchnet"


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _provided(requirements):
    """Distributions a list of requirements installs by name: each one, and
    the extras in brackets (dask[distributed] installs distributed)."""
    out = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", requirement)
        out.add(_normalized(match[1]))
        out.update(_normalized(e) for e in (match[2] or "").split(",") if e.strip())
    return out


def _documented_modules():
    """The modules the API page documents: each ``currentmodule``, and the
    modules listed under ``currentmodule:: skbatchnet``."""
    text = (ROOT / "docs" / "api.rst").read_text()
    modules = set(re.findall(r"^\.\. currentmodule:: (\S+)", text, re.M))
    for block in re.split(r"^\.\. currentmodule:: ", text, flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        for entry in re.findall(r"^   ([a-z_]\w*)$", body, re.M):
            if (PACKAGE / f"{entry}.py").exists() and name == "skbatchnet":
                modules.add(f"skbatchnet.{entry}")
    return modules


def _module_level_imports(tree, top_level_only):
    """Imported names at module level (inside a top-level ``try`` too), or
    anywhere; relative imports as ``.name``."""
    nodes = ast.walk(tree) if not top_level_only else _top_level(tree.body)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add("." + (node.module or ""))
            else:
                found.add(node.module)
    return found


def _top_level(body):
    for node in body:
        yield node
        if isinstance(node, ast.Try):
            yield from _top_level(node.body)


def _third_party_imports():
    """Top-level packages that the documented modules (and the package
    modules they import at module level) and the gallery examples import."""
    seen, queue, names = set(), sorted(_documented_modules()), set()
    while queue:
        module = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")[1:] or ["__init__"]
        path = PACKAGE.joinpath(*parts[:-1], f"{parts[-1]}.py")
        for name in _module_level_imports(ast.parse(path.read_text()), True):
            if name.startswith("."):
                if name[1:] and (PACKAGE / f"{name[1:]}.py").exists():
                    queue.append(f"skbatchnet.{name[1:]}")
            else:
                names.add(name.split(".")[0])
    for example in sorted((ROOT / "docs" / "examples").glob("plot_*.py")):
        tree = ast.parse(example.read_text())
        names.update(n.split(".")[0] for n in _module_level_imports(tree, False))
    names -= set(sys.stdlib_module_names) | {"skbatchnet", "__future__"}
    return names


def test_the_documented_modules_include_the_optional_ones():
    # What the test below would miss if the page were parsed wrongly.
    assert {"skbatchnet.dask", "skbatchnet.plotting"} <= _documented_modules()
    assert {"dask", "distributed", "matplotlib"} <= _third_party_imports()


def test_the_docs_extra_provides_every_package_the_docs_import():
    project = _project()
    extra = project["optional-dependencies"]["docs"]
    available = _provided(extra) | _provided(project["dependencies"])
    providers = importlib.metadata.packages_distributions()
    missing = {
        name: providers.get(name, [name])
        for name in _third_party_imports()
        if not {_normalized(d) for d in providers.get(name, [name])} & available
    }
    assert not missing, f"the docs extra installs none of {missing}"


def test_the_docs_extra_repeats_the_dask_extra():
    extras = _project()["optional-dependencies"]
    assert set(extras["dask"]) <= set(extras["docs"])
