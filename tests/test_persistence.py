"""Saving and loading fitted estimators: pickle, joblib and skops.

A reloaded estimator must predict exactly as the original and, for the
stochastic solvers, continue ``partial_fit`` exactly as the original would:
the optimizer state and the random stream are part of what is saved.

The skops tests need ``skops`` (``pip install skops``); they are skipped
without it.
"""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import (
    load_digits,
    make_multilabel_classification,
    make_regression,
)

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

ESTIMATORS = (BatchMLPClassifier, BatchMLPRegressor)
SOLVERS = ("sgd", "adam", "lbfgs")

# The fitted attributes documented as public, compared after a round trip.
PUBLIC_ATTRIBUTES = (
    "loss_",
    "best_loss_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "t_",
    "coefs_",
    "intercepts_",
    "n_features_in_",
    "feature_names_in_",
    "n_iter_",
    "n_layers_",
    "n_outputs_",
    "out_activation_",
    "batch_size_",
    "classes_",
)


def _digits(n=200):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _regression(n=150, n_targets=1):
    X, y = make_regression(
        n_samples=n, n_features=8, n_targets=n_targets, noise=1.0, random_state=0
    )
    return X, y / y.std()


def _data(cls):
    return _digits() if cls is BatchMLPClassifier else _regression()


def _estimator(cls, solver="adam", **params):
    base = dict(
        hidden_layer_sizes=(10,),
        solver=solver,
        max_iter=8,
        batch_size=32,
        learning_rate_init=0.01,
        random_state=0,
    )
    base.update(params)
    return cls(**base)


def _pickled(est):
    return pickle.loads(pickle.dumps(est))


def _assert_same_params(a, b):
    pa, pb = a.get_params(), b.get_params()
    assert pa.keys() == pb.keys()
    for name in pa:
        u, v = pa[name], pb[name]
        if isinstance(u, np.random.RandomState):
            # A RandomState parameter is saved with its state, as pickle does.
            assert isinstance(v, np.random.RandomState), name
            for p, q in zip(u.get_state(), v.get_state()):
                np.testing.assert_array_equal(p, q, err_msg=name)
        else:
            assert u == v, name


def _assert_same_public_state(a, b):
    assert type(a) is type(b)
    _assert_same_params(a, b)
    for name in PUBLIC_ATTRIBUTES:
        assert hasattr(a, name) == hasattr(b, name), name
        if not hasattr(a, name):
            continue
        u, v = getattr(a, name), getattr(b, name)
        if isinstance(u, list):
            assert len(u) == len(v), name
            for p, q in zip(u, v):
                np.testing.assert_array_equal(p, q, err_msg=name)
                assert np.asarray(p).dtype == np.asarray(q).dtype, name
        elif isinstance(u, np.ndarray):
            np.testing.assert_array_equal(u, v, err_msg=name)
            assert u.dtype == v.dtype, name
        else:
            assert u == v or (u != u and v != v), name  # NaN equals NaN here


def _assert_same_predictions(a, b, X):
    assert np.array_equal(a.predict(X), b.predict(X))
    if hasattr(a, "predict_proba"):
        assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
        assert np.array_equal(a.predict_log_proba(X), b.predict_log_proba(X))


def _assert_same_weights(a, b):
    wa, wb = a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        assert np.array_equal(u, v)


# -- pickle and joblib --------------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_round_trip(cls, solver, protocol):
    X, y = _data(cls)
    est = _estimator(cls, solver).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est, protocol=protocol))
    _assert_same_predictions(est, loaded, X)
    _assert_same_public_state(est, loaded)
    assert loaded.score(X, y) == est.score(X, y)


