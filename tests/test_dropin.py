"""Drop-in behaviour: where a scikit-learn user would notice a difference.

scikit-learn's MLP is the oracle wherever we behave as it does; where we
differ on purpose, the difference is documented and checked here.
"""

import copy
import pathlib
import re
import warnings

import numpy as np
import pytest
from conftest import without_growth_rule
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils.class_weight import compute_sample_weight

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = dict(hidden_layer_sizes=(5,), random_state=0)
# scikit-learn's whole message; the tests below read it from scikit-learn too.
SKLEARN_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain "
    "large values and need to be preprocessed."
)


def _data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    return X, X @ np.array([1.0, 2.0, 3.0])


# -- 1. a single-class y ------------------------------------------------------


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("label", [3, "a"])
def test_single_class_is_fitted_and_predicted(label, early_stopping):
    X, _ = _data()
    y = np.array([label] * len(X))
    kw = dict(max_iter=5, early_stopping=early_stopping)
    ours = BatchMLPClassifier(**kw, **SMALL).fit(X, y)
    theirs = MLPClassifier(**kw, **SMALL).fit(X, y)
    assert np.array_equal(ours.classes_, theirs.classes_)
    assert np.array_equal(ours.predict(X), theirs.predict(X))
    # A deliberate difference: one column of ones, matching classes_.
    proba = ours.predict_proba(X)
    assert proba.shape == (len(X), 1) and np.all(proba == 1.0)
    assert np.all(ours.predict_log_proba(X) == 0.0)


def test_single_class_in_partial_fit():
    X, _ = _data()
    est = BatchMLPClassifier(**SMALL).partial_fit(X, np.zeros(len(X)), classes=[0])
    assert np.all(est.predict(X) == 0)


# -- 2. divergence -----------------------------------------------------------------

# Full-batch SGD at this rate grows the weights of a linear network epoch by
# epoch: the loss is finite for 8 epochs and non-finite in epoch 9.
DIVERGING = dict(
    hidden_layer_sizes=(8,),
    activation="identity",
    solver="sgd",
    momentum=0.0,
    learning_rate_init=0.5,
    batch_size="full",
    n_iter_no_change=1000,
    max_iter=100,
    random_state=0,
)


def test_divergence_with_early_stopping_keeps_the_best_model():
    X, y = _data()
    est = BatchMLPRegressor(early_stopping=True, **DIVERGING)
    with pytest.warns(ConvergenceWarning, match=r"diverged.*epoch (\d+)") as info:
        est.fit(X, y)
    epoch = int(re.search(r"epoch (\d+)", str(info[-1].message)).group(1))
    assert est.n_iter_ == epoch < DIVERGING["max_iter"]
    assert len(est.validation_scores_) == len(est.loss_curve_) == epoch
    assert np.isnan(est.validation_scores_[-1])
    # Oracle: the same run stopped after its best epoch ends on the best weights.
    best = int(np.nanargmax(est.validation_scores_)) + 1
    params = {**DIVERGING, "max_iter": best}
    reference = BatchMLPRegressor(early_stopping=True, **params).fit(X, y)
    for ours, ref in zip(est.coefs_ + est.intercepts_, reference.coefs_):
        np.testing.assert_array_equal(ours, ref)
    assert np.isfinite(est.predict(X)).all()
    assert est.best_validation_score_ == np.nanmax(est.validation_scores_)


def test_divergence_in_the_first_epoch_still_raises_with_early_stopping():
    X, y = _data()
    params = {**DIVERGING, "learning_rate_init": 1e30, "batch_size": 1}
    est = BatchMLPRegressor(early_stopping=True, **params)
    with pytest.raises(ValueError, match=re.escape(SKLEARN_NON_FINITE)):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")


def _sklearn_message(Est, X, y, **params):
    """scikit-learn's error for ``Est(**params).fit(X, y)``, as a string."""
    with pytest.raises(ValueError) as theirs, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in its loss
        Est(**params).fit(X, y)
    return str(theirs.value)


