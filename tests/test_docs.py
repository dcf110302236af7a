"""The README's code and every docstring example run, so neither can drift."""

import doctest
import importlib
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
MODULES = [
    "skbatchnet._mlp",
    "skbatchnet.backprop",
    "skbatchnet.batching",
    "skbatchnet.diagnostics",
    "skbatchnet.per_example",
    "skbatchnet.reduction",
    "skbatchnet.schedules",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "batchmlpclassifier__batch_size" in out  # the grid search printed
