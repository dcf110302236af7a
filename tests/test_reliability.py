"""Reliability: nothing is lost under bad input, divergence, interruption,
concurrency or a restart.

Everything here goes through the public API (``fit``, ``partial_fit``,
``predict``, ``predict_proba``, fitted attributes, pickle). The state
comparisons walk ``vars(est)`` generically, private attributes included, so
they do not depend on how the parameters are stored.
"""

import concurrent.futures
import functools
import math
import pickle
import re
import subprocess
import sys
import textwrap
import threading
import types
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

import skbatchnet.backprop
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = dict(hidden_layer_sizes=(6,), random_state=0)


def _data(n=40, n_features=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    y_reg = X @ rng.randn(n_features) + 0.1 * rng.randn(n)
    y_cls = np.arange(n) % 3
    rng.shuffle(y_cls)
    return X, y_reg, y_cls


def _weights(est):
    return [np.array(a, copy=True) for a in est.coefs_ + est.intercepts_]


def _bitwise_equal(a, b):
    return len(a) == len(b) and all(
        u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
        for u, v in zip(a, b)
    )


# -- a generic, deep comparison of the whole estimator state ------------------

_ATOMS = (type(None), bool, int, float, complex, str, bytes, np.generic)
_BY_REFERENCE = (type, types.FunctionType, types.BuiltinFunctionType, functools.partial)


def _children(obj):
    """(key, child) pairs of a container or plain object, in a stable order."""
    if isinstance(obj, dict):
        return sorted(obj.items(), key=lambda kv: repr(kv[0]))
    if isinstance(obj, (list, tuple)):
        return list(enumerate(obj))
    if isinstance(obj, (set, frozenset)):
        return []
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return sorted(vars(obj).items())
    return []


def _rng_state(obj):
    if isinstance(obj, np.random.RandomState):
        return obj.get_state(legacy=False)
    return obj.bit_generator.state


def _differences(a, b, path="est", _active=None):
    """Paths at which ``a`` and ``b`` differ (values, types, dtypes, bytes)."""
    active = set() if _active is None else _active
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} != {type(b).__name__}"]
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{path}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"]
        if a.dtype.hasobject:
            same = all(
                not _differences(u, v)
                for u, v in zip(a.ravel().tolist(), b.ravel().tolist())
            )
        else:
            same = (
                np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
            )
        return [] if same else [f"{path}: array values differ"]
    if isinstance(a, (np.random.RandomState, np.random.Generator)):
        return _differences(_rng_state(a), _rng_state(b), f"{path}.<rng state>")
    if isinstance(a, _BY_REFERENCE):
        same = a is b or pickle.dumps(a) == pickle.dumps(b)
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, _ATOMS):
        # repr is exact for floats: it tells 0.0 from -0.0 and keeps every bit
        # of the value; NaN compares equal to NaN here.
        return [] if repr(a) == repr(b) else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, (set, frozenset)):
        return [] if a == b else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, set(a) ^ set(b)))} differ"]
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
    elif hasattr(a, "__dict__"):
        if set(vars(a)) != set(vars(b)):
            keys = sorted(set(vars(a)) ^ set(vars(b)))
            return [f"{path}: attributes {keys} differ"]
    else:
        try:
            same = bool(a == b) or pickle.dumps(a) == pickle.dumps(b)
        except Exception:
            same = False
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    if (id(a), id(b)) in active:  # a cycle: compared further up
        return []
    active.add((id(a), id(b)))
    out = []
    for (key, u), (_, v) in zip(_children(a), _children(b)):
        out += _differences(u, v, f"{path}[{key!r}]", active)
    active.discard((id(a), id(b)))
    return out


