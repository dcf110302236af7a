"""Property tests: any small problem either fits and predicts sanely, or is
refused with a ValueError/TypeError that says why.

Shapes (down to one sample, one feature, more outputs than samples), dense
and CSR inputs, float32 and float64, sample weights with zeros (sometimes all
zero), every solver, activation, reduction, batch size and last-batch policy,
and early stopping are drawn at random. Training is kept tiny (n <= 30, a few
epochs, a few hidden units), so no example can hang.
"""

import contextlib
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

REGRESSION = ["squared_error", "poisson"]
CLASSIFICATION = ["binary", "multiclass", "multilabel"]
LABELS = [np.array([0, 1, 2, 3, 4]), np.array(["ant", "bee", "cat", "dog", "eel"])]


@st.composite
def datasets(draw, tasks, n_min=1):
    """X (dense or CSR, float32 or float64), y, sample_weight and the task."""
    task = draw(st.sampled_from(tasks))
    n = draw(st.integers(n_min, 30))
    n_features = draw(st.integers(1, 5))
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    X = rng.randn(n, n_features) * draw(st.sampled_from([1.0, 0.01, 10.0]))
    sparse = draw(st.booleans())
    if sparse:
        X[rng.rand(n, n_features) < 0.5] = 0.0
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    X = X.astype(dtype)
    if task in REGRESSION or task == "multilabel":
        n_outputs = draw(st.integers(1 if task in REGRESSION else 2, 4))
        shape = (n,) if n_outputs == 1 else (n, n_outputs)
        if task == "squared_error":
            y = rng.randn(*shape)
        elif task == "poisson":
            y = rng.poisson(draw(st.sampled_from([0.1, 1.0, 5.0])), shape)
            y = y.astype(float)
        else:
            y = rng.randint(0, 2, shape)
    else:
        n_classes = 2 if task == "binary" else draw(st.integers(3, 5))
        names = draw(st.sampled_from(LABELS))[:n_classes]
        y = names[rng.permutation(np.arange(n) % n_classes)]
    weights = draw(
        st.sampled_from([None, "positive", "zeros", "one-nonzero", "all-zero", "ints"])
    )
    if weights == "positive":
        sample_weight = rng.uniform(0.1, 3.0, n)
    elif weights == "zeros":
        sample_weight = rng.uniform(0.1, 3.0, n) * (rng.rand(n) < 0.6)
    elif weights == "one-nonzero":
        sample_weight = np.zeros(n)
        sample_weight[rng.randint(n)] = rng.uniform(0.1, 3.0)
    elif weights == "all-zero":
        sample_weight = np.zeros(n)
    elif weights == "ints":
        sample_weight = rng.randint(0, 4, n).astype(float)
    else:
        sample_weight = None
    if sparse:
        X = sp.csr_matrix(X)
    X_new = rng.randn(draw(st.integers(1, 7)), n_features).astype(dtype)
    if sparse:
        X_new = sp.csr_matrix(X_new)
    return task, X, y, sample_weight, X_new


@st.composite
def parameters(draw, solvers=("sgd", "adam", "lbfgs"), early_stopping=None):
    if early_stopping is None:
        early_stopping = draw(st.booleans())
    return dict(
        solver=draw(st.sampled_from(solvers)),
        activation=draw(st.sampled_from(["identity", "logistic", "tanh", "relu"])),
        gradient_reduction=draw(st.sampled_from(["mean", "sum"])),
        batch_size=draw(
            st.one_of(st.integers(1, 40), st.sampled_from(["auto", "full"]))
        ),
        drop_last=draw(st.sampled_from([False, True, "merge"])),
        early_stopping=early_stopping,
        validation_fraction=draw(st.sampled_from([0.1, 0.3, 0.5])),
        hidden_layer_sizes=draw(
            st.lists(st.integers(1, 5), min_size=1, max_size=2).map(tuple)
        ),
        alpha=draw(st.sampled_from([0.0, 1e-4, 1.0])),
        learning_rate=draw(st.sampled_from(["constant", "invscaling", "adaptive"])),
        learning_rate_init=draw(st.sampled_from([1e-3, 1e-2, 1e-1])),
        shuffle=draw(st.booleans()),
        max_iter=draw(st.integers(1, 4)),
        n_iter_no_change=draw(st.sampled_from([1, 10])),
        random_state=draw(st.integers(0, 1000)),
    )


