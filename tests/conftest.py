"""Shared data sets and state comparisons for the test modules.

The builders are plain functions, imported by the test modules
(``from conftest import make_data``): several are called at import time to
build ``pytest.mark.parametrize`` cases, where fixtures are not available.
Each keeps the exact draws its tests were written against; where two test
modules had drifted apart, the difference is a parameter (``labels=``) so
that every test still sees the data it always saw.
"""

import contextlib
import functools
import os
import pickle
import types

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification, make_regression

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

# -- small synthetic problems ---------------------------------------------------

SMALL = dict(hidden_layer_sizes=(6,), random_state=0)
"""A small network with a fixed seed, for the 40-row problems of make_data."""


def make_data(n=40, n_features=4, seed=0, labels="drawn"):
    """``X``, a linear regression target and three-class labels.

    ``labels='drawn'`` draws each label uniformly; ``labels='balanced'``
    shuffles ``arange(n) % 3``, so every class has ``n // 3`` or more rows.
    ``X`` and the regression target do not depend on ``labels``.
    """
    rng = np.random.RandomState(seed)
    X = rng.randn(n, n_features)
    y_reg = X @ rng.randn(n_features) + 0.1 * rng.randn(n)
    if labels == "drawn":
        y_cls = rng.randint(0, 3, n)
    elif labels == "balanced":
        y_cls = np.arange(n) % 3
        rng.shuffle(y_cls)
    else:
        raise ValueError(f"labels must be 'drawn' or 'balanced', got {labels!r}.")
    return X, y_reg, y_cls


TASKS = ["squared_error", "poisson", "binary", "multiclass", "multilabel"]


def make_task(task, X):
    """(estimator class, target, extra parameters) of one of ``TASKS`` on ``X``."""
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


# -- scikit-learn data sets -------------------------------------------------------


def digits_problem(n=300):
    """A ten-class problem: the first ``n`` digits, pixels as floats."""
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def binary_problem(n=200, seed=0):
    X, y = make_classification(
        n_samples=n, n_features=6, n_informative=4, random_state=seed
    )
    return X, y


def regression_problem(n=200, n_targets=1, seed=0):
    """make_regression's problem with standardized targets."""
    X, y = make_regression(
        n_samples=n,
        n_features=6,
        n_informative=4,
        n_targets=n_targets,
        noise=5.0,
        random_state=seed,
    )
    return X, (y - y.mean(axis=0)) / y.std(axis=0)


def small_estimator(cls, **params):
    """``cls`` with a (12,) network, 15 epochs and a fixed seed, for the above."""
    base = dict(hidden_layer_sizes=(12,), max_iter=15, random_state=0)
    base.update(params)
    return cls(**base)


# -- fitted parameters and state ------------------------------------------------


def fitted_weights(est):
    """``coefs_ + intercepts_``: the estimator's own arrays."""
    return est.coefs_ + est.intercepts_


def copied_weights(est):
    """Copies of ``coefs_ + intercepts_``, to compare with after more training."""
    return [np.array(a, copy=True) for a in est.coefs_ + est.intercepts_]


def same_weights(a, b):
    """Whether two fitted estimators have exactly equal parameters."""
    wa, wb = fitted_weights(a), fitted_weights(b)
    return len(wa) == len(wb) and all(np.array_equal(u, v) for u, v in zip(wa, wb))


def allclose_weights(a, b, **kw):
    """Whether two lists of arrays are equal within ``np.allclose(**kw)``."""
    return len(a) == len(b) and all(np.allclose(u, v, **kw) for u, v in zip(a, b))


def bitwise_equal(a, b):
    return len(a) == len(b) and all(
        u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
        for u, v in zip(a, b)
    )


def pickled_state(est):
    """Pickled value of every attribute (robust to lost aliasing between them)."""
    return {key: pickle.dumps(value) for key, value in vars(est).items()}


# -- a generic, deep comparison of the whole estimator state ----------------------
#
# It walks ``vars(est)`` generically, private attributes included, so it does
# not depend on how the parameters are stored.

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


class Snapshot:
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


def float_arrays(obj, seen=None):
    """Writable float arrays reachable from ``obj``."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, _ATOMS + _BY_REFERENCE):
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        ok = obj.dtype.kind == "f" and obj.flags.writeable
        return [obj] if ok else []
    return [a for _, child in _children(obj) for a in float_arrays(child, seen)]


def find_instance(est, cls):
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


def intercept_loop_results(monkeypatch, after):
    """Hand each result of the compiled loop to ``after(runner, result)``,
    whose return the runner then reads: a status the loop did not reach (an
    interruption, a divergence) can be staged after a real epoch."""
    from types import SimpleNamespace

    from skbatchnet._compiled import CompiledEpochs

    original = CompiledEpochs.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        loop = self.epoch

        def run_epoch(*args):
            return after(self, loop.run_epoch(*args))

        self.epoch = SimpleNamespace(run_epoch=run_epoch)

    monkeypatch.setattr(CompiledEpochs, "__init__", init)


def use_numpy_epochs(monkeypatch):
    """Train through the numpy specification (``_training.run_epoch``), not the
    compiled loop, for a test that instruments ``Network.gradient``."""
    from skbatchnet._compiled import CompiledEpochs

    monkeypatch.setattr(CompiledEpochs, "supports", staticmethod(lambda *args: False))


def without_growth_rule(monkeypatch):
    """Switch off the divergence-by-growth rule (``skbatchnet._growth``), for
    a test of the non-finite path whose run grows slowly enough to break the
    rule before it overflows."""
    from skbatchnet._growth import LossGrowth

    monkeypatch.setattr(LossGrowth, "broken", lambda self, curve, loss: False)


def spy_split(monkeypatch):
    """Record the training and held-out parts of the early-stopping split, as
    ``{'train': [X, Y, y, w], 'val': [...]}``, filled when a fit splits."""
    import skbatchnet._context

    original = skbatchnet._context.split_validation
    parts = {}

    def spy(*args, **kwargs):
        parts["train"], parts["val"] = original(*args, **kwargs)
        return parts["train"], parts["val"]

    monkeypatch.setattr(skbatchnet._context, "split_validation", spy)
    return parts


# Set in the environment of the process that starts a Dask cluster:
# distributed's Nanny copies them into each worker's environment before
# spawning it, so they are in place before the worker loads numpy's and
# scipy's OpenBLAS.
BLAS_THREAD_CAPS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@contextlib.contextmanager
def dask_client():
    """A client of a two-worker, one-thread-per-worker LocalCluster of worker
    processes, listening on the loopback only; this process's environment is
    left as it was."""
    distributed = pytest.importorskip("distributed")
    environ_before = os.environ.copy()
    os.environ.update(BLAS_THREAD_CAPS)  # read by the nannies before spawning
    try:
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    finally:
        # The Nanny also writes its pre-spawn variables into this process's
        # environment; leave it as it was.
        os.environ.clear()
        os.environ.update(environ_before)


def worker_addresses(client):
    """The addresses of ``client``'s workers, asked of the scheduler.

    Not ``client.scheduler_info()["workers"]``: distributed refreshes that
    cache in the background with the totals only, and a refresh landing
    between the call's fetch and its return leaves ``"workers"`` empty.
    """
    identity = client.sync(client.scheduler.identity, n_workers=-1)
    return sorted(identity["workers"])


@pytest.fixture(scope="module")
def client():
    """The Dask tests' cluster (:func:`dask_client`), one per test module."""
    with dask_client() as client:
        yield client