def _sharing(root):
    """Which parts of ``root`` are one and the same object, as pairs of paths.

    A rollback that copies attributes one by one loses these links even when
    every value is right (views of one buffer are not compared: they are
    values, and a rebuilt buffer is as good as the old one).
    """
    seen, pairs = {}, set()

    def walk(obj, path):
        if isinstance(obj, _ATOMS + _BY_REFERENCE):
            return
        if isinstance(obj, (tuple, frozenset)):
            # immutable: copies and originals are interchangeable
            for key, child in _children(obj):
                walk(child, f"{path}[{key!r}]")
            return
        if id(obj) in seen:
            pairs.add((seen[id(obj)], path))
            return
        seen[id(obj)] = path
        if not isinstance(obj, np.ndarray):
            for key, child in _children(obj):
                walk(child, f"{path}[{key!r}]")

    for key, value in sorted(vars(root).items()):
        walk(value, key)
    return pairs


class _Snapshot:
    """An independent copy of an estimator's full state, to compare against."""

    def __init__(self, est):
        self.blob = pickle.dumps(dict(vars(est)))
        self.sharing = _sharing(est)

    def assert_matches(self, est):
        then = pickle.loads(self.blob)
        now = dict(vars(est))
        diffs = _differences(then, now)
        assert not diffs, "state changed:\n" + "\n".join(diffs[:20])
        lost = sorted(self.sharing - _sharing(est))
        new = sorted(_sharing(est) - self.sharing)
        assert not lost and not new, f"shared objects changed: lost {lost}, new {new}"


def _arrays(obj, seen=None):
    """Writable float arrays reachable from ``obj``."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, _ATOMS + _BY_REFERENCE):
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        ok = obj.dtype.kind == "f" and obj.flags.writeable
        return [obj] if ok else []
    return [a for _, child in _children(obj) for a in _arrays(child, seen)]


def _find(est, cls):
    """The first object of type ``cls`` reachable from the estimator's state."""
    stack = [v for _, v in sorted(vars(est).items(), reverse=True)]
    seen = set()
    while stack:
        obj = stack.pop()
        if isinstance(obj, cls):
            return obj
        if id(obj) in seen or isinstance(obj, _ATOMS + _BY_REFERENCE):
            continue
        seen.add(id(obj))
        stack += [child for _, child in reversed(_children(obj))]
    raise AssertionError(f"no {cls.__name__} in the estimator state")


def test_snapshot_sees_every_kind_of_change():
    # The comparison itself must be able to fail: each change below is one a
    # faulty rollback could make.
    X, y, _ = _data()
    est = BatchMLPRegressor(solver="adam", batch_size=8, **SMALL)
    est.partial_fit(X, y).partial_fit(X, y)

    def changed(mutate):
        other = pickle.loads(pickle.dumps(est))
        snap = _Snapshot(other)
        mutate(other)
        with pytest.raises(AssertionError):
            snap.assert_matches(other)

    _Snapshot(est).assert_matches(est)
    changed(lambda e: e.coefs_[0].__setitem__((0, 0), e.coefs_[0][0, 0] * -1))
    last = -1  # one bit of one bias
    changed(
        lambda e: e.intercepts_[last].__setitem__(
            0, np.nextafter(e.intercepts_[last][0], 9)
        )
    )
    changed(lambda e: e.loss_curve_.append(1.0))
    changed(lambda e: setattr(e, "t_", e.t_ + 1))
    changed(lambda e: setattr(e, "new_attribute_", 1))
    changed(lambda e: _find(e, np.random.RandomState).uniform())  # random stream
    changed(lambda e: e.coefs_.__setitem__(0, e.coefs_[0].astype(np.float32)))

    def bump_hidden_array(e):
        # optimizer state, found without naming it: an array reachable from a
        # private attribute that shares no memory with the fitted parameters
        params = e.coefs_ + e.intercepts_
        for key, value in sorted(vars(e).items()):
            if key.startswith("_"):
                for a in _arrays(value):
                    if a.size and not any(np.may_share_memory(a, p) for p in params):
                        a.flat[0] += 1.0
                        return
        raise AssertionError("no optimizer state found")

    changed(bump_hidden_array)

    # Aliasing: two attributes that were one object become two copies.
    other = pickle.loads(pickle.dumps(est))
    other.shared_a_, other.shared_b_ = [1.0], None
    other.shared_b_ = other.shared_a_
    snap = _Snapshot(other)
    other.shared_b_ = list(other.shared_b_)
    with pytest.raises(AssertionError, match="shared"):
        snap.assert_matches(other)