@pytest.mark.parametrize("case", ["steps", "huge inputs"])
def test_divergence_without_early_stopping_starts_with_sklearns_whole_message(
    monkeypatch, case
):
    without_growth_rule(monkeypatch)  # the weights overflow (the non-finite path)
    X, y = _data()
    params = {k: v for k, v in DIVERGING.items() if k != "batch_size"}
    if case == "huge inputs":  # scikit-learn's own test_nonfinite_params
        X = np.finfo(np.float64).max * np.random.RandomState(0).uniform(size=(10, 2))
        y, params = np.random.RandomState(0).standard_normal(10), {}
    theirs = _sklearn_message(MLPRegressor, X, y * 1e300, batch_size=len(X), **params)
    assert theirs.startswith(SKLEARN_NON_FINITE)
    with pytest.raises(ValueError) as ours, np.errstate(all="ignore"):
        BatchMLPRegressor(batch_size="full", **params).fit(X, y)
    assert str(ours.value).startswith(theirs + " Training diverged: "), str(ours.value)


@pytest.mark.parametrize("new_classes", [[0, 1], [0, 1, 3], [0, 1, 2, 3]])
def test_warm_start_class_mismatch_starts_with_sklearns_whole_message(new_classes):
    X, _ = _data()
    y = np.arange(len(X)) % 3
    y_new = np.asarray(new_classes)[np.arange(len(X)) % len(new_classes)]
    messages = []
    for Est in (MLPClassifier, BatchMLPClassifier):
        est = Est(warm_start=True, max_iter=2, **SMALL).fit(X, y)
        with pytest.raises(ValueError) as info:
            est.fit(X, y_new)
        messages.append(str(info.value))
    assert messages[1].startswith(messages[0] + ". "), messages
    assert "warm_start=False" in messages[1]


# -- 3. an early-stopping split that cannot be stratified ---------------------------


@pytest.mark.parametrize(
    "y, fraction",
    [
        (np.r_[np.zeros(39, int), 7], 0.1),  # class 7, the positive one, is rare
        (np.r_[np.full(39, 9), 7], 0.1),  # class 7, the negative one, is rare
        (np.array(["a"] * 39 + ["b"]), 0.1),  # scikit-learn's test, with strings
        (np.arange(40) % 2, 0.02),  # one held-out row cannot hold both classes
        (np.arange(40) % 2, 0.98),  # one training row cannot
        (np.arange(40) % 2, 0.999),  # no training row: train_test_split's words
    ],
)
def test_binary_split_that_cannot_be_stratified_starts_with_sklearns_message(
    y, fraction
):
    X, _ = _data(n=40)
    params = dict(early_stopping=True, validation_fraction=fraction, **SMALL)
    theirs = _sklearn_message(MLPClassifier, X, y, **params)
    est = BatchMLPClassifier(**params)
    with pytest.raises(ValueError) as ours:
        est.fit(X, y)
    assert str(ours.value).startswith(theirs), (str(ours.value), theirs)
    if "empty" not in theirs:  # then, our explanation follows
        assert re.search(r"stratified, but .*early_stopping=False", str(ours.value))
    if fraction == 0.1:  # the rare class, by its label and by scikit-learn's name
        rare = rf"class {y[-1].item()!r} \('(True|False)' above\)"
        assert re.search(rare, str(ours.value))
    assert not hasattr(est, "coefs_")


def test_multiclass_split_that_cannot_be_stratified_warns_and_is_random():
    X, _ = _data(n=40)
    y = np.r_[np.arange(39) % 2, 2]  # class 2 has one member
    est = BatchMLPClassifier(early_stopping=True, max_iter=3, **SMALL)
    with pytest.warns(UserWarning, match=r"class 2\b.*random"):
        est.fit(X, y)
    assert len(est.validation_scores_) == 3


# -- 4 and 5. documented differences ------------------------------------------------


