"""The estimators inside scikit-learn's model selection: searches, learning
and validation curves, and sample weights through ``cross_validate``.

Each test runs a scikit-learn tool on a small data set and checks the result
against the same computation done by hand, so that a tool that silently
drops a parameter, the weights, or the random state fails.
"""

import numpy as np
import pytest
from conftest import (
    binary_problem,
    digits_problem,
    regression_problem,
    same_weights,
    small_estimator,
)
from joblib import parallel_config
from scipy.stats import loguniform, randint
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
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
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

ESTIMATORS = (BatchMLPClassifier, BatchMLPRegressor)


def _data(cls):
    return digits_problem() if cls is BatchMLPClassifier else regression_problem()


def _step_name(cls):
    return cls.__name__.lower()


# -- model selection ----------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_grid_search_pipeline_in_worker_processes(cls):
    X, y = _data(cls)
    step = _step_name(cls)
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            (step, small_estimator(cls, learning_rate_init=0.01)),
        ]
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
    X, y = digits_problem(240)
    distributions = {
        "batch_size": randint(8, 65),
        "learning_rate_init": loguniform(1e-3, 1e-1),
    }
    est = small_estimator(BatchMLPClassifier, max_iter=10)
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
    X, y = digits_problem(240)
    est = small_estimator(
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
    est = small_estimator(cls, solver=solver, batch_size=16, learning_rate_init=0.01)
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
    X, y = regression_problem()
    est = small_estimator(BatchMLPRegressor, batch_size=16)
    plain = clone(est).partial_fit(X, y).partial_fit(X, y)
    with_classes = (
        clone(est)
        .partial_fit(X, y, classes=[0, 1])
        .partial_fit(X, y, classes=np.array([3.0]))
    )
    assert same_weights(plain, with_classes)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_validation_curve_over_batch_size(cls):
    X, y = _data(cls)
    X = StandardScaler().fit_transform(X)
    est = small_estimator(cls, max_iter=10, learning_rate_init=0.01)
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
        X, y = binary_problem()
        w = np.where(y == 1, 5.0, 0.2)
    else:
        X, y = regression_problem()
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
    est = small_estimator(cls, batch_size=32)
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
        assert same_weights(routed, by_hand)
        assert not same_weights(routed, plain)
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
    manual = _manual_fold_fits(small_estimator(cls, batch_size=32), X, y, cv, w)
    manual_plain = _manual_fold_fits(small_estimator(cls, batch_size=32), X, y, cv)
    with config_context(enable_metadata_routing=True):
        est = _requesting(small_estimator(cls, batch_size=32))
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
        unset = small_estimator(cls).set_score_request(sample_weight=False)
        with pytest.raises(UnsetMetadataPassedError, match=cls.__name__):
            cross_validate(unset, X, y, cv=cv, params={"sample_weight": w})

    assert np.isfinite(routed["test_score"]).all()
    for a, b, c, d in zip(
        routed["estimator"], manual, unweighted["estimator"], manual_plain
    ):
        assert same_weights(a, b)  # the weights reached fit
        assert not same_weights(a, c)  # and changed it
        assert same_weights(c, d)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cross_validate_routes_sample_weight_through_pipeline(cls):
    X, y, w = _weighted_problem(cls)
    cv = KFold(3, shuffle=True, random_state=0)
    step = _step_name(cls)
    manual = _manual_fold_fits(
        make_pipeline(StandardScaler(), small_estimator(cls, batch_size=32)),
        X,
        y,
        cv,
        w,
        step,
    )
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=False),
            _requesting(small_estimator(cls, batch_size=32)),
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
        assert same_weights(a[-1], b[-1])
        assert not same_weights(a[-1], c[-1])
        np.testing.assert_array_equal(a[0].mean_, c[0].mean_)  # scaler unweighted
