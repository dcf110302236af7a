"""Concurrency: predictions and fits in threads equal their sequential runs."""

import concurrent.futures
import contextlib
import copy
import pickle
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    Snapshot,
    bitwise_equal,
    copied_weights,
    make_data,
    make_task,
)
from sklearn.base import clone

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor


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
    X, _, _ = make_data(n=300, n_features=6, seed=2, labels="balanced")
    Est, y, extra = make_task(task, X)
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
    X, y_reg, y_cls = make_data(n=300, n_features=6, seed=4, labels="balanced")
    y = y_cls if Est is BatchMLPClassifier else y_reg
    X = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X)) if fmt == "csr" else X
    base = Est(hidden_layer_sizes=(16,), solver=solver, batch_size=16, max_iter=15)
    sequential = [clone(base).set_params(random_state=i).fit(X, y) for i in range(4)]
    threaded = _run_together(
        4, lambda i: clone(base).set_params(random_state=i).fit(X, y)
    )
    for seq, thr in zip(sequential, threaded):
        Snapshot(seq).assert_matches(thr)
    # the seeds differ, so the comparison is not trivially between equal fits
    assert not bitwise_equal(
        copied_weights(sequential[0]),
        copied_weights(sequential[1]),
    )


def _blas_limits():
    from threadpoolctl import threadpool_info

    return sorted(
        (p["internal_api"], p["filepath"], p["num_threads"]) for p in threadpool_info()
    )


@pytest.mark.parametrize("batch_size", [1, 8, 200])
def test_fits_in_threads_leave_the_thread_limits_as_they_were(batch_size):
    """A fit sets no process-wide limit: two overlapping fits in threads, of
    small batches as of large ones, leave every thread pool as it was."""
    X, _, y = make_data(n=400, n_features=8, seed=4)
    before = _blas_limits()
    _run_together(
        2,
        lambda i: BatchMLPClassifier(
            batch_size=batch_size, max_iter=3, random_state=i, solver="sgd"
        ).fit(X, y),
    )
    assert _blas_limits() == before


def test_a_limit_the_caller_sets_is_kept_during_and_after_a_fit():
    from threadpoolctl import threadpool_info, threadpool_limits

    X, _, y = make_data(n=200, n_features=8, seed=5)

    class Watch(BatchMLPClassifier):
        def _score_output(self, output, y, sample_weight):
            seen.append({p["num_threads"] for p in threadpool_info()})
            return super()._score_output(output, y, sample_weight)

    seen = []
    with threadpool_limits(limits=1):
        Watch(batch_size=1, early_stopping=True, max_iter=2, random_state=0).fit(X, y)
        after = {p["num_threads"] for p in threadpool_info()}
    assert seen and all(s == {1} for s in seen) and after == {1}


# -- one estimator, two threads: the second fit is refused ----------------------

try:
    from sklearn import callback as _sklearn_callback
except ImportError:  # scikit-learn < 1.9: no public hook inside training
    _sklearn_callback = None

needs_callbacks = pytest.mark.skipif(
    _sklearn_callback is None, reason="scikit-learn < 1.9 has no sklearn.callback"
)

# The events of the Hold callbacks, by name: kept out of the callback so that
# an estimator carrying one can be pickled and deep-copied during its fit.
_HOLDS = {}


class Hold:
    """A callback that holds its fit at the end of epoch ``at``.

    It sets the ``inside`` event of its name and waits for ``release`` (or,
    with a barrier, for every fit sharing it to arrive).
    """

    def __init__(self, name, at=1):
        self.name, self.at, self.epochs = name, at, 0

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if context.task_name in ("epoch", "iteration"):
            self.epochs += 1
            if self.epochs == self.at:
                hold = _HOLDS[self.name]
                if isinstance(hold, threading.Barrier):
                    hold.wait()
                else:
                    inside, release = hold
                    inside.set()
                    assert release.wait(timeout=60)
        return False


@contextlib.contextmanager
def _held(est, method, *args, at=1, **kwargs):
    """Run ``est.method(*args)`` in a thread, held inside training until the
    block ends; yields the call's future."""
    name = f"hold-{id(est)}-{method}"
    inside, release = threading.Event(), threading.Event()
    _HOLDS[name] = (inside, release)
    est.set_callbacks(Hold(name, at))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(getattr(est, method), *args, **kwargs)
    try:
        assert inside.wait(timeout=60), "the first call never reached training"
        yield future
    finally:
        release.set()
        pool.shutdown(wait=True)
        del _HOLDS[name]


X_GUARD, Y_REG_GUARD, Y_CLS_GUARD = make_data(n=80, n_features=4, seed=6)