def _readme_differences():
    text = (ROOT / "README.md").read_text()
    match = re.search(
        r"^## Differences from scikit-learn\n(.*?)(?=^## )", text, re.M | re.S
    )
    assert match, "README.md has no section 'Differences from scikit-learn'"
    return text, match.group(1)


def test_readme_lists_every_deliberate_difference():
    text, section = _readme_differences()
    for topic in [
        r"alpha.*\bS\b",  # the penalty's scale
        r"multi-?output.*\btol\b",  # the loss summed over outputs
        r"multiclass.*stratif",  # the early-stopping split
        r"single class.*predict_proba",  # one column of ones
        r"warm_start.*hidden_layer_sizes",  # refused instead of ignored
        r"diverg.*early.stopping",  # stops at the best model
        r"two epochs in a row\s+exceed 1000 times the first",  # growth raises
        r"clips each predicted\s+probability",  # the log loss from the logits
        r"batch's total\s+sample\s+weight.*row count",  # the weighted loss_curve_
    ]:
        assert re.search(topic, section, re.S | re.I), topic
    # The trajectory claim points to its exceptions.
    claim = " ".join(text.split())
    claim = claim[claim.index("same trajectory") :][:300]
    assert "Differences from scikit-learn" in claim, claim


def test_regressor_docstring_states_the_multi_output_loss_scale():
    doc = " ".join(BatchMLPRegressor.__doc__.split())
    assert re.search(r"summed over outputs.*scikit-learn.*averag.*\btol\b", doc), doc


def test_multi_output_loss_is_k_times_sklearns_on_the_same_trajectory():
    X, _ = _data()
    rng = np.random.RandomState(1)
    Y = X @ rng.randn(3, 4)
    kw = dict(solver="sgd", alpha=0.0, max_iter=5, n_iter_no_change=99, tol=0.0)
    ours = BatchMLPRegressor(batch_size=20, **kw, **SMALL).fit(X, Y)
    theirs = MLPRegressor(batch_size=20, **kw, **SMALL).fit(X, Y)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8)
    ratio = np.array(ours.loss_curve_) / np.array(theirs.loss_curve_)
    np.testing.assert_allclose(ratio, Y.shape[1], rtol=1e-8)


# -- 6. warm_start with other hidden layers ------------------------------------------


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_changed_hidden_layer_sizes_are_refused_when_continuing(method):
    X, y = _data()
    est = BatchMLPRegressor(solver="sgd", warm_start=True, max_iter=2, **SMALL)
    getattr(est, method)(X, y)
    before = [W.copy() for W in est.coefs_]
    est.set_params(hidden_layer_sizes=(7, 2))
    with pytest.raises(ValueError, match=r"\(7, 2\).*\(5,\).*warm_start=False"):
        getattr(est, method)(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, before))
    est.set_params(warm_start=False).fit(X, y)
    assert [W.shape[1] for W in est.coefs_] == [7, 2, 1]


# -- 12. float32 models and inputs beyond float32 range ------------------------------


def test_float32_model_agrees_with_float64_model_beyond_float32_range():
    X, _ = _data()
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    model64 = BatchMLPClassifier(max_iter=50, random_state=0).fit(X, y)
    # The same weights, rounded to float32.
    model32 = copy.deepcopy(model64)
    model32.coefs_ = [W.astype(np.float32) for W in model64.coefs_]
    model32.intercepts_ = [b.astype(np.float32) for b in model64.intercepts_]
    rng = np.random.RandomState(2)
    X_huge = np.sign(rng.randn(30, 3)) * 10.0 ** rng.uniform(40, 300, (30, 3))
    proba = model32.predict_proba(X_huge)
    assert proba.dtype == np.float32 and np.isfinite(proba).all()
    np.testing.assert_array_equal(model32.predict(X_huge), model64.predict(X_huge))
    np.testing.assert_allclose(proba, model64.predict_proba(X_huge), atol=1e-6)