def test_pickle_round_trip_of_unfitted_estimator():
    for cls in ESTIMATORS:
        est = _estimator(cls, gradient_reduction="sum", drop_last="merge")
        loaded = _pickled(est)
        assert loaded.get_params() == est.get_params()
        X, y = _data(cls)
        _assert_same_weights(loaded.fit(X, y), est.fit(X, y))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_pickle_round_trip_keeps_feature_names(cls):
    X, y = _data(cls)
    df = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    est = _estimator(cls).fit(df, y)
    loaded = _pickled(est)
    np.testing.assert_array_equal(loaded.feature_names_in_, df.columns)
    _assert_same_predictions(est, loaded, df)
    with pytest.raises(ValueError, match="same order"):
        loaded.predict(df[df.columns[::-1]])


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_joblib_memory_mapped_model_predicts(cls, tmp_path):
    X, y = _data(cls)
    est = _estimator(cls, hidden_layer_sizes=(40, 20)).fit(X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path, mmap_mode="r")
    _assert_same_predictions(est, loaded, X)
    _assert_same_public_state(est, loaded)


# -- skops --------------------------------------------------------------------


def _skops_cases():
    """(id, estimator factory, X, y) for the configurations saved with skops."""
    X_digits, y_digits = _digits()
    X_reg, y_reg = _regression()
    X_multi, Y_multi = make_multilabel_classification(
        n_samples=120, n_features=8, n_classes=3, random_state=0
    )
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    frame = pd.DataFrame(X_reg, columns=[f"c{i}" for i in range(X_reg.shape[1])])
    cases = []
    for solver in SOLVERS:
        cases.append(
            (
                f"clf-{solver}",
                lambda s=solver: _estimator(BatchMLPClassifier, s),
                X_digits,
                y_digits,
            )
        )
        cases.append(
            (
                f"reg-{solver}",
                lambda s=solver: _estimator(BatchMLPRegressor, s),
                X_reg,
                y_reg,
            )
        )
    cases += [
        (
            "clf-string-labels",
            lambda: _estimator(BatchMLPClassifier),
            X_digits,
            names[y_digits],
        ),
        (
            "clf-object-labels",
            lambda: _estimator(BatchMLPClassifier),
            X_digits,
            names[y_digits].astype(object),
        ),
        ("clf-multilabel", lambda: _estimator(BatchMLPClassifier), X_multi, Y_multi),
        ("clf-binary", lambda: _estimator(BatchMLPClassifier), X_digits, y_digits % 2),
        (
            "clf-early-stopping",
            lambda: _estimator(BatchMLPClassifier, "sgd", early_stopping=True),
            X_digits,
            y_digits,
        ),
        (
            "reg-early-stopping",
            lambda: _estimator(BatchMLPRegressor, early_stopping=True),
            X_reg,
            y_reg,
        ),
        (
            "clf-class-weight",
            lambda: _estimator(BatchMLPClassifier, class_weight="balanced"),
            X_digits,
            y_digits,
        ),
        (
            "reg-poisson",
            lambda: _estimator(BatchMLPRegressor, loss="poisson"),
            X_reg,
            np.abs(y_reg),
        ),
        (
            "reg-multioutput",
            lambda: _estimator(BatchMLPRegressor),
            *_regression(n_targets=2),
        ),
        (
            "reg-float32",
            lambda: _estimator(BatchMLPRegressor),
            X_reg.astype(np.float32),
            y_reg.astype(np.float32),
        ),
        ("reg-dataframe", lambda: _estimator(BatchMLPRegressor), frame, y_reg),
        (
            "reg-random-state-instance",
            lambda: _estimator(
                BatchMLPRegressor, random_state=np.random.RandomState(1)
            ),
            X_reg,
            y_reg,
        ),
        (
            "clf-average",
            lambda: _estimator(BatchMLPClassifier, average=True),
            X_digits,
            y_digits,
        ),
        (
            "reg-average-after-k",
            lambda: _estimator(BatchMLPRegressor, "sgd", average=100),
            X_reg,
            y_reg,
        ),
        (
            "clf-sum-drop-last",
            lambda: _estimator(
                BatchMLPClassifier,
                "sgd",
                gradient_reduction="sum",
                learning_rate_init=1e-4,
                drop_last=True,
            ),
            X_digits,
            y_digits,
        ),
    ]
    return cases