# -- 1. atomic partial_fit ---------------------------------------------------

X40, Y_REG40, Y_CLS40 = _data()


def _bad(kind, X, y):
    """(X, y, kwargs) of a partial_fit call that must fail, and the error."""
    rng = np.random.RandomState(1)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    cases = {
        "X-nan": ((Xn, y, {}), ValueError),
        "X-inf": ((np.where(X > 2, np.inf, X), y, {}), ValueError),
        "X-n-features": ((X[:, :3], y, {}), ValueError),
        "y-length": ((X, y[:-1], {}), ValueError),
        "weight-negative": (
            (X, y, {"sample_weight": np.r_[-1.0, np.ones(len(y) - 1)]}),
            ValueError,
        ),
        "weight-nan": (
            (X, y, {"sample_weight": np.r_[np.nan, np.ones(len(y) - 1)]}),
            ValueError,
        ),
        "weight-length": ((X, y, {"sample_weight": np.ones(3)}), ValueError),
        "weight-all-zero": ((X, y, {"sample_weight": np.zeros(len(y))}), ValueError),
        # Diverges inside the third call, after minibatch steps were taken.
        "non-finite-loss": ((np.sign(X) * 1e308, y, {}), ValueError),
    }
    if kind == "classifier":
        cases["unseen-label"] = ((X, np.where(y == 2, 7, y), {}), ValueError)
        cases["other-classes"] = ((X, y, {"classes": [0, 1, 2, 3]}), ValueError)
    else:
        yn = y.copy()
        yn[5] = np.nan
        cases["y-nan"] = ((X, yn, {}), ValueError)
        cases["y-n-outputs"] = ((X, rng.randn(len(y), 2), {}), ValueError)
    return cases


BAD_CASES = sorted(
    {
        (kind, name)
        for kind in ("classifier", "regressor")
        for name in _bad(kind, X40, Y_REG40)
    }
)


def _two_partial_fits(kind, solver, random_state=0):
    kw = dict(SMALL, random_state=random_state)
    if kind == "classifier":
        est = BatchMLPClassifier(solver=solver, batch_size=7, **kw)
        est.partial_fit(X40, Y_CLS40, classes=[0, 1, 2]).partial_fit(X40, Y_CLS40)
        return est, Y_CLS40
    est = BatchMLPRegressor(solver=solver, batch_size=7, **kw)
    est.partial_fit(X40, Y_REG40).partial_fit(X40, Y_REG40)
    return est, Y_REG40


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind, case", BAD_CASES)
def test_failed_partial_fit_changes_nothing(kind, case, solver):
    est, y = _two_partial_fits(kind, solver)
    (X_bad, y_bad, kwargs), error = _bad(kind, X40, y)[case]
    snap = _Snapshot(est)
    with pytest.raises(error):
        est.partial_fit(X_bad, y_bad, **kwargs)
    snap.assert_matches(est)
    assert (est.n_iter_, est.t_, len(est.loss_curve_)) == (2, 80, 2)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", ["X-nan", "non-finite-loss"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_failed_partial_fit_with_random_state_instance_changes_nothing(
    kind, solver, case
):
    # random_state=RandomState(...) is advanced in place by training, so it is
    # part of the state a failed call must leave as it was; so is its being
    # the stream that training draws from.
    est, y = _two_partial_fits(kind, solver, np.random.RandomState(0))
    (X_bad, y_bad, kwargs), error = _bad(kind, X40, y)[case]
    snap = _Snapshot(est)
    with pytest.raises(error):
        est.partial_fit(X_bad, y_bad, **kwargs)
    snap.assert_matches(est)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(
    "Est, y, params",
    [
        (BatchMLPRegressor, Y_REG40, dict(solver="sgd", learning_rate_init=1e3)),
        (BatchMLPClassifier, Y_CLS40, dict(solver="sgd", learning_rate_init=1e20)),
    ],
    ids=["regressor", "classifier"],
)
def test_partial_fit_diverging_from_huge_learning_rate_changes_nothing(Est, y, params):
    # One step on one row stays finite, twice; the next pass diverges.
    est = Est(batch_size=5, **params, **SMALL)
    kw = {"classes": [0, 1, 2]} if Est is BatchMLPClassifier else {}
    est.partial_fit(X40[:1], y[:1], **kw).partial_fit(X40[1:2], y[1:2])
    snap = _Snapshot(est)
    with pytest.raises(ValueError, match="learning_rate_init"):
        est.partial_fit(X40, y)
    snap.assert_matches(est)