# -- 13. class_weight for multilabel targets -----------------------------------------


def _multilabel():
    X, _ = _data()
    return X, np.c_[X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0.5].astype(int)


def test_multilabel_class_weight_is_a_list_of_dicts():
    X, Y = _multilabel()
    class_weight = [{0: 1.0, 1: 2.0}, {0: 1.0, 1: 3.0}, {0: 0.5, 1: 1.0}]
    ours = BatchMLPClassifier(class_weight=class_weight, max_iter=5, **SMALL).fit(X, Y)
    weights = compute_sample_weight(class_weight, Y)
    ref = BatchMLPClassifier(max_iter=5, **SMALL).fit(X, Y, sample_weight=weights)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X))


@pytest.mark.parametrize(
    "class_weight, multilabel, match",
    [
        ({0: 1.0, 1: 2.0}, True, r"class_weight.*list of 3 dicts"),
        ([{0: 1.0, 1: 2.0}] * 2, True, r"class_weight.*list of 3 dicts"),
        ([{0: 1.0, 1: 2.0}], False, r"class_weight.*multilabel.*one dict"),
        ({0: np.nan, 1: 1.0}, False, r"class_weight.*class 0.*nan.*finite"),
        ([{0: 1.0, 1: -1.0}] * 3, True, r"class_weight.*class 1.*-1.*non-negative"),
    ],
    ids=["dict-multilabel", "short-list", "list-single", "nan", "negative"],
)
def test_class_weight_messages_name_class_weight(class_weight, multilabel, match):
    X, Y = _multilabel()
    y = Y if multilabel else Y[:, 0]
    est = BatchMLPClassifier(class_weight=class_weight, max_iter=2, **SMALL)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "coefs_")


# -- 14. partial_fit's classes must be 1-D -------------------------------------------


def test_partial_fit_refuses_classes_that_are_not_1d():
    X, _ = _data()
    y = (X[:, 0] > 0).astype(int)
    est = BatchMLPClassifier(**SMALL)
    with pytest.raises(ValueError, match=r"classes.*1-D.*\(1, 2\)"):
        est.partial_fit(X, y, classes=[[0, 1]])
    assert not hasattr(est, "coefs_")


def test_the_epoch_loss_weights_batches_by_weight_where_sklearn_counts_rows():
    # At a negligible rate the weights stay at their shared initial values, so
    # every batch's loss is that of the initial network: the epoch losses are
    # the two weightings of the same five batch losses.
    from skbatchnet.backprop import Network

    X, _ = _data(n=100)
    # Batches of different losses (targets of growing scale) and weights.
    y = (X @ np.arange(1.0, X.shape[1] + 1)) * np.repeat([1.0, 2, 3, 4, 5], 20)
    w = np.repeat([0.1, 0.2, 0.5, 1.0, 3.0], 20)
    kw = dict(solver="sgd", alpha=0.0, batch_size=20, shuffle=False, max_iter=1)
    kw.update(learning_rate_init=1e-300, momentum=0.0, **SMALL)
    ours = BatchMLPRegressor(**kw).fit(X, y, sample_weight=w)
    theirs = MLPRegressor(**kw).fit(X, y, sample_weight=w)
    init = Network(
        ours.coefs_, ours.intercepts_, activation="relu", loss="squared_error"
    )
    batch_losses = np.array(
        [
            init.objective(X[b : b + 20], y[b : b + 20, None], w[b : b + 20])
            for b in range(0, 100, 20)
        ]
    )
    weights = w[::20] * 20
    by_weight = np.sum(weights * batch_losses) / weights.sum()
    by_rows = np.mean(batch_losses)
    assert ours.loss_curve_[0] == pytest.approx(by_weight, rel=1e-12)
    assert theirs.loss_curve_[0] == pytest.approx(by_rows, rel=1e-12)
    assert abs(by_weight - by_rows) > 0.1 * by_rows
