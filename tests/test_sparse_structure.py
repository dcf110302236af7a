"""Sparse input: malformed structure is refused, valid structure trains as dense.

scipy trusts a sparse matrix's index arrays, and so does the compiled loop,
which runs without bounds checks: an index out of range crashes the process
or trains on other memory. Every entry point checks the caller's arrays
first (``_validation.check_sparse_structure``).

The malformed cases run in one subprocess, which reports each case and entry
point as a line of JSON: a crash there fails the cases it did not report,
instead of killing pytest. Valid but unusual matrices (duplicates, unsorted
indices, spare storage, strided arrays, other formats) run there too, and
must give what their dense equal (scipy's ``toarray``) gives. Both kinds
must leave the caller's matrix and the estimator exactly as they were.
The Dask workers' checks are tested in tests/test_data_parallel.py, which
has a cluster.
"""

import copy
import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import Snapshot, use_numpy_epochs

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, _extension
from skbatchnet._compiled import CompiledEpochs
from skbatchnet.backprop import Network
from skbatchnet.diagnostics import gradient_noise_scale
from skbatchnet.per_example import (
    per_example_gradient_norms,
    per_example_gradients,
    per_example_input_gradients,
)
from skbatchnet.reduction import reduction_coefficients

N, D = 40, 5


def _dense():
    rng = np.random.RandomState(0)
    X = rng.randn(N, D)
    X[rng.rand(N, D) < 0.5] = 0.0
    X[np.arange(N), np.arange(N) % D] = 1.0 + rng.rand(N)  # no empty row
    return X


def _targets():
    rng = np.random.RandomState(1)
    y = _dense() @ rng.randn(D) + 0.1 * rng.randn(N)
    return y, np.digitize(y, [-0.5, 0.5])


def _csr():
    return sp.csr_matrix(_dense())


def _csc():
    return sp.csc_matrix(_dense())


def _set(M, **arrays):
    for name, value in arrays.items():
        setattr(M, name, value)
    return M


def _edit(make, attribute, position, value):
    """``make()`` with ``M.<attribute>[position] = value``."""

    def build():
        M = make()
        getattr(M, attribute)[position] = value
        return M

    return build


def _swap_indptr(make):
    def build():
        M = make()
        p = M.indptr
        i = int(np.flatnonzero(p[1:-1] < p[2:])[0]) + 1  # a row that is not empty
        p[i], p[i + 1] = p[i + 1], p[i]
        return M

    return build


def _split_duplicates(M):
    """``M`` (CSR or CSC) with every entry split in two stored entries of the
    same index, a quarter and the rest, each line's halves in reverse order:
    duplicate and unsorted indices, which stand for the same matrix."""
    indptr, indices, data = [0], [], []
    for line in range(M.indptr.size - 1):
        span = slice(M.indptr[line], M.indptr[line + 1])
        idx, val = M.indices[span][::-1], M.data[span][::-1]
        indices += [*idx, *idx]
        data += [*(0.25 * val), *(val - 0.25 * val)]
        indptr.append(len(indices))
    return type(M)((np.array(data), np.array(indices), np.array(indptr)), M.shape)


def _strided(M):
    """``M`` whose index and value arrays are every other element of larger
    ones; the indices in int64, which the loop's intp needs no copy of."""
    for name in ("data", "indices", "indptr"):
        a = getattr(M, name)
        a = a if name == "data" else a.astype(np.int64)
        setattr(M, name, np.repeat(a, 2)[::2])
    return M


def _spare_storage():
    """Stored entries after ``indptr[-1]``, with indices out of range: spare
    storage that scipy ignores, and so must training."""
    M = _csr()
    M.indices = np.r_[M.indices, 10**8, -5].astype(M.indices.dtype)
    M.data = np.r_[M.data, 3.0, 7.0]
    return M


def _typed_indices(dtype, value):
    def build():
        M = _csr()
        M.indices = M.indices.astype(dtype)
        M.indices[0] = value
        return M

    return build


def _coo_with(axis, value):
    """A COO matrix whose first ``axis`` ('row' or 'col') coordinate is ``value``."""

    def build():
        M = sp.coo_matrix(_dense())
        getattr(M, axis)[0] = value
        return M

    return build