def _zero_weight(sample_weight):
    return sample_weight is not None and not np.any(sample_weight)


def _allowed_refusals(est, task, X, y, sample_weight, classes=None):
    """The documented refusals that these inputs can trigger, as patterns.

    Each refusal is allowed only when its cause is present in the inputs, so
    that a refusal of a problem the estimator should fit fails the test.
    ``classes`` are the labels known before this call (given to partial_fit
    or learnt by an earlier call).
    """
    allowed = []
    if _zero_weight(sample_weight):
        allowed.append(r"Sample weights must contain at least one non-zero number")
    if X.shape[0] == 0:
        allowed.append(r"Found array with 0 sample\(s\) .* a minimum of 1 is required")
    if X.shape[0] == 1 and task in CLASSIFICATION:
        allowed.append(r"Found array with 1 sample\(s\) .* a minimum of 2 is required")
    if task in ("binary", "multiclass"):
        if len(np.unique(y) if classes is None else classes) < 2:
            allowed.append(r"The target y has only one class \(.*\); a classifier")
    if est.learning_rate_init >= 0.1 or est.gradient_reduction == "sum":
        # Large steps may diverge (inputs are scaled up to 10x); the
        # documented refusal says which parameters to change.
        allowed.append(
            r"Solver produced non-finite parameter weights\. The input data may "
            r"contain large values and need to be preprocessed\. "
            r"Training diverged: the loss became non-finite"
        )
        # The growth rule (skbatchnet._growth): fit raises, partial_fit warns
        # (a RuntimeWarning, which _quiet makes an error).
        allowed.append(r"Training diverged: the training loss grew to ")
    if est.early_stopping:
        allowed += [
            r"The validation set is too small\. Increase validation_fraction",
            r"With early_stopping=True the (training|held-out) part of the data "
            r"has zero total sample weight\.",
        ]
    return allowed


def _refused(error, allowed):
    # A RuntimeWarning refuses the call too, made an error by _quiet: it must
    # be one the inputs explain (the growth rule's), not a numerical accident.
    assert isinstance(error, ValueError | RuntimeWarning), repr(error)
    message = str(error)
    assert any(re.match(pattern, message) for pattern in allowed), (
        f"refused with {message!r}, which none of these inputs explains "
        f"(allowed: {allowed})"
    )