SKOPS_CASES = _skops_cases()


@pytest.mark.parametrize(
    "make, X, y", [case[1:] for case in SKOPS_CASES], ids=[c[0] for c in SKOPS_CASES]
)
def test_skops_round_trip_trusts_only_skbatchnet_types(make, X, y, tmp_path):
    sio = pytest.importorskip("skops.io")
    est = make().fit(X, y)
    path = tmp_path / "model.skops"
    sio.dump(est, path)

    from_file = sio.get_untrusted_types(file=path)
    from_data = sio.get_untrusted_types(data=sio.dumps(est))
    assert sorted(from_file) == sorted(from_data)
    foreign = [t for t in from_file if not t.startswith("skbatchnet.")]
    assert not foreign, f"types outside skbatchnet need trusting: {foreign}"
    # The estimator's own class is among them (skops trusts no third party).
    assert any(t.endswith(f".{type(est).__name__}") for t in from_file)

    loaded = sio.load(path, trusted=from_file)
    _assert_same_predictions(est, loaded, X)
    _assert_same_public_state(est, loaded)


def test_skops_refuses_untrusted_types_by_default(tmp_path):
    sio = pytest.importorskip("skops.io")
    X, y = _digits()
    path = tmp_path / "model.skops"
    sio.dump(_estimator(BatchMLPClassifier).fit(X, y), path)
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)


# -- continuing partial_fit after a reload ------------------------------------


def _pickle_round_trip(est, tmp_path):
    return _pickled(est)


def _skops_round_trip(est, tmp_path):
    sio = pytest.importorskip("skops.io")
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


@pytest.mark.parametrize("how", ["pickle", "skops"])
@pytest.mark.parametrize("start", ["partial_fit", "fit"])
@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_reloaded_model_continues_partial_fit_exactly(
    cls, solver, average, start, how, tmp_path
):
    X, y = _data(cls)
    kwargs = {"classes": np.unique(y)} if cls is BatchMLPClassifier else {}
    est = _estimator(
        cls, solver, shuffle=True, random_state=7, batch_size=24, average=average
    )
    if start == "fit":
        est.set_params(max_iter=3).fit(X, y)
    else:
        est.partial_fit(X, y, **kwargs)
    before = [w.copy() for w in est.coefs_ + est.intercepts_]

    reload = _pickle_round_trip if how == "pickle" else _skops_round_trip
    loaded = reload(est, tmp_path)
    _assert_same_weights(est, loaded)
    halves = np.array_split(np.arange(X.shape[0]), 2)
    for part in halves:
        est.partial_fit(X[part], y[part])
        loaded.partial_fit(X[part], y[part])

    _assert_same_weights(est, loaded)
    assert loaded.n_iter_ == est.n_iter_
    assert loaded.t_ == est.t_
    assert loaded.loss_curve_ == est.loss_curve_
    # The two calls did move the weights: the comparison is not vacuous.
    after = est.coefs_ + est.intercepts_
    assert not all(np.array_equal(u, v) for u, v in zip(before, after))


@pytest.mark.parametrize("how", ["pickle", "skops"])
def test_reloaded_copies_are_independent(how, tmp_path):
    # Training the reloaded copy must not touch the original (no shared arrays,
    # random stream or optimizer state).
    X, y = _regression()
    est = _estimator(BatchMLPRegressor, "sgd").fit(X, y)
    snapshot = clone(est).fit(X, y)
    reload = _pickle_round_trip if how == "pickle" else _skops_round_trip
    loaded = reload(est, tmp_path)
    loaded.partial_fit(X, y)
    loaded.partial_fit(X, y)
    _assert_same_weights(est, snapshot)
    est.partial_fit(X, y)
    snapshot.partial_fit(X, y)
    _assert_same_weights(est, snapshot)