def _lil_with_column(column):
    def build():
        M = sp.lil_matrix(_dense())
        M.rows[0] = [*M.rows[0][:-1], column]
        return M

    return build


def _dia_without_last_offset():
    M = sp.dia_matrix(_dense())
    M.offsets = M.offsets[:-1]
    return M


NNZ = _csr().nnz

# name: (builder, fragments the ValueError's message must hold)
MALFORMED = {
    "column 1e8": (_edit(_csr, "indices", 0, 10**8), ["X.indices[0] = 100000000"]),
    "column -1e8": (_edit(_csr, "indices", 0, -(10**8)), ["X.indices[0] = -100000000"]),
    "column -1": (_edit(_csr, "indices", 0, -1), ["X.indices[0] = -1 (in row 0)"]),
    "column n_features": (
        _edit(_csr, "indices", -1, D),
        [f"X.indices[{NNZ - 1}] = {D} (in row {N - 1})", f"[0, {D})"],
    ),
    "column 2**40, int64 indices": (
        _typed_indices(np.int64, 2**40),
        ["X.indices[0] = 1099511627776"],
    ),
    "column 2**63, uint64 indices": (
        _typed_indices(np.uint64, 2**63),
        ["X.indices[0] = 9223372036854775808"],
    ),
    "indptr entry beyond nnz": (
        _edit(_csr, "indptr", 10, NNZ + 100),
        [f"X.indptr[10] = {NNZ + 100} points beyond the {NNZ}"],
    ),
    "last indptr beyond nnz": (
        _edit(_csr, "indptr", -1, NNZ + 1),
        [f"X.indptr[{N}] = {NNZ + 1} points beyond"],
    ),
    "indptr decreasing": (_swap_indptr(_csr), ["X.indptr must not decrease"]),
    "indptr[0] != 0": (_edit(_csr, "indptr", 0, 1), ["X.indptr[0] must be 0"]),
    "indptr one short": (
        lambda: _set(_csr(), indptr=_csr().indptr[:-1]),
        [f"needs {N + 1} entries", f"got {N}"],
    ),
    "indptr one long": (
        lambda: _set(_csr(), indptr=np.r_[_csr().indptr, NNZ]),
        [f"needs {N + 1} entries", f"got {N + 2}"],
    ),
    "data shorter than indices": (
        lambda: _set(_csr(), data=_csr().data[:-1]),
        [f"got shape ({NNZ - 1},) for X.data and ({NNZ},) for X.indices"],
    ),
    "float indices": (
        lambda: _set(_csr(), indices=_csr().indices.astype(float)),
        ["X.indices must be a 1-D numpy array of integers"],
    ),
    "CSC row 1e8": (
        _edit(_csc, "indices", 0, 10**8),
        ["X.indices[0] = 100000000 (in column 0) is not a row"],
    ),
    "CSC row -1": (_edit(_csc, "indices", 0, -1), ["X.indices[0] = -1", "not a row"]),
    "CSC row n_samples": (
        _edit(_csc, "indices", -1, N),
        [f"= {N} (in column {D - 1}) is not a row", f"[0, {N})"],
    ),
    "CSC indptr decreasing": (
        _swap_indptr(_csc),
        ["X.indptr must not decrease (each column starts"],
    ),
    "CSC indptr beyond nnz": (
        _edit(_csc, "indptr", 2, NNZ + 100),
        [f"X.indptr[2] = {NNZ + 100} points beyond"],
    ),
    "CSC indptr length": (
        lambda: _set(_csc(), indptr=_csc().indptr[:-1]),
        [f"needs {D + 1} entries (one per column"],
    ),
    # scipy's own COO to CSR conversion writes out of bounds on this one.
    "COO row n_samples": (
        _coo_with("row", N),
        [f"X.row[0] = {N}", "row indices must lie in"],
    ),
    "COO column -1": (
        _coo_with("col", -1),
        ["X.col[0] = -1", "column indices must lie in"],
    ),
    "LIL column n_features": (_lil_with_column(D), [f"Row 0 of X holds column {D}"]),
    "BSR block column 1e8": (
        _edit(lambda: sp.bsr_matrix(_dense(), blocksize=(2, 1)), "indices", 0, 10**8),
        ["X.indices[0] = 100000000 (in block row 0) is not a block column"],
    ),
    # scipy's DIA to CSR conversion reads past the offsets here.
    "DIA offsets short": (
        _dia_without_last_offset,
        ["one row per entry of X.offsets"],
    ),
}