@contextlib.contextmanager
def _quiet():
    """Numerical warnings are bugs (convergence warnings are expected, and
    silenced for the whole suite in pyproject.toml)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def _check_fitted(est, task, X, y, X_new):
    dtype = X.dtype
    n_outputs = 1 if y.ndim == 1 else y.shape[1]
    assert all(w.dtype == dtype for w in est.coefs_ + est.intercepts_)
    assert all(np.isfinite(w).all() for w in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.loss_)
    for data in (X, X_new):
        n = data.shape[0]
        pred = est.predict(data)
        if task in REGRESSION:
            assert pred.shape == ((n,) if n_outputs == 1 else (n, n_outputs))
            assert pred.dtype == dtype
            assert np.isfinite(pred).all()
            if task == "poisson":
                assert (pred >= 0).all()
            continue
        proba = est.predict_proba(data)
        assert proba.dtype == dtype
        assert np.isfinite(proba).all()
        assert ((proba >= 0) & (proba <= 1)).all()
        if task == "multilabel":
            assert pred.shape == (n, n_outputs)
            assert proba.shape == (n, n_outputs)
            assert set(np.unique(pred)) <= {0, 1}
        else:
            assert pred.shape == (n,)
            assert proba.shape == (n, len(est.classes_))
            assert set(pred) <= set(est.classes_)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=0, atol=tol)
            # the label is the most probable class
            assert np.array_equal(pred, est.classes_[proba.argmax(axis=1)])


def _fit_or_refuse(est, task, X, y, sample_weight, X_new):
    with _quiet():
        try:
            est.fit(X, y, sample_weight=sample_weight)
        except Exception as error:
            _refused(error, _allowed_refusals(est, task, X, y, sample_weight))
            return
        # Data without any weight has no objective: it must be refused.
        assert not _zero_weight(sample_weight), "fitted data of zero total weight"
        _check_fitted(est, task, X, y, X_new)


def _make(task, params):
    if task in REGRESSION:
        return BatchMLPRegressor(loss=task, **params)
    return BatchMLPClassifier(**params)


@SETTINGS
@given(datasets(REGRESSION), parameters())
def test_regressor_fits_or_refuses(data, params):
    task, X, y, sample_weight, X_new = data
    _fit_or_refuse(_make(task, params), task, X, y, sample_weight, X_new)


@SETTINGS
@given(datasets(CLASSIFICATION), parameters())
def test_classifier_fits_or_refuses(data, params):
    task, X, y, sample_weight, X_new = data
    _fit_or_refuse(_make(task, params), task, X, y, sample_weight, X_new)


@SETTINGS
@given(
    datasets(REGRESSION + CLASSIFICATION),
    parameters(solvers=("sgd", "adam"), early_stopping=False),
    st.integers(1, 3),
)
def test_partial_fit_chunks_fit_or_refuse(data, params, n_chunks):
    # partial_fit over consecutive chunks (early stopping is refused there,
    # see test_partial_fit_refuses_early_stopping below);
    # a refused chunk leaves a model that still predicts sanely.
    task, X, y, sample_weight, X_new = data
    est = _make(task, params)
    bounds = np.linspace(0, X.shape[0], n_chunks + 1).astype(int)
    kw = {}
    if task in ("binary", "multiclass"):
        kw["classes"] = np.unique(y)
    with _quiet():
        for start, stop in zip(bounds[:-1], bounds[1:]):
            w = None if sample_weight is None else sample_weight[start:stop]
            X_chunk, y_chunk = X[start:stop], y[start:stop]
            try:
                est.partial_fit(X_chunk, y_chunk, sample_weight=w, **kw)
            except Exception as error:
                # Once known, the classes make a chunk of one class as valid
                # as any other.
                classes = kw.get("classes", getattr(est, "classes_", None))
                _refused(
                    error, _allowed_refusals(est, task, X_chunk, y_chunk, w, classes)
                )
            else:
                assert not _zero_weight(w), "fitted a chunk of zero total weight"
                # The classes are needed until a call succeeds, not only on
                # the first call.
                kw = {}
            if hasattr(est, "coefs_"):
                _check_fitted(est, task, X, y, X_new)


@SETTINGS
@given(
    datasets(REGRESSION + CLASSIFICATION),
    parameters(solvers=("sgd", "adam"), early_stopping=True),
)
def test_partial_fit_refuses_early_stopping(data, params):
    # The held-out set would change with every call, so the documented
    # refusal comes before any other check of the data.
    task, X, y, sample_weight, _ = data
    est = _make(task, params)
    kw = {"classes": np.unique(y)} if task in ("binary", "multiclass") else {}
    with pytest.raises(ValueError) as info:
        est.partial_fit(X, y, sample_weight=sample_weight, **kw)
    assert str(info.value) == (
        "partial_fit does not support early_stopping=True: the held-out "
        "set would change with every call. Use fit, or set "
        "early_stopping=False."
    )
    assert not hasattr(est, "coefs_")