class _Fault(Exception):
    pass


def _fail_at_call(monkeypatch, k, exc):
    """Make the k-th minibatch gradient (1-based) raise ``exc``."""
    original = skbatchnet.backprop.Network.gradient
    calls = {"n": 0}

    def batch_gradient(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise exc
        return original(self, *args, **kwargs)

    monkeypatch.setattr(skbatchnet.backprop.Network, "gradient", batch_gradient)
    return calls


@pytest.mark.parametrize("exc", [_Fault("disk on fire"), MemoryError()])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_unexpected_error_mid_epoch_changes_nothing(monkeypatch, kind, solver, exc):
    # 40 rows in batches of 7: the third step is in the middle of the pass,
    # after the weights, the optimizer state and the random stream moved.
    est, y = _two_partial_fits(kind, solver)
    snap = _Snapshot(est)
    calls = _fail_at_call(monkeypatch, 3, exc)
    with pytest.raises(type(exc)):
        est.partial_fit(X40, y)
    assert calls["n"] == 3
    snap.assert_matches(est)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", ["X-nan", "non-finite-loss"])
@pytest.mark.parametrize("random_state", [0, "instance"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_failed_partial_fit_is_invisible_later(kind, solver, random_state, case):
    # A failed call in the middle of a run changes nothing that follows: the
    # run ends in exactly the state of a run that never made the call.
    def rs():
        return np.random.RandomState(0) if random_state == "instance" else 0

    clean, y = _two_partial_fits(kind, solver, rs())
    failed, _ = _two_partial_fits(kind, solver, rs())
    (X_bad, y_bad, kwargs), error = _bad(kind, X40, y)[case]
    with pytest.raises(error):
        failed.partial_fit(X_bad, y_bad, **kwargs)
    for est in (clean, failed):
        est.partial_fit(X40, y).partial_fit(X40[::-1], y[::-1])
    # fit after partial_fit draws from random_state again
    for est in (clean, failed):
        est.set_params(warm_start=True, max_iter=2).fit(X40, y)
    _Snapshot(clean).assert_matches(failed)


# -- 2. divergence -------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _count_steps(monkeypatch):
    """Record whether each minibatch loss was finite, in order."""
    original = skbatchnet.backprop.Network.gradient
    finite = []

    def batch_gradient(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        finite.append(bool(np.isfinite(result[0])))
        return result

    monkeypatch.setattr(skbatchnet.backprop.Network, "gradient", batch_gradient)
    return finite


DIVERGING = {
    # huge learning rate, unscaled data
    "sgd-lr-1e3": (
        BatchMLPRegressor,
        dict(solver="sgd", learning_rate_init=1e3, batch_size=10),
        100.0,
        60,
    ),
    # 'sum' with big batches at the default rate, data not scaled
    "sum-big-batches": (
        BatchMLPRegressor,
        dict(solver="sgd", gradient_reduction="sum", batch_size=200),
        10.0,
        400,
    ),
    "classifier-sgd": (
        BatchMLPClassifier,
        dict(solver="sgd", learning_rate_init=1e20, batch_size=1),
        1.0,
        40,
    ),
    # The loss of the only step is finite; the step itself overflows.
    "last-step-overflows": (
        BatchMLPRegressor,
        dict(solver="sgd", learning_rate_init=1e300, batch_size="full", max_iter=1),
        1e10,
        30,
    ),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", sorted(DIVERGING))
def test_divergence_message_names_epoch_batch_rate_and_remedies(monkeypatch, case):
    Est, params, scale, n = DIVERGING[case]
    X, y_reg, y_cls = _data(n=n)
    y = y_cls if Est is BatchMLPClassifier else y_reg * scale
    params = {"max_iter": 20, **params}
    n_batches = {10: n // 10, 200: n // 200, 1: n, "full": 1}[params["batch_size"]]
    finite = _count_steps(monkeypatch)
    est = Est(**params, **SMALL)
    with pytest.raises(ValueError) as info:
        est.fit(X * scale, y)
    msg = str(info.value)
    # where it happened: the first non-finite batch loss, or else the last
    # step taken (whose update overflowed)
    step = finite.index(False) if False in finite else len(finite) - 1
    epoch, batch = divmod(step, n_batches)
    assert re.search(rf"\bepoch {epoch + 1}\b", msg), msg
    assert re.search(rf"\bbatch {batch + 1}\b", msg), msg
    assert re.search("learning.rate", msg), msg
    lr = params["learning_rate_init"] if "learning_rate_init" in params else 1e-3
    numbers = [float(x) for x in _NUMBER.findall(msg)]
    assert any(math.isclose(x, lr, rel_tol=1e-3) for x in numbers), msg
    assert "learning_rate_init" in msg
    assert "StandardScaler" in msg or "scale" in msg.lower()
    assert ("'mean'" in msg) == (params.get("gradient_reduction") == "sum"), msg
    assert not hasattr(est, "coefs_")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize(
    "Est, y, diverging",
    [
        (BatchMLPRegressor, Y_REG40, dict(learning_rate_init=1e3)),
        (
            BatchMLPRegressor,
            Y_REG40,
            dict(gradient_reduction="sum", learning_rate_init=1.0),
        ),
        (BatchMLPClassifier, Y_CLS40, dict(learning_rate_init=1e20)),
    ],
    ids=["regressor-lr", "regressor-sum", "classifier-lr"],
)
def test_diverging_refit_keeps_previous_fit(Est, y, diverging, warm_start):
    est = Est(solver="sgd", batch_size=10, max_iter=5, **SMALL).fit(X40, y)
    est.set_params(warm_start=warm_start, **diverging)
    snap = _Snapshot(est)
    expected = est.predict(X40)
    with pytest.raises(ValueError, match="learning_rate_init"):
        est.fit(X40, y)
    snap.assert_matches(est)
    assert np.array_equal(est.predict(X40), expected)


TASKS = ["squared_error", "poisson", "binary", "multiclass", "multilabel"]


def _task(task, X):
    rng = np.random.RandomState(3)
    z = X @ rng.randn(X.shape[1])
    if task == "squared_error":
        return BatchMLPRegressor, z, {}
    if task == "poisson":
        return BatchMLPRegressor, np.abs(z), {"loss": "poisson"}
    if task == "binary":
        return BatchMLPClassifier, (z > 0).astype(int), {}
    if task == "multiclass":
        return BatchMLPClassifier, np.digitize(z, [-0.5, 0.5]), {}
    return BatchMLPClassifier, np.c_[z > 0, X[:, 0] > 0, X[:, 1] > 0].astype(int), {}


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("task", TASKS)
def test_no_runtime_warning_escapes_whatever_the_scale(task, solver):
    X, _, _ = _data(n=30)
    Est, y, extra = _task(task, X)
    escaped = []
    trials = [(s, 1.0) for s in (1e10, 1e50, 1e100, 1e200, 1e300)]
    if Est is BatchMLPRegressor:
        trials += [(1.0, s) for s in (1e10, 1e100, 1e200, 1e300)]
    trials += [(1.0, "huge-lr")]
    for x_scale, y_scale in trials:
        params = dict(solver=solver, max_iter=5, batch_size=10, **extra, **SMALL)
        y_fit = y
        if y_scale == "huge-lr":
            params.update(learning_rate_init=1e20)
        elif y_scale != 1.0:
            y_fit = y * y_scale
        est = Est(**params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            try:
                est.fit(X * x_scale, y_fit)
            except ValueError:
                pass
            else:
                est.predict(X * x_scale)
                if Est is BatchMLPClassifier:
                    est.predict_proba(X * x_scale)
        escaped += [
            f"X*{x_scale:g}, y*{y_scale}: {w.message}"
            for w in caught
            if issubclass(w.category, RuntimeWarning)
        ]
    assert not escaped, f"{len(escaped)} RuntimeWarnings escaped, e.g.\n" + "\n".join(
        sorted(set(escaped))[:10]
    )


def _huge_rows(n_features, value=1e200):
    rows = [
        np.full(n_features, value),
        np.full(n_features, -value),
        np.where(np.arange(n_features) % 2, value, -value),
        np.r_[value, np.zeros(n_features - 1)],
        np.r_[np.zeros(n_features - 1), -value],
    ]
    return np.array(rows)


def _check_probabilities(proba, task, n_rows, dtype):
    n_cols = {"binary": 2, "multiclass": 3, "multilabel": 3}[task]
    assert proba.shape == (n_rows, n_cols)
    assert proba.dtype == dtype
    assert np.isfinite(proba).all(), proba
    assert ((proba >= 0) & (proba <= 1)).all(), proba
    if task != "multilabel":
        np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_huge_inputs_give_finite_probabilities(task, activation, dtype, fmt):
    X, _, _ = _data(n=60)
    Est, y, _ = _task(task, X)
    est = Est(activation=activation, max_iter=30, **SMALL).fit(X.astype(dtype), y)
    X_huge = _huge_rows(4)  # float64: 1e200 does not fit in float32
    if fmt == "csr":
        X_huge = sp.csr_matrix(X_huge)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        proba = est.predict_proba(X_huge)
        labels = est.predict(X_huge)
    assert not [str(w.message) for w in caught if w.category is RuntimeWarning]
    _check_probabilities(proba, task, 5, dtype)
    assert len(labels) == 5


@pytest.mark.parametrize("value", [1e300, np.finfo(np.float64).max])
@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("task", TASKS)
def test_extreme_finite_inputs_at_predict(task, activation, value):
    # Any finite input is accepted by predict; it must not warn, and the
    # classifier's probabilities must stay finite.
    X, _, _ = _data(n=60)
    Est, y, extra = _task(task, X)
    est = Est(activation=activation, max_iter=30, **extra, **SMALL).fit(X, y)
    X_huge = _huge_rows(4, value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        pred = est.predict(X_huge)
        proba = est.predict_proba(X_huge) if Est is BatchMLPClassifier else None
    assert not [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert len(pred) == 5
    if proba is not None:
        _check_probabilities(proba, task, 5, np.float64)


# -- 3. interruption ---------------------------------------------------------


@pytest.mark.parametrize("at_batch", [1, 3])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_interrupted_fit_keeps_last_completed_epoch(
    monkeypatch, kind, solver, at_batch
):
    # 40 rows in batches of 10: 4 steps per epoch; interrupt epoch 3.
    Est, y = (
        (BatchMLPClassifier, Y_CLS40)
        if kind == "classifier"
        else (BatchMLPRegressor, Y_REG40)
    )
    params = dict(solver=solver, batch_size=10, shuffle=True, max_iter=50, **SMALL)
    reference = Est(**{**params, "max_iter": 2}).fit(X40, y)

    calls = _fail_at_call(monkeypatch, 2 * 4 + at_batch, KeyboardInterrupt())
    est = Est(**params)
    with pytest.warns(UserWarning, match="(?i)interrupt"):
        try:
            est.fit(X40, y)
        except KeyboardInterrupt:  # would end the pytest session
            pytest.fail("fit let the KeyboardInterrupt through")
    assert calls["n"] == 2 * 4 + at_batch
    monkeypatch.undo()

    assert est.n_iter_ == 2
    assert len(est.loss_curve_) == 2
    assert est.loss_curve_ == reference.loss_curve_
    assert est.t_ == reference.t_ == 80
    assert _bitwise_equal(_weights(est), _weights(reference)), (
        "the interrupted fit kept weights from inside epoch 3, not the weights "
        "at the end of epoch 2"
    )
    assert np.array_equal(est.predict(X40), reference.predict(X40))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_interrupted_partial_fit_keeps_last_completed_epoch(monkeypatch, kind, solver):
    # The last completed epoch of an interrupted partial_fit is the state
    # before the call: either the interrupt propagates or a warning is given,
    # and nothing of the unfinished pass is kept.
    est, y = _two_partial_fits(kind, solver)
    snap = _Snapshot(est)
    _fail_at_call(monkeypatch, 3, KeyboardInterrupt())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.partial_fit(X40, y)
        except KeyboardInterrupt:
            pass
        else:
            assert any("nterrupt" in str(w.message) for w in caught)
    snap.assert_matches(est)


# -- 4. restart in a fresh process ---------------------------------------------

_CONTINUE = textwrap.dedent(
    """
    import pickle
    import sys
    from pathlib import Path

    import numpy as np

    for folder in map(Path, sys.argv[1:]):
        mode, count = (folder / "task.txt").read_text().split()
        est = pickle.loads((folder / "model.pkl").read_bytes())
        if mode == "partial_fit":
            for i in range(int(count)):
                X = np.load(folder / f"X_{i}.npy")
                y = np.load(folder / f"y_{i}.npy")
                est.partial_fit(X, y)
        else:
            est.set_params(max_iter=int(count))
            est.fit(np.load(folder / "X_0.npy"), np.load(folder / "y_0.npy"))
        for i, a in enumerate(est.coefs_ + est.intercepts_):
            np.save(folder / f"weight_{i}.npy", a)
        (folder / "result.pkl").write_bytes(pickle.dumps(est))
    """
)


def _restart_data(kind):
    X, y_reg, y_cls = _data(n=90, seed=5)
    if kind == "classifier":
        return X, np.array(["cat", "dog", "emu"])[y_cls]
    return X, y_reg


def _estimator(kind, **params):
    Est = BatchMLPClassifier if kind == "classifier" else BatchMLPRegressor
    return Est(batch_size=8, shuffle=True, momentum=0.9, **params, **SMALL)


RESTARTS = {
    # name: (kind, solver, mode); "partial_fit" pickles after two calls and
    # continues with three more, "fit" pickles a warm-start fit and fits again
    **{
        f"partial_fit-{kind}-{solver}": (kind, solver, "partial_fit")
        for kind in ("classifier", "regressor")
        for solver in ("sgd", "adam")
    },
    "fit-classifier-adam": ("classifier", "adam", "fit"),
    "fit-regressor-sgd": ("regressor", "sgd", "fit"),
}


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    """Every scenario of RESTARTS continued in one fresh Python process.

    Returns, per scenario, the estimator as it was pickled (to be continued
    in this process by the test), the data to continue with, and the weights
    and the estimator the fresh process ended with.
    """
    cases, folders = {}, []
    for name, (kind, solver, mode) in RESTARTS.items():
        folder = tmp_path_factory.mktemp(name)
        X, y = _restart_data(kind)
        if mode == "partial_fit":
            chunks = [(X[i::3], y[i::3]) for i in range(3)]
            est = _estimator(kind, solver=solver)
            kw = {"classes": np.unique(y)} if kind == "classifier" else {}
            est.partial_fit(X, y, **kw).partial_fit(*chunks[2])
            count = 3
        else:
            chunks = [(X, y)]
            est = _estimator(kind, solver=solver, max_iter=3, warm_start=True)
            est.fit(X, y)
            count = 4
        (folder / "model.pkl").write_bytes(pickle.dumps(est))
        (folder / "task.txt").write_text(f"{mode} {count}")
        for i, (X_i, y_i) in enumerate(chunks):
            np.save(folder / f"X_{i}.npy", X_i)
            np.save(folder / f"y_{i}.npy", y_i)
        cases[name] = (est, chunks, count, folder)
        folders.append(str(folder))
    script = tmp_path_factory.mktemp("script") / "continue.py"
    script.write_text(_CONTINUE)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(script), *folders],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    results = {}
    for name, (est, chunks, count, folder) in cases.items():
        n = len(est.coefs_) + len(est.intercepts_)
        weights = [np.load(folder / f"weight_{i}.npy") for i in range(n)]
        restored = pickle.loads((folder / "result.pkl").read_bytes())
        results[name] = (est, chunks, count, weights, restored)
    return results


@pytest.mark.parametrize("name", sorted(RESTARTS))
def test_training_continues_bitwise_in_a_fresh_process(restarted, name):
    # Pickle, continue in a fresh process: the same weights, bit for bit, and
    # the same optimizer state and random stream, as never stopping.
    est, chunks, count, weights, restored = restarted[name]
    if RESTARTS[name][2] == "partial_fit":
        for X, y in chunks:
            est.partial_fit(X, y)
    else:
        est.set_params(max_iter=count).fit(*chunks[0])
    assert _bitwise_equal(weights, _weights(est))
    _Snapshot(est).assert_matches(restored)
    assert est.n_iter_ == (count if RESTARTS[name][2] == "fit" else 2 + count)


# -- 5. concurrency ------------------------------------------------------------


def _run_together(n_threads, work):
    """Run ``work(i)`` in ``n_threads`` threads released at the same moment."""
    barrier = threading.Barrier(n_threads)

    def start(i):
        barrier.wait(timeout=60)
        return work(i)

    with concurrent.futures.ThreadPoolExecutor(max_workers=n_threads) as pool:
        return list(pool.map(start, range(n_threads), timeout=600))


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "squared_error"])
def test_concurrent_predictions_equal_sequential(task):
    X, _, _ = _data(n=300, n_features=6, seed=2)
    Est, y, extra = _task(task, X)
    est = Est(hidden_layer_sizes=(32, 16), max_iter=20, random_state=0, **extra)
    est.fit(X, y)
    rng = np.random.RandomState(7)
    chunks = []
    for i in range(24):
        rows = rng.randn(rng.randint(1, 120), 6)
        if i % 3 == 1:
            rows[rng.rand(*rows.shape) < 0.6] = 0.0
            rows = sp.csr_matrix(rows)
        elif i % 3 == 2:
            rows = rows.astype(np.float32)
        chunks.append(rows)
    methods = ["predict"] + (["predict_proba"] if Est is BatchMLPClassifier else [])
    expected = {
        (i, m): getattr(est, m)(c) for i, c in enumerate(chunks) for m in methods
    }

    def work(t):
        order = np.random.RandomState(t).permutation(len(chunks))
        out = []
        for _ in range(4):
            for i in order:
                for m in methods:
                    out.append(((i, m), getattr(est, m)(chunks[i])))
        return out

    results = _run_together(8, work)
    checked = 0
    for out in results:
        for key, value in out:
            assert value.dtype == expected[key].dtype
            assert np.array_equal(value, expected[key]), key
            checked += 1
    assert checked == 8 * 4 * len(expected)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize(
    "Est, solver", [(BatchMLPClassifier, "adam"), (BatchMLPRegressor, "sgd")]
)
def test_clones_fitted_in_threads_equal_sequential_fits(Est, solver, fmt):
    X, y_reg, y_cls = _data(n=300, n_features=6, seed=4)
    y = y_cls if Est is BatchMLPClassifier else y_reg
    X = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X)) if fmt == "csr" else X
    base = Est(hidden_layer_sizes=(16,), solver=solver, batch_size=16, max_iter=15)
    sequential = [clone(base).set_params(random_state=i).fit(X, y) for i in range(4)]
    threaded = _run_together(
        4, lambda i: clone(base).set_params(random_state=i).fit(X, y)
    )
    for seq, thr in zip(sequential, threaded):
        _Snapshot(seq).assert_matches(thr)
    # the seeds differ, so the comparison is not trivially between equal fits
    assert not _bitwise_equal(_weights(sequential[0]), _weights(sequential[1]))