# The estimators convert every format; the network (and the per-example
# tools) slice rows, which COO and BSR matrices do not offer: they are tried
# with the estimators only.
ESTIMATORS_ONLY = {"COO duplicates", "BSR"}

VALID = {
    "CSR split duplicates, unsorted": lambda: _split_duplicates(_csr()),
    "CSC split duplicates, unsorted": lambda: _split_duplicates(_csc()),
    "COO duplicates": lambda: sp.coo_matrix(
        (np.r_[_csr().data * 0.5, _csr().data * 0.5], np.tile(_csr().nonzero(), 2)),
        shape=(N, D),
    ),
    "CSR spare storage": _spare_storage,
    "CSR strided arrays": lambda: _strided(_csr()),
    "CSC strided arrays": lambda: _strided(_csc()),
    "LIL": lambda: sp.lil_matrix(_dense()),
    "BSR": lambda: sp.bsr_matrix(_dense(), blocksize=(2, 1)),
}


# -- the entry points ----------------------------------------------------------


class _Fitted:
    """Estimators fitted on the valid CSR matrix, and a network; each entry
    point works on a deep copy, so a call that changed one is seen alone."""

    def __init__(self):
        X = _csr()
        self.y, self.labels = _targets()
        small = dict(hidden_layer_sizes=(6,), max_iter=3, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.reg1 = BatchMLPRegressor(batch_size=1, **small).fit(X, self.y)
            self.reg8 = BatchMLPRegressor(batch_size=8, **small).fit(X, self.y)
            self.clf = BatchMLPClassifier(batch_size=8, **small).fit(X, self.labels)
        self.net = Network.initialize([D, 6, 1], activation="tanh", random_state=0)


def _flat(est):
    return np.concatenate([a.ravel() for a in est.coefs_ + est.intercepts_])


def _fit(name, method="fit", labels=False):
    def call(M, f):
        est = copy.deepcopy(getattr(f, name))
        target = f.labels if labels else f.y
        return est, lambda: _flat(getattr(est, method)(M, target))

    return call


def _predicting(name, method, *args):
    def call(M, f):
        est = copy.deepcopy(getattr(f, name))
        return est, lambda: np.asarray(getattr(est, method)(M, *args))

    return call


def _noise_scale(M, f):
    est = copy.deepcopy(f.reg8)
    return est, lambda: gradient_noise_scale(est, M, f.y).b_simple


def _on_network(fn):
    def on_network(M, f):
        net = copy.deepcopy(f.net)
        return net, lambda: fn(net, M, f.y)

    return on_network


ENTRIES = {
    "fit, batch 1": _fit("reg1"),
    "fit, batch 8": _fit("reg8"),
    "fit, classifier": _fit("clf", labels=True),
    "partial_fit, batch 1": _fit("reg1", "partial_fit"),
    "partial_fit, batch 8": _fit("reg8", "partial_fit"),
    "predict": _predicting("reg8", "predict"),
    "predict_proba": _predicting("clf", "predict_proba"),
    "score": lambda M, f: _predicting("reg8", "score", f.y)(M, f),
    "gradient_noise_scale": _noise_scale,
    "per_example_gradient_norms": _on_network(
        lambda net, M, y: per_example_gradient_norms(net, M, y, alpha=0.1)
    ),
    "per_example_gradients": _on_network(
        lambda net, M, y: per_example_gradients(net, M, y, alpha=0.1)[0][0]
    ),
    "per_example_input_gradients": _on_network(per_example_input_gradients),
    "Network.forward": _on_network(lambda net, M, y: net.forward(M)),
    "Network.gradient": _on_network(
        lambda net, M, y: net.gradient(
            M, y, reduction_coefficients(None, N, "mean"), alpha=0.1
        )[1].copy()
    ),
    "Network.batch_gradient": _on_network(
        lambda net, M, y: net.batch_gradient(M, y, alpha=0.1)[1][0].copy()
    ),
}


def _entries(case):
    if case in ESTIMATORS_ONLY:
        return [e for e in ENTRIES if ENTRIES[e].__name__ != "on_network"]
    return list(ENTRIES)


def _fingerprint(M):
    """Everything of the caller's matrix a call could change, by value."""
    arrays = [
        (name, id(a), a.dtype.str, a.shape, a.strides, pickle.dumps(a))
        for name in ("data", "indices", "indptr", "row", "col", "rows", "offsets")
        if isinstance(a := getattr(M, name, None), np.ndarray)
    ]
    if isinstance(M, np.ndarray):
        arrays.append(("dense", M.tobytes()))
    return [type(M).__name__, getattr(M, "format", None), M.shape, M.dtype.str, arrays]


def _state(obj):
    return obj.parameters.tobytes() if isinstance(obj, Network) else Snapshot(obj)


def _unchanged(obj, state):
    if isinstance(obj, Network):
        return obj.parameters.tobytes() == state
    try:
        state.assert_matches(obj)
    except AssertionError:
        return False
    return True


def _outcome(case, entry, M, fitted):
    before = _fingerprint(M)
    obj, call = ENTRIES[entry](M, fitted)
    state = _state(obj)
    report = {"case": case, "entry": entry}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
        report.update(outcome="accepted", result=np.ravel(result).tolist())
    except Exception as error:  # reported, and judged by the test
        report.update(outcome=type(error).__name__, message=str(error))
    report["X unchanged"] = _fingerprint(M) == before
    report["state unchanged"] = _unchanged(obj, state)
    return report


def run_cases():
    """Run every case at every entry point; one line of JSON per result.

    Valid cases also run on their dense equal, whose results they must
    match. Run in a subprocess by the ``outcomes`` fixture.
    """
    fitted = _Fitted()
    for case, (build, _) in MALFORMED.items():
        for entry in ENTRIES:
            print(json.dumps(_outcome(case, entry, build(), fitted)), flush=True)
    for case, build in VALID.items():
        for entry in _entries(case):
            report = _outcome(case, entry, build(), fitted)
            dense = _outcome(case, entry, build().toarray(), fitted)
            report["dense result"] = dense.get("result")
            print(json.dumps(report), flush=True)


@pytest.fixture(scope="module")
def outcomes():
    """``{(case, entry): report}`` from one subprocess, and how it ended."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import {__name__} as cases; "
        "cases.run_cases()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    reports = [json.loads(line) for line in done.stdout.splitlines() if line]
    found = {(r["case"], r["entry"]): r for r in reports}
    order = [(c, e) for c in MALFORMED for e in ENTRIES]
    order += [(c, e) for c in VALID for e in _entries(c)]
    missing = [pair for pair in order if pair not in found]
    ending = (
        f"it ended with exit status {done.returncode} (a negative status is the "
        f"signal that killed it) while running {missing[0]}; stderr ends:\n"
        f"{done.stderr[-2000:]}"
        if missing
        else ""
    )
    return found, ending


def _report(outcomes, case, entry):
    found, ending = outcomes
    if (case, entry) not in found:
        pytest.fail(f"No result for {case!r} at {entry!r}: {ending}")
    return found[(case, entry)]


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_sparse_input_is_refused_at_every_entry_point(outcomes, case):
    fragments = MALFORMED[case][1]
    problems = []
    for entry in ENTRIES:
        report = _report(outcomes, case, entry)
        message = report.get("message", "")
        if report["outcome"] != "ValueError" or not all(
            f in message for f in fragments
        ):
            problems.append(f"{entry}: {report['outcome']}: {message[:300]!r}")
        elif "Build the matrix from its (row, column, value) triplets" not in message:
            problems.append(f"{entry}: the message names no fix: {message!r}")
        if not (report["X unchanged"] and report["state unchanged"]):
            problems.append(f"{entry}: changed X or the estimator: {report}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", list(VALID))
def test_valid_sparse_input_is_accepted_and_equals_its_dense_equal(outcomes, case):
    problems = []
    for entry in _entries(case):
        report = _report(outcomes, case, entry)
        if report["outcome"] != "accepted":
            problems.append(f"{entry}: {report['outcome']}: {report['message']!r}")
            continue
        got, dense = np.array(report["result"]), report["dense result"]
        if dense is None or not np.allclose(got, dense, rtol=1e-9, atol=1e-12):
            problems.append(f"{entry}: differs from the dense fit: {got} vs {dense}")
        if not report["X unchanged"]:
            problems.append(f"{entry}: changed the caller's matrix")
    assert not problems, "\n".join(problems)


def test_the_valid_cases_are_what_they_claim():
    """The oracle's premises: duplicates and unsorted indices are stored as
    such, the spare storage is there, the arrays are strided."""
    split = VALID["CSR split duplicates, unsorted"]()
    assert split.nnz == 2 * _csr().nnz and not split.has_canonical_format
    np.testing.assert_allclose(split.toarray(), _dense(), rtol=1e-15)
    assert VALID["COO duplicates"]().nnz == 2 * NNZ
    spare = VALID["CSR spare storage"]()
    assert spare.indices.size == spare.indptr[-1] + 2
    strided = VALID["CSR strided arrays"]()
    assert not any(
        getattr(strided, a).flags.c_contiguous for a in ("data", "indices", "indptr")
    )
    assert strided.indices.dtype == np.int64


# -- duplicates and strided arrays through each tier --------------------------


def _fits(M, tier, monkeypatch, **params):
    """A fit on ``M`` and one on ``M.toarray()``, through ``tier``."""
    made = []
    original = CompiledEpochs.__init__

    def spy(self, *args, **kwargs):
        made.append(True)
        original(self, *args, **kwargs)

    monkeypatch.setattr(CompiledEpochs, "__init__", spy)
    if tier == "numpy":
        use_numpy_epochs(monkeypatch)
    y, _ = _targets()
    settings = dict(
        hidden_layer_sizes=(7,), max_iter=8, random_state=0, learning_rate_init=0.01
    )
    settings.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = BatchMLPRegressor(**settings).fit(M, y)
        dense = BatchMLPRegressor(**settings).fit(M.toarray(), y)
    assert bool(made) == (tier == "compiled")  # the tier asked for ran
    return sparse, dense


@pytest.mark.parametrize("tier", ["compiled", "numpy"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [1, 8, "full"])
def test_split_duplicates_fit_as_their_sum(monkeypatch, tier, solver, batch_size):
    """A CSR row holding one column twice stands for the sum of the two
    values, in the one-row gather of batch 1 as in larger batches."""
    X = _split_duplicates(_csr())
    before = _fingerprint(X)
    sparse, dense = _fits(X, tier, monkeypatch, solver=solver, batch_size=batch_size)
    np.testing.assert_allclose(_flat(sparse), _flat(dense), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-9)
    assert _fingerprint(X) == before  # the duplicates were not summed in place


@pytest.mark.parametrize("tier", ["compiled", "numpy"])
@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("to_format", [sp.csr_matrix, sp.csc_matrix])
def test_strided_arrays_fit_as_contiguous_ones(
    monkeypatch, tier, batch_size, to_format
):
    """Strided ``data``, ``indices`` and ``indptr`` are copied for the loop,
    which reads contiguous memory; the caller's arrays stay as they were."""
    X = _strided(to_format(_dense()))
    before = _fingerprint(X)
    sparse, dense = _fits(X, tier, monkeypatch, batch_size=batch_size)
    np.testing.assert_allclose(_flat(sparse), _flat(dense), rtol=1e-9, atol=1e-12)
    assert _fingerprint(X) == before
    assert not X.data.flags.c_contiguous


CSR_CASES = [
    case
    for case, (build, _) in MALFORMED.items()
    if build().format == "csr" and case != "float indices"
]


@pytest.mark.parametrize("case", CSR_CASES)
def test_the_epoch_plan_refuses_a_csr_matrix_its_loop_cannot_read(case):
    """The plan does not rely on its callers: the loop reads every index it
    holds without bounds checks. Building a plan runs no loop, so a missing
    check fails here without a crash."""
    modules = _extension.epoch_module()
    if modules is None:
        pytest.skip("the compiled extension is not built")
    build, fragments = MALFORMED[case]
    net = Network.initialize([D, 6, 1], random_state=0)
    with pytest.raises(ValueError) as refused:
        modules[1].EpochPlan(
            net.layer_units,
            build(),
            np.zeros((N, 1)),
            None,
            [[0, N]],
            activation=0,
            loss=0,
            reduction=0,
            alpha=0.0,
            total_weight=float(N),
            chunk_rows=8,
        )
    assert all(f in str(refused.value) for f in fragments), str(refused.value)
