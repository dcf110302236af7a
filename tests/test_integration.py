"""The estimators inside scikit-learn's own tools: real scenarios, no mocks.

Each test runs a scikit-learn meta-estimator or model-selection tool on a
small data set and checks the result against what the public API promises:
where possible, against the same computation done by hand, so that a tool
that silently drops a parameter, the weights, or the random state fails.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from joblib import parallel_config
from scipy.stats import loguniform, randint
from sklearn import config_context
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.exceptions import NotFittedError, UnsetMetadataPassedError
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    KFold,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_val_score,
    cross_validate,
    learning_curve,
    validation_curve,
)
from sklearn.multioutput import MultiOutputRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ESTIMATORS = (BatchMLPClassifier, BatchMLPRegressor)


# -- data ---------------------------------------------------------------------


def _digits(n=300):
    """A ten-class problem: the first ``n`` digits, pixels as floats."""
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def _binary(n=200, seed=0):
    X, y = make_classification(
        n_samples=n, n_features=6, n_informative=4, random_state=seed
    )
    return X, y


def _regression(n=200, n_targets=1, seed=0):
    X, y = make_regression(
        n_samples=n,
        n_features=6,
        n_informative=4,
        n_targets=n_targets,
        noise=5.0,
        random_state=seed,
    )
    return X, (y - y.mean(axis=0)) / y.std(axis=0)


def _data(cls):
    return _digits() if cls is BatchMLPClassifier else _regression()


def _small(cls, **params):
    base = dict(hidden_layer_sizes=(12,), max_iter=15, random_state=0)
    base.update(params)
    return cls(**base)


def _weights(est):
    return est.coefs_ + est.intercepts_


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    return len(wa) == len(wb) and all(np.array_equal(u, v) for u, v in zip(wa, wb))


def _step_name(cls):
    return cls.__name__.lower()


# -- model selection ----------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_grid_search_pipeline_in_worker_processes(cls):
    X, y = _data(cls)
    step = _step_name(cls)
    pipe = Pipeline(
        [("scale", StandardScaler()), (step, _small(cls, learning_rate_init=0.01))]
    )
    grid = {
        f"{step}__batch_size": [16, "full"],
        f"{step}__gradient_reduction": ["mean", "sum"],
    }
    cv = (StratifiedKFold if cls is BatchMLPClassifier else KFold)(3)
    search = GridSearchCV(pipe, grid, cv=cv, n_jobs=2, error_score="raise")
    with parallel_config(backend="loky"):
        search.fit(X, y)

    results = search.cv_results_
    assert len(results["params"]) == 4
    expected = [
        {f"{step}__batch_size": b, f"{step}__gradient_reduction": r}
        for b in (16, "full")
        for r in ("mean", "sum")
    ]
    assert sorted(map(str, results["params"])) == sorted(map(str, expected))
    split_scores = np.array([results[f"split{i}_test_score"] for i in range(3)])
    assert np.isfinite(split_scores).all()
    assert np.isfinite(results["mean_test_score"]).all()

    # The worker processes computed what a plain sequential run computes.
    for params, scores in zip(results["params"], split_scores.T):
        sequential = cross_val_score(clone(pipe).set_params(**params), X, y, cv=cv)
        np.testing.assert_allclose(scores, sequential, rtol=1e-6, atol=1e-9)

    best = search.best_estimator_
    final = best[-1]
    assert isinstance(final, cls)
    assert (
        final.get_params()["batch_size"] == search.best_params_[f"{step}__batch_size"]
    )
    expected_batch = 16 if final.batch_size == 16 else X.shape[0]
    assert final.batch_size_ == expected_batch
    prediction = best.predict(X)
    assert prediction.shape == (X.shape[0],)
    if cls is BatchMLPClassifier:
        assert set(np.unique(prediction)) <= set(np.unique(y))
    else:
        assert np.isfinite(prediction).all()
    assert search.score(X, y) == pytest.approx(best.score(X, y))


def test_randomized_search_with_scipy_distributions():
    X, y = _digits(240)
    distributions = {
        "batch_size": randint(8, 65),
        "learning_rate_init": loguniform(1e-3, 1e-1),
    }
    est = _small(BatchMLPClassifier, max_iter=10)
    search = RandomizedSearchCV(
        est, distributions, n_iter=4, cv=3, random_state=0, error_score="raise"
    )
    search.fit(X, y)

    results = search.cv_results_
    assert len(results["params"]) == 4
    sizes = [p["batch_size"] for p in results["params"]]
    rates = [p["learning_rate_init"] for p in results["params"]]
    assert all(8 <= b <= 64 and float(b).is_integer() for b in sizes)
    assert all(1e-3 <= r <= 1e-1 for r in rates)
    assert len(set(rates)) == 4
    assert np.isfinite(results["mean_test_score"]).all()

    best = search.best_estimator_
    assert best.batch_size == search.best_params_["batch_size"]
    assert best.batch_size_ == search.best_params_["batch_size"]
    assert best.learning_rate_init == search.best_params_["learning_rate_init"]
    assert best.predict(X).shape == y.shape

    # numpy integers drawn by scipy are valid batch sizes, and the search is
    # reproducible for a fixed random_state.
    again = clone(search).fit(X, y)
    assert [str(p) for p in again.cv_results_["params"]] == [
        str(p) for p in results["params"]
    ]
    np.testing.assert_array_equal(
        again.cv_results_["mean_test_score"], results["mean_test_score"]
    )


def test_halving_search_sets_max_iter():
    X, y = _digits(240)
    est = _small(
        BatchMLPClassifier, max_iter=200, learning_rate_init=0.01, n_iter_no_change=1000
    )
    grid = {"batch_size": [16, "full"], "gradient_reduction": ["mean", "sum"]}
    search = HalvingGridSearchCV(
        est,
        grid,
        resource="max_iter",
        min_resources=5,
        max_resources=20,
        factor=2,
        cv=3,
        random_state=0,
        error_score="raise",
    )
    search.fit(X, y)

    assert search.n_resources_ == [5, 10, 20]
    assert search.n_candidates_ == [4, 2, 1]
    results = search.cv_results_
    assert sorted(set(results["n_resources"])) == [5, 10, 20]
    assert np.isfinite(results["mean_test_score"]).all()
    # Each score of the first round is that of the estimator fitted with
    # max_iter=5: the resource really reaches the estimator.
    first = int(np.flatnonzero(results["iter"] == 0)[0])
    params = {**results["params"][first], "max_iter": 5}
    assert results["params"][first]["max_iter"] == 5
    manual = cross_val_score(clone(est).set_params(**params), X, y, cv=3)
    np.testing.assert_allclose(
        [results[f"split{i}_test_score"][first] for i in range(3)], manual
    )

    best = search.best_estimator_
    assert best.max_iter == search.best_params_["max_iter"] == 20
    assert best.n_iter_ == 20  # the stopping rule is switched off
    assert len(best.loss_curve_) == 20
    assert best.predict(X).shape == y.shape


def _manual_incremental_curve(est, X, y, cv, sizes, classes):
    train_scores, test_scores = [], []
    for train, test in cv.split(X, y):
        model = clone(est)
        fold_train, fold_test = [], []
        for n, chunk in zip(sizes, np.split(train, sizes)[:-1]):
            kwargs = {} if classes is None else {"classes": classes}
            model.partial_fit(X[chunk], y[chunk], **kwargs)
            fold_train.append(model.score(X[train[:n]], y[train[:n]]))
            fold_test.append(model.score(X[test], y[test]))
        train_scores.append(fold_train)
        test_scores.append(fold_test)
    return np.array(train_scores).T, np.array(test_scores).T


@pytest.mark.parametrize(
    "cls, solver", [(BatchMLPClassifier, "sgd"), (BatchMLPRegressor, "adam")]
)
def test_learning_curve_exploits_partial_fit(cls, solver):
    X, y = _data(cls)
    X = StandardScaler().fit_transform(X)
    est = _small(cls, solver=solver, batch_size=16, learning_rate_init=0.01)
    cv = (StratifiedKFold if cls is BatchMLPClassifier else KFold)(3)
    sizes, train_scores, test_scores = learning_curve(
        est,
        X,
        y,
        train_sizes=[40, 80, 120],
        cv=cv,
        exploit_incremental_learning=True,
        error_score="raise",
    )
    np.testing.assert_array_equal(sizes, [40, 80, 120])
    assert train_scores.shape == test_scores.shape == (3, 3)
    assert np.isfinite(train_scores).all() and np.isfinite(test_scores).all()

    # The curve is one partial_fit per chunk, on a single estimator per fold.
    classes = np.unique(y) if cls is BatchMLPClassifier else None
    manual_train, manual_test = _manual_incremental_curve(est, X, y, cv, sizes, classes)
    np.testing.assert_allclose(train_scores, manual_train, rtol=1e-12)
    np.testing.assert_allclose(test_scores, manual_test, rtol=1e-12)


def test_regressor_partial_fit_accepts_and_ignores_classes():
    X, y = _regression()
    est = _small(BatchMLPRegressor, batch_size=16)
    plain = clone(est).partial_fit(X, y).partial_fit(X, y)
    with_classes = (
        clone(est)
        .partial_fit(X, y, classes=[0, 1])
        .partial_fit(X, y, classes=np.array([3.0]))
    )
    assert _same_weights(plain, with_classes)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_validation_curve_over_batch_size(cls):
    X, y = _data(cls)
    X = StandardScaler().fit_transform(X)
    est = _small(cls, max_iter=10, learning_rate_init=0.01)
    cv = (StratifiedKFold if cls is BatchMLPClassifier else KFold)(3)
    param_range = [8, 32, "full", 10_000]
    train_scores, test_scores = validation_curve(
        est,
        X,
        y,
        param_name="batch_size",
        param_range=param_range,
        cv=cv,
        error_score="raise",
    )
    assert train_scores.shape == test_scores.shape == (4, 3)
    assert np.isfinite(train_scores).all() and np.isfinite(test_scores).all()
    # 'full' is one batch of the whole training fold, as is any larger batch.
    np.testing.assert_array_equal(test_scores[2], test_scores[3])
    np.testing.assert_array_equal(train_scores[2], train_scores[3])
    if cls is BatchMLPRegressor:
        # The parameter takes effect: a batch of 8 is another trajectory.
        assert not np.array_equal(test_scores[0], test_scores[2])


# -- sample weights through cross_validate ------------------------------------


def _weighted_problem(cls):
    if cls is BatchMLPClassifier:
        X, y = _binary()
        w = np.where(y == 1, 5.0, 0.2)
    else:
        X, y = _regression()
        w = np.where(X[:, 0] > 0, 5.0, 0.2)
    return X, y, w


def _manual_fold_fits(est, X, y, cv, w=None, step=None):
    fitted = []
    for train, _ in cv.split(X, y):
        model = clone(est)
        if w is None:
            model.fit(X[train], y[train])
        elif step is None:
            model.fit(X[train], y[train], sample_weight=w[train])
        else:
            model.fit(X[train], y[train], **{f"{step}__sample_weight": w[train]})
        fitted.append(model)
    return fitted


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cross_validate_sample_weight_without_routing(cls):
    X, y, w = _weighted_problem(cls)
    est = _small(cls, batch_size=32)
    cv = KFold(3, shuffle=True, random_state=0)
    weighted = cross_validate(
        est,
        X,
        y,
        cv=cv,
        params={"sample_weight": w},
        return_estimator=True,
        error_score="raise",
    )
    unweighted = cross_validate(est, X, y, cv=cv, return_estimator=True)
    manual = _manual_fold_fits(est, X, y, cv, w)
    for routed, by_hand, plain in zip(
        weighted["estimator"], manual, unweighted["estimator"]
    ):
        assert _same_weights(routed, by_hand)
        assert not _same_weights(routed, plain)
    assert np.isfinite(weighted["test_score"]).all()


def _requesting(est):
    """``est`` requesting fit's sample_weight under metadata routing.

    The default scorer calls ``score``, which also takes ``sample_weight``;
    it is declined so the scores stay comparable to the unrouted ones.
    """
    est.set_fit_request(sample_weight=True)
    return est.set_score_request(sample_weight=False)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cross_validate_sample_weight_with_metadata_routing(cls):
    X, y, w = _weighted_problem(cls)
    cv = KFold(3, shuffle=True, random_state=0)
    manual = _manual_fold_fits(_small(cls, batch_size=32), X, y, cv, w)
    manual_plain = _manual_fold_fits(_small(cls, batch_size=32), X, y, cv)
    with config_context(enable_metadata_routing=True):
        est = _requesting(_small(cls, batch_size=32))
        routed = cross_validate(
            est,
            X,
            y,
            cv=cv,
            params={"sample_weight": w},
            return_estimator=True,
            error_score="raise",
        )
        unweighted = cross_validate(
            est, X, y, cv=cv, return_estimator=True, error_score="raise"
        )

        # Weights that fit neither requests nor declines are an error, not
        # silently dropped.
        unset = _small(cls).set_score_request(sample_weight=False)
        with pytest.raises(UnsetMetadataPassedError, match=cls.__name__):
            cross_validate(unset, X, y, cv=cv, params={"sample_weight": w})

    assert np.isfinite(routed["test_score"]).all()
    for a, b, c, d in zip(
        routed["estimator"], manual, unweighted["estimator"], manual_plain
    ):
        assert _same_weights(a, b)  # the weights reached fit
        assert not _same_weights(a, c)  # and changed it
        assert _same_weights(c, d)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cross_validate_routes_sample_weight_through_pipeline(cls):
    X, y, w = _weighted_problem(cls)
    cv = KFold(3, shuffle=True, random_state=0)
    step = _step_name(cls)
    manual = _manual_fold_fits(
        make_pipeline(StandardScaler(), _small(cls, batch_size=32)), X, y, cv, w, step
    )
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=False),
            _requesting(_small(cls, batch_size=32)),
        )
        # In scikit-learn 1.9, with routing on and the last step declining
        # score's sample_weight, the default scorer makes Pipeline.score fail
        # (NaN scores, for any estimator): an explicit scorer declines it.
        metric = "accuracy" if cls is BatchMLPClassifier else "r2"
        scorer = get_scorer(metric).set_score_request(sample_weight=False)
        routed = cross_validate(
            pipe,
            X,
            y,
            cv=cv,
            params={"sample_weight": w},
            scoring=scorer,
            return_estimator=True,
            error_score="raise",
        )
        unweighted = cross_validate(
            pipe,
            X,
            y,
            cv=cv,
            scoring=scorer,
            return_estimator=True,
            error_score="raise",
        )
    assert np.isfinite(routed["test_score"]).all()
    for a, b, c in zip(routed["estimator"], manual, unweighted["estimator"]):
        assert _same_weights(a[-1], b[-1])
        assert not _same_weights(a[-1], c[-1])
        np.testing.assert_array_equal(a[0].mean_, c[0].mean_)  # scaler unweighted


# -- meta-estimators ----------------------------------------------------------


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("data", ["digits", "binary"])
def test_calibrated_classifier(method, data):
    X, y = _digits() if data == "digits" else _binary()
    X = StandardScaler().fit_transform(X)
    est = _small(BatchMLPClassifier, learning_rate_init=0.01)
    calibrated = CalibratedClassifierCV(est, cv=3, method=method).fit(X, y)
    assert len(calibrated.calibrated_classifiers_) == 3
    for member in calibrated.calibrated_classifiers_:
        assert isinstance(member.estimator, BatchMLPClassifier)
        check_is_fitted(member.estimator)
    np.testing.assert_array_equal(calibrated.classes_, np.unique(y))
    proba = calibrated.predict_proba(X)
    assert proba.shape == (X.shape[0], np.unique(y).size)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(
        calibrated.predict(X), calibrated.classes_[proba.argmax(axis=1)]
    )


def test_soft_voting_classifier():
    X, y = _digits()
    X = StandardScaler().fit_transform(X)
    vote = VotingClassifier(
        [
            ("mlp", _small(BatchMLPClassifier, learning_rate_init=0.01)),
            ("lr", LogisticRegression(max_iter=200)),
        ],
        voting="soft",
    ).fit(X, y)
    members = [e.predict_proba(X) for e in vote.estimators_]
    np.testing.assert_allclose(vote.predict_proba(X), np.mean(members, axis=0))
    assert vote.score(X, y) > 0.5


@pytest.mark.parametrize("data", ["digits", "binary"])
def test_stacking_classifier(data):
    X, y = _digits() if data == "digits" else _binary()
    X = StandardScaler().fit_transform(X)
    stack = StackingClassifier(
        [
            ("mlp", _small(BatchMLPClassifier, learning_rate_init=0.01)),
            ("lr", LogisticRegression(max_iter=200)),
        ],
        final_estimator=LogisticRegression(max_iter=200),
        cv=3,
    ).fit(X, y)
    mlp = stack.named_estimators_["mlp"]
    assert isinstance(mlp, BatchMLPClassifier)
    # stack_method='auto' picks predict_proba for the MLP; for two classes the
    # redundant first column is dropped.
    proba = mlp.predict_proba(X)
    block = proba if proba.shape[1] > 2 else proba[:, 1:]
    features = stack.transform(X)
    np.testing.assert_allclose(features[:, : block.shape[1]], block)
    assert stack.stack_method_[0] == "predict_proba"
    assert stack.predict(X).shape == y.shape
    assert stack.score(X, y) > 0.5


def test_multioutput_regressor_and_native_multioutput():
    X, Y = _regression(n_targets=2)
    est = _small(BatchMLPRegressor, learning_rate_init=0.01)

    wrapped = MultiOutputRegressor(est).fit(X, Y)
    native = clone(est).fit(X, Y)
    assert [e.n_outputs_ for e in wrapped.estimators_] == [1, 1]
    assert native.n_outputs_ == 2
    assert wrapped.predict(X).shape == native.predict(X).shape == Y.shape
    assert np.isfinite(wrapped.score(X, Y)) and np.isfinite(native.score(X, Y))
    for k, member in enumerate(wrapped.estimators_):
        alone = clone(est).fit(X, Y[:, k])
        np.testing.assert_array_equal(member.predict(X), alone.predict(X))
        np.testing.assert_array_equal(wrapped.predict(X)[:, k], alone.predict(X))

    # partial_fit is forwarded to every member. (scikit-learn 1.9's
    # MultiOutputRegressor.partial_fit returns None, hence no chaining.)
    incremental = MultiOutputRegressor(clone(est))
    incremental.partial_fit(X, Y)
    incremental.partial_fit(X, Y)
    assert [e.n_iter_ for e in incremental.estimators_] == [2, 2]
    assert incremental.predict(X).shape == Y.shape


# -- clone and parameters -----------------------------------------------------

# A valid value different from the default, for every constructor parameter.
NON_DEFAULT = {
    "hidden_layer_sizes": (7, 3),
    "activation": "tanh",
    "solver": "sgd",
    "alpha": 0.01,
    "batch_size": "full",
    "learning_rate": "adaptive",
    "learning_rate_init": 0.005,
    "power_t": 0.25,
    "max_iter": 7,
    "shuffle": False,
    "random_state": 3,
    "tol": 1e-3,
    "verbose": True,
    "warm_start": True,
    "momentum": 0.5,
    "nesterovs_momentum": False,
    "early_stopping": True,
    "validation_fraction": 0.2,
    "beta_1": 0.8,
    "beta_2": 0.99,
    "epsilon": 1e-7,
    "n_iter_no_change": 4,
    "max_fun": 500,
    "gradient_reduction": "sum",
    "drop_last": "merge",
    "average": 5,
    "class_weight": "balanced",
    "loss": "poisson",
}


def _fit_data(cls):
    if cls is BatchMLPClassifier:
        return _binary(n=80)
    X, y = _regression(n=80)
    return X, np.abs(y)  # the Poisson loss needs non-negative targets


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_of_fitted_estimator_is_unfitted(cls):
    X, y = _fit_data(cls)
    est = _small(cls, batch_size=16, gradient_reduction="sum", drop_last=True)
    est.fit(X, y)
    twin = clone(est)
    assert type(twin) is cls
    with pytest.raises(NotFittedError):
        twin.predict(X)
    for attr in ("coefs_", "intercepts_", "n_iter_", "loss_curve_", "batch_size_"):
        assert not hasattr(twin, attr)
    assert twin.get_params() == est.get_params()
    # The clone trains to the same weights.
    assert _same_weights(twin.fit(X, y), est)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_params_set_params_round_trip_every_parameter(cls, capsys):
    est = cls()
    defaults = est.get_params()
    missing = set(defaults) - set(NON_DEFAULT)
    assert not missing, f"no non-default value to test for {sorted(missing)}"
    for name in defaults:
        value = NON_DEFAULT[name]
        assert value != defaults[name], name
        single = cls().set_params(**{name: value})
        assert single.get_params()[name] is value
        others = {k: v for k, v in single.get_params().items() if k != name}
        assert others == {k: v for k, v in defaults.items() if k != name}
        assert clone(single).get_params()[name] == value
        # Setting the default back restores the original parameters.
        assert single.set_params(**{name: defaults[name]}).get_params() == defaults

    # All at once: accepted by the parameter validation of fit.
    changed = {name: NON_DEFAULT[name] for name in defaults}
    est = cls(**changed)
    assert est.get_params() == changed
    assert cls(**cls().set_params(**changed).get_params()).get_params() == changed
    X, y = _fit_data(cls)
    est.fit(X, y)
    assert est.get_params() == changed  # fit does not alter the parameters
    assert est.n_iter_ <= 7
    assert est.validation_scores_ is not None
    capsys.readouterr()


# -- pandas -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, reference",
    [(BatchMLPClassifier, MLPClassifier), (BatchMLPRegressor, MLPRegressor)],
)
def test_dataframe_feature_names(cls, reference):
    X, y = _binary() if cls is BatchMLPClassifier else _regression()
    columns = [f"f{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=columns)
    est = _small(cls).fit(df, y)
    ref = reference(hidden_layer_sizes=(12,), max_iter=15, random_state=0).fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, columns)
    assert est.n_features_in_ == X.shape[1]
    # Same weights as from the frame's array: names do not change the fit.
    # (Compared with to_numpy(), which keeps the frame's Fortran memory
    # layout: a fit on the C-ordered X can differ in the last bits.)
    assert _same_weights(est, _small(cls).fit(df.to_numpy(), y))

    def outcome(model, data):
        name = type(model).__name__
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.predict(data)
            except Exception as exc:  # noqa: BLE001
                return type(exc), str(exc).replace(name, "<est>")
        return None, [str(w.message).replace(name, "<est>") for w in caught]

    reordered = df[columns[::-1]]
    renamed = df.rename(columns={"f0": "zz"})
    for data in (reordered, renamed, df.iloc[:, :-1], X):
        assert outcome(est, data) == outcome(ref, data)
    kind, message = outcome(est, reordered)
    assert kind is ValueError and "same order" in message
    kind, messages = outcome(est, X)
    assert kind is None and any("valid feature names" in m for m in messages)

    # Fitted on an array, predicting on a frame warns as scikit-learn does.
    bare = _small(cls).fit(X, y)
    assert not hasattr(bare, "feature_names_in_")
    bare_ref = reference(hidden_layer_sizes=(12,), max_iter=15, random_state=0)
    assert outcome(bare, df) == outcome(bare_ref.fit(X, y), df)
    assert outcome(bare, df)[1]

    # partial_fit checks the names of later chunks.
    classes = {"classes": np.unique(y)} if cls is BatchMLPClassifier else {}
    incremental = _small(cls).partial_fit(df, y, **classes)
    with pytest.raises(ValueError, match="same order"):
        incremental.partial_fit(reordered, y)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_series_targets(cls):
    X, y = _binary() if cls is BatchMLPClassifier else _regression()
    from_series = _small(cls).fit(X, pd.Series(y, name="target"))
    from_array = _small(cls).fit(X, y)
    assert _same_weights(from_series, from_array)
    np.testing.assert_array_equal(from_series.predict(X), from_array.predict(X))
    assert from_series.score(X, pd.Series(y)) == from_array.score(X, y)

    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    both = _small(cls).fit(df, pd.Series(y, index=df.index))
    assert _same_weights(both, _small(cls).fit(df.to_numpy(), y))
    # Shuffled index labels: rows are matched by position, as in scikit-learn.
    shuffled = pd.Series(y, index=np.random.RandomState(0).permutation(len(y)))
    assert _same_weights(_small(cls).fit(X, shuffled), from_array)


@pytest.mark.parametrize("dtype", [object, "string", "category", None])
def test_string_labels_in_series(dtype):
    X, y = _digits(200)
    names = np.array("zero one two three four five six seven eight nine".split())
    labels = pd.Series(names[y], dtype=dtype)
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    est = _small(BatchMLPClassifier).fit(df, labels)
    np.testing.assert_array_equal(est.classes_, np.sort(names))
    predicted = est.predict(df)
    assert set(predicted) <= set(names)

    # The same model as with integer codes in the order of the sorted names.
    codes = np.searchsorted(np.sort(names), names[y])
    array = df.to_numpy()
    coded = _small(BatchMLPClassifier).fit(array, codes)
    assert _same_weights(est, coded)
    np.testing.assert_array_equal(predicted, np.sort(names)[coded.predict(array)])
    np.testing.assert_array_equal(est.predict_proba(df), coded.predict_proba(array))
    assert est.score(df, labels) == coded.score(array, codes)

    # Grid search with string labels in a Series.
    search = GridSearchCV(
        _small(BatchMLPClassifier, max_iter=5),
        {"batch_size": [32, "full"]},
        cv=3,
        error_score="raise",
    ).fit(df, labels)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert set(search.predict(df)) <= set(names)