def _call(est, method):
    """The arguments of ``fit`` or ``partial_fit`` of ``est`` on the data above."""
    if isinstance(est, BatchMLPClassifier):
        kw = {"classes": [0, 1, 2]} if method == "partial_fit" else {}
        return (X_GUARD, Y_CLS_GUARD), kw
    return (X_GUARD, Y_REG_GUARD), {}


GUARD_CASES = [
    (BatchMLPClassifier, dict(solver="adam"), "fit", "fit"),
    (BatchMLPRegressor, dict(solver="sgd"), "fit", "partial_fit"),
    (BatchMLPClassifier, dict(solver="sgd"), "partial_fit", "fit"),
    (BatchMLPRegressor, dict(solver="adam"), "partial_fit", "partial_fit"),
    (BatchMLPRegressor, dict(solver="lbfgs"), "fit", "fit"),
]


@needs_callbacks
@pytest.mark.parametrize("Est, params, first, second", GUARD_CASES)
def test_a_second_fit_of_one_estimator_is_refused_and_changes_nothing(
    Est, params, first, second
):
    kwargs = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=0, **params)
    est = Est(**kwargs)
    if first == "partial_fit":  # a partial_fit that continues a fitted model
        est.partial_fit(*_call(est, first)[0], **_call(est, first)[1])
    args, kw = _call(est, first)
    with _held(est, first, *args, at=2 if first == "fit" else 1, **kw) as running:
        before = Snapshot(est)
        other_args, other_kw = _call(est, second)
        for _ in range(2):  # the refused call does not free the estimator
            with pytest.raises(RuntimeError, match=r"^fit is already running on"):
                getattr(est, second)(*other_args, **other_kw)
        before.assert_matches(est)
    running.result(timeout=60)
    # The first call ran as it runs alone.
    alone = Est(**kwargs)
    if first == "partial_fit":
        alone.partial_fit(*args, **kw)
    getattr(alone, first)(*args, **kw)
    assert est.n_iter_ == alone.n_iter_ and est.loss_curve_ == alone.loss_curve_
    assert bitwise_equal(copied_weights(est), copied_weights(alone))
    # The estimator is free again.
    getattr(est.set_callbacks(), second)(*other_args, **other_kw)


@needs_callbacks
def test_the_message_names_the_remedy():
    est = BatchMLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with _held(est, "fit", X_GUARD, Y_REG_GUARD):
        with pytest.raises(RuntimeError) as info:
            est.fit(X_GUARD, Y_REG_GUARD)
    message = str(info.value)
    assert "fit is already running on this estimator" in message
    assert "clone" in message and "thread" in message


@needs_callbacks
def test_copies_taken_during_a_fit_work_and_fit_alongside_it():
    kwargs = dict(hidden_layer_sizes=(8,), solver="sgd", max_iter=5, random_state=0)
    est = BatchMLPClassifier(**kwargs)
    with _held(est, "fit", X_GUARD, Y_CLS_GUARD, at=2):
        now = est.predict_proba(X_GUARD)
        for copied in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
            np.testing.assert_array_equal(copied.predict_proba(X_GUARD), now)
            assert copied.n_iter_ == 2
        # A clone is another estimator: it fits while the first is held.
        other = clone(est).set_callbacks().fit(X_GUARD, Y_CLS_GUARD)
    Snapshot(BatchMLPClassifier(**kwargs).fit(X_GUARD, Y_CLS_GUARD)).assert_matches(
        other
    )


@needs_callbacks
def test_fits_of_different_estimators_still_overlap():
    """Each fit waits inside training for the other: a guard that serialized
    all fits would break the barrier."""
    _HOLDS["overlap"] = threading.Barrier(2, timeout=60)
    try:
        ests = _run_together(
            2,
            lambda i: (
                BatchMLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=i)
                .set_callbacks(Hold("overlap", at=1))
                .fit(X_GUARD, Y_REG_GUARD)
            ),
        )
    finally:
        del _HOLDS["overlap"]
    assert [e.n_iter_ for e in ests] == [3, 3]


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_a_call_that_raises_frees_the_estimator(monkeypatch, error):
    est = BatchMLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)

    def fail(*args):
        raise error

    with monkeypatch.context() as patch:
        patch.setattr(BatchMLPRegressor, "_fit_unsafe", fail)
        with pytest.raises(error):
            est.fit(X_GUARD, Y_REG_GUARD)
    est.fit(X_GUARD, Y_REG_GUARD)
    est.partial_fit(X_GUARD, Y_REG_GUARD)
    assert est.n_iter_ == 3
