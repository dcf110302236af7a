"""Each option is one registry entry, and the entry carries its compiled code.

The codes are defined once, in ``skbatchnet/_codes.py``; ``_kernels.pxd``
declares the same members, which the first test holds equal. Every built-in
entry has a code, and its kernel computes what its numpy functions compute
(one compiled epoch against the numpy specification's, per entry). An entry
added without a code trains on the numpy path, with a warning given once. And
the package runs, on that path, from a copy without its extension modules.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from skbatchnet import _codes
from skbatchnet._activations import ACTIVATIONS, Activation
from skbatchnet._compiled import CompiledEpochs
from skbatchnet._losses import LOSSES
from skbatchnet._optimizers import SGD, SOLVERS, Adam
from skbatchnet._training import NumpyEpochs, Step, TrainingData, epoch_runner
from skbatchnet.backprop import Network
from skbatchnet.batching import Minibatcher
from skbatchnet.reduction import REDUCTIONS

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "skbatchnet"
ENUMS = [
    _codes.ActivationCode,
    _codes.LossCode,
    _codes.ReductionCode,
    _codes.SolverCode,
    _codes.Status,
]


def _pxd_enums():
    """``{enum name: {member: value}}`` of the ``cdef enum`` blocks of _kernels.pxd."""
    enums, current = {}, None
    for line in (PACKAGE / "_kernels.pxd").read_text().splitlines():
        header = re.match(r"cdef enum (\w+):", line)
        member = re.match(r"    (\w+) = (\d+)$", line)
        if header:
            current = enums.setdefault(header.group(1), {})
        elif member and current is not None:
            current[member.group(1)] = int(member.group(2))
        elif line and not line.startswith(" "):
            current = None
    return enums


def test_the_compiled_codes_are_the_python_codes():
    expected = {e.__name__: {m.name: m.value for m in e} for e in ENUMS}
    assert _pxd_enums() == expected


def test_the_enum_reader_reads_members():
    enums = _pxd_enums()
    assert enums["ActivationCode"]["RELU"] == 3 and enums["Status"]["OK"] == 0


ENTRIES = (
    [("activation", name) for name in ACTIVATIONS]
    + [("loss", name) for name in LOSSES]
    + [("reduction", name) for name in REDUCTIONS]
    + [("solver", name) for name, s in SOLVERS.items() if s.stochastic]
)


def _code(kind, name):
    registry = {"activation": ACTIVATIONS, "loss": LOSSES, "reduction": REDUCTIONS}
    if kind == "solver":
        return SOLVERS[name].code
    return registry[kind][name].code


@pytest.mark.parametrize("kind, name", ENTRIES)
def test_every_built_in_entry_has_a_code(kind, name):
    code = _code(kind, name)
    enum = {
        "activation": _codes.ActivationCode,
        "loss": _codes.LossCode,
        "reduction": _codes.ReductionCode,
        "solver": _codes.SolverCode,
    }[kind]
    assert isinstance(code, enum), f"the {kind} {name!r} has no compiled code"
    # One code per entry: two entries sharing a kernel would be one option.
    assert sorted(_code(k, n) for k, n in ENTRIES if k == kind) == sorted(enum)


def _problem(kind, name, rng):
    """A small fit whose options are the defaults but for ``kind=name``."""
    options = {
        "activation": "tanh",
        "loss": "squared_error",
        "reduction": "mean",
        "solver": "sgd",
        kind: name,
    }
    X = rng.randn(30, 4)
    n_out = 3 if options["loss"] == "log_loss" else 2
    if options["loss"] == "log_loss":
        Y = np.eye(3)[rng.randint(0, 3, 30)]
    elif options["loss"] in ("binary_log_loss", "poisson"):
        Y = rng.randint(0, 2, (30, n_out)).astype(float)
    else:
        Y = rng.randn(30, n_out)
    w = rng.uniform(0.5, 2.0, 30)
    net = Network.initialize(
        [4, 6, n_out],
        activation=options["activation"],
        loss=options["loss"],
        random_state=0,
    )
    return net, TrainingData(X, Y, w, w.sum()), options


def _optimizer(solver, params):
    if solver == "adam":
        return Adam(params, learning_rate_init=0.01)
    return SGD(params, 0.05, "constant", 0.9, True)


@pytest.mark.parametrize("kind, name", ENTRIES)
def test_every_built_in_entry_has_a_kernel_that_computes_its_math(kind, name):
    net, data, options = _problem(kind, name, np.random.RandomState(0))
    step = Step(alpha=0.1, reduction=options["reduction"])
    batcher = Minibatcher(4)
    paths = []
    for runner in (CompiledEpochs, NumpyEpochs):
        copy = Network(
            net.coefs, net.intercepts, activation=net.activation, loss=net.loss
        )
        optimizer = _optimizer(options["solver"], [copy.parameters])
        sums = runner(copy, data, batcher, step).run(
            np.random.RandomState(1).permutation(30), optimizer, None
        )
        paths.append((sums, copy.parameters))
    (compiled, compiled_params), (numpy_sums, numpy_params) = paths
    assert compiled.steps == numpy_sums.steps == 8
    assert compiled.loss_sum == pytest.approx(numpy_sums.loss_sum, rel=1e-12)
    np.testing.assert_allclose(compiled_params, numpy_params, rtol=1e-12, atol=1e-15)
    assert not np.allclose(numpy_params, net.parameters)  # it trained


def _softsign(Z):
    Z /= 1 + np.abs(Z)
    return Z


def _softsign_derivative(A, delta):
    delta *= (1 - np.abs(A)) ** 2
    return delta


def test_an_entry_without_a_kernel_trains_on_the_numpy_path_warning_once(
    monkeypatch,
):
    monkeypatch.setitem(
        ACTIVATIONS, "softsign", Activation("softsign", _softsign, _softsign_derivative)
    )
    monkeypatch.setattr("skbatchnet._compiled._warned", set())
    net, data, _ = _problem("activation", "softsign", np.random.RandomState(0))
    step = Step(alpha=0.0, reduction="mean")
    optimizer = _optimizer("sgd", [net.parameters])
    with pytest.warns(RuntimeWarning, match="activation='softsign' has no compiled"):
        runner = epoch_runner(net, data, Minibatcher(4), optimizer, step)
    assert isinstance(runner, NumpyEpochs)
    before = net.parameters.copy()
    assert runner.run(None, optimizer, None).steps == 8
    assert not np.allclose(before, net.parameters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = epoch_runner(net, data, Minibatcher(4), optimizer, step)  # silent
    assert isinstance(again, NumpyEpochs)


def test_a_copy_without_the_extension_imports_fits_and_warns_once(tmp_path):
    copy = tmp_path / "skbatchnet"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    assert not list(copy.glob("*.so")) and list(copy.glob("*.pyx"))
    # An editable install's finder maps the checkout's extension modules by
    # name, wherever the package was imported from: the script drops it.
    script = textwrap.dedent(
        """
        import sys
        editable = lambda finder: "__editable__" in getattr(finder, "__module__", "")
        sys.meta_path = [f for f in sys.meta_path if not editable(f)]
        import warnings
        import numpy as np
        import skbatchnet
        from skbatchnet import BatchMLPRegressor, _extension
        assert skbatchnet.__file__.startswith({!r}), skbatchnet.__file__
        assert _extension.epoch_module() is None
        X = np.random.RandomState(0).randn(40, 3)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            for batch_size in (1, 8):
                model = BatchMLPRegressor(
                    hidden_layer_sizes=(5,), batch_size=batch_size, max_iter=3,
                    random_state=0,
                ).fit(X, X.sum(axis=1))
        built = [w for w in record if "not built" in str(w.message)]
        assert len(built) == 1, [str(w.message) for w in record]
        print(model.n_iter_, np.isfinite(model.predict(X)).all())
        """
    ).format(str(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "True"]
