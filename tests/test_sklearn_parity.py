"""Trajectory parity with scikit-learn's MLPClassifier / MLPRegressor.

skbatchnet's objective divides the L2 penalty by the total sample weight of
the whole training set, scikit-learn's by the weight of the current batch.
The two coincide at ``alpha=0`` for the stochastic solvers, and always for
L-BFGS (whose "batch" is the whole set), so those are the settings compared.
Same seed, same draws, same floating-point operations: the fitted weights
must agree to rounding.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils.fixes import parse_version

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

RTOL, ATOL = 1e-6, 1e-10
N_SAMPLES, N_FEATURES = 90, 5
BATCH = 32  # 90 = 32 + 32 + 26: the last batch is short

_rng = np.random.RandomState(0)
X = _rng.randn(N_SAMPLES, N_FEATURES)
X[np.abs(X) < 0.6] = 0.0  # about half zeros, so the CSR variant is sparse
_noise = _rng.randn(N_SAMPLES)
# Noisy labels: the classes overlap, so no probability saturates at the eps
# where scikit-learn clips its log loss. (On nearly separable labels an
# L-BFGS line-search trial can reach logits beyond ~36; there scikit-learn's
# clipped loss is capped while ours is exact, and the two line searches part.)
Y_BINARY = (X[:, 0] - X[:, 1] + 2.0 * _noise > 0).astype(int)
Y_MULTICLASS = np.digitize(X[:, 0] + 0.8 * _noise, [-0.5, 0.5])
Y_MULTILABEL = np.column_stack(
    [Y_BINARY, (X[:, 2] + _noise > 0), (X[:, 3] - _noise > 0.3)]
).astype(int)
Y_REG = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * _rng.randn(N_SAMPLES)
Y_MULTI = np.column_stack([Y_REG, X[:, 2] - X[:, 3] ** 2])
Y_COUNTS = _rng.poisson(np.exp(0.4 * X[:, 0] - 0.3 * X[:, 1])).astype(float)
SAMPLE_WEIGHT = _rng.uniform(0.2, 3.0, N_SAMPLES)

TASKS = {
    # task: (ours, scikit-learn's, y, extra constructor parameters)
    "binary": (BatchMLPClassifier, MLPClassifier, Y_BINARY, {}),
    "multiclass": (BatchMLPClassifier, MLPClassifier, Y_MULTICLASS, {}),
    "multilabel": (BatchMLPClassifier, MLPClassifier, Y_MULTILABEL, {}),
    "regression": (BatchMLPRegressor, MLPRegressor, Y_REG, {}),
    "multioutput": (BatchMLPRegressor, MLPRegressor, Y_MULTI, {}),
    "poisson": (BatchMLPRegressor, MLPRegressor, Y_COUNTS, {"loss": "poisson"}),
}

COMMON = dict(
    hidden_layer_sizes=(5, 4),
    alpha=0.0,
    batch_size=BATCH,
    max_iter=6,
    random_state=7,
    early_stopping=False,
    n_iter_no_change=1000,  # never stop early: every fit runs max_iter epochs
)

# (id, task, parameters): every solver variant, activation, schedule, target
# type and batching mode appears at least once.
STOCHASTIC_CASES = [
    (
        "sgd-nesterov-relu-constant-binary",
        "binary",
        dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, activation="relu"),
    ),
    (
        "sgd-heavyball-tanh-invscaling-multiclass",
        "multiclass",
        dict(
            solver="sgd",
            momentum=0.8,
            nesterovs_momentum=False,
            activation="tanh",
            learning_rate="invscaling",
            learning_rate_init=0.2,
            power_t=0.3,
        ),
    ),
    (
        "sgd-plain-logistic-adaptive-multilabel",
        "multilabel",
        dict(
            solver="sgd",
            momentum=0.0,
            activation="logistic",
            learning_rate="adaptive",
            learning_rate_init=0.3,
        ),
    ),
    (
        "adam-identity-regression-noshuffle",
        "regression",
        dict(solver="adam", activation="identity", shuffle=False),
    ),
    (
        "adam-relu-multioutput",
        "multioutput",
        dict(solver="adam", activation="relu", learning_rate_init=0.02),
    ),
    (
        "sgd-nesterov-tanh-poisson",
        "poisson",
        dict(solver="sgd", momentum=0.5, activation="tanh", learning_rate_init=0.02),
    ),
    (
        "adam-tanh-multiclass-noshuffle",
        "multiclass",
        dict(solver="adam", activation="tanh", shuffle=False, learning_rate_init=0.05),
    ),
    (
        "sgd-heavyball-identity-multioutput-auto-batch",
        "multioutput",
        dict(
            solver="sgd",
            nesterovs_momentum=False,
            activation="identity",
            batch_size="auto",
            learning_rate_init=0.05,
        ),
    ),
]
SGD_DEFAULT_LR = 0.1


# scikit-learn 1.7 added sample_weight and loss='poisson' to its MLP.
OLD_SKLEARN_MLP = parse_version(sklearn.__version__) < parse_version("1.7")


def _fit_both(task, params, X_fit=X, sample_weight=None):
    ours_cls, theirs_cls, y, extra = TASKS[task]
    kwargs = {**COMMON, **extra, **params}
    if kwargs.get("solver") == "sgd":
        kwargs.setdefault("learning_rate_init", SGD_DEFAULT_LR)
    if OLD_SKLEARN_MLP and (sample_weight is not None or "loss" in kwargs):
        pytest.skip("scikit-learn < 1.7: its MLP has no sample_weight or loss")
    fit_kw = {} if sample_weight is None else {"sample_weight": sample_weight}
    ours = ours_cls(**kwargs).fit(X_fit, y, **fit_kw)
    theirs = theirs_cls(**kwargs).fit(X_fit, y, **fit_kw)
    return ours, theirs


def _assert_same_weights(ours, theirs, rtol=RTOL, atol=ATOL):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for layer, (a, b) in enumerate(zip(ours.coefs_, theirs.coefs_)):
        assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"coefs_[{layer}]")
    for layer, (a, b) in enumerate(zip(ours.intercepts_, theirs.intercepts_)):
        assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"intercepts_[{layer}]")


def _assert_same_predictions(ours, theirs, X_pred, rtol=RTOL, atol=ATOL):
    if isinstance(ours, BatchMLPClassifier):
        assert_array_equal(ours.predict(X_pred), theirs.predict(X_pred))
        assert_allclose(
            ours.predict_proba(X_pred),
            theirs.predict_proba(X_pred),
            rtol=rtol,
            atol=atol,
        )
    else:
        assert_allclose(
            ours.predict(X_pred), theirs.predict(X_pred), rtol=rtol, atol=atol
        )


@pytest.mark.parametrize("variant", ["dense", "csr", "weighted"])
@pytest.mark.parametrize(
    "task, params",
    [c[1:] for c in STOCHASTIC_CASES],
    ids=[c[0] for c in STOCHASTIC_CASES],
)
def test_stochastic_solvers_match_sklearn(task, params, variant):
    X_fit = sp.csr_matrix(X) if variant == "csr" else X
    sample_weight = SAMPLE_WEIGHT if variant == "weighted" else None
    ours, theirs = _fit_both(task, params, X_fit, sample_weight)

    assert theirs.n_iter_ == COMMON["max_iter"]  # the stopping rule never fired
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_ == COMMON["max_iter"] * N_SAMPLES
    assert ours.out_activation_ == theirs.out_activation_
    expected_batch = N_SAMPLES if params.get("batch_size") == "auto" else BATCH
    assert ours.batch_size_ == expected_batch
    _assert_same_weights(ours, theirs)
    _assert_same_predictions(ours, theirs, X_fit)

    # loss_curve_ is only comparable where both define the epoch loss the
    # same way. scikit-learn (1) averages the squared error over the outputs
    # where we sum it (loss_i = 0.5 ||y_i - yhat_i||^2), and (2) weights each
    # batch's loss by its row count where we weight it by the batch's sample
    # weight. Log losses and the Poisson deviance are summed over outputs by
    # both, so without sample weights every target type but multi-output
    # squared error agrees exactly.
    if sample_weight is None:
        ours_curve = np.asarray(ours.loss_curve_)
        theirs_curve = np.asarray(theirs.loss_curve_)
        if task == "multioutput":
            theirs_curve = theirs_curve * Y_MULTI.shape[1]
        assert ours_curve.shape == (COMMON["max_iter"],)
        assert_allclose(ours_curve, theirs_curve, rtol=1e-9, atol=1e-12)
        assert_allclose(ours.loss_, ours_curve[-1])


def test_weighted_loss_curve_uses_batch_weights_not_row_counts():
    # With sample weights and several batches, our epoch loss weights each
    # batch estimate by its total sample weight; scikit-learn uses row counts,
    # so the curves differ while the weights still agree. A single 'full'
    # batch makes both definitions coincide again.
    params = dict(solver="sgd", activation="tanh")
    ours, theirs = _fit_both("regression", params, sample_weight=SAMPLE_WEIGHT)
    _assert_same_weights(ours, theirs)
    assert not np.allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)

    params = dict(solver="sgd", activation="tanh", batch_size=N_SAMPLES)
    ours, theirs = _fit_both("regression", params, sample_weight=SAMPLE_WEIGHT)
    _assert_same_weights(ours, theirs)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_whole_set_batches_match_sklearn_with_penalty(task, solver, weighted):
    # With one batch holding the whole set, scikit-learn's per-batch penalty
    # (alpha / batch weight) is ours (alpha / S): alpha > 0 must match too.
    params = dict(solver=solver, activation="tanh", alpha=0.5, batch_size=N_SAMPLES)
    sample_weight = SAMPLE_WEIGHT if weighted else None
    ours, theirs = _fit_both(task, params, sample_weight=sample_weight)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    _assert_same_weights(ours, theirs)
    _assert_same_predictions(ours, theirs, X)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize(
    "solver, extra",
    [
        ("sgd", dict(momentum=0.9, nesterovs_momentum=True)),
        ("sgd", dict(momentum=0.9, nesterovs_momentum=False)),
        ("sgd", dict(momentum=0.0)),
        ("adam", dict(learning_rate_init=0.01)),
    ],
    ids=["nesterov", "heavyball", "plain", "adam"],
)
def test_every_activation_and_optimizer(activation, solver, extra):
    params = dict(solver=solver, activation=activation, **extra)
    for task in ("binary", "regression"):
        ours, theirs = _fit_both(task, params)
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.t_ == theirs.t_
        _assert_same_weights(ours, theirs)
        _assert_same_predictions(ours, theirs, X)
        assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize(
    "task, params, expected_n_iter",
    [
        # tol is larger than any improvement: every epoch after the first
        # counts as "no improvement", so the fit stops after 1 + (2 + 1).
        ("binary", dict(solver="sgd", tol=10.0, n_iter_no_change=2), 4),
        ("regression", dict(solver="adam", tol=10.0, n_iter_no_change=3), 5),
        # 'adaptive' divides the rate by 5 at each stall (epochs 3, 5, 7, ...)
        # and stops at the first stall where it is already <= 1e-6: the 9th,
        # 0.1 / 5**8 = 2.6e-7, at epoch 19.
        (
            "multiclass",
            dict(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1),
            19,
        ),
    ],
)
def test_stopping_rules_match_sklearn(task, params, expected_n_iter):
    ours, theirs = _fit_both(task, {**params, "max_iter": 50})
    assert theirs.n_iter_ == expected_n_iter
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9)
    _assert_same_weights(ours, theirs)


def test_warm_start_continues_like_sklearn():
    params = dict(solver="sgd", activation="tanh", warm_start=True, max_iter=3)
    ours, theirs = _fit_both("multiclass", params)
    ours.fit(X, Y_MULTICLASS)
    theirs.fit(X, Y_MULTICLASS)
    assert ours.n_iter_ == theirs.n_iter_ == 3
    assert ours.t_ == theirs.t_ == 6 * N_SAMPLES
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    _assert_same_weights(ours, theirs)


@pytest.mark.parametrize(
    "task, params",
    [
        ("binary", dict(solver="sgd", activation="relu")),
        ("multiclass", dict(solver="adam", activation="tanh", learning_rate_init=0.02)),
        ("regression", dict(solver="adam", activation="logistic")),
        ("multioutput", dict(solver="sgd", activation="tanh", momentum=0.0)),
    ],
)
def test_float32_input_matches_sklearn_and_stays_float32(task, params):
    X32 = X.astype(np.float32)
    ours, theirs = _fit_both(task, params, X32)
    for w in ours.coefs_ + ours.intercepts_:
        assert w.dtype == np.float32
    for w in theirs.coefs_ + theirs.intercepts_:
        assert w.dtype == np.float32
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    # scikit-learn mixes float64 scalars into some updates (Adam's rate is a
    # numpy float64), so the two float32 trajectories round differently.
    _assert_same_weights(ours, theirs, rtol=1e-4, atol=1e-6)
    if isinstance(ours, BatchMLPClassifier):
        proba = ours.predict_proba(X32)
        assert proba.dtype == np.float32
        assert_allclose(proba, theirs.predict_proba(X32), rtol=1e-4, atol=1e-6)
    else:
        pred = ours.predict(X32)
        assert pred.dtype == np.float32
        assert_allclose(pred, theirs.predict(X32), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.1])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_lbfgs_matches_sklearn_for_single_output(task, activation, alpha, weighted):
    # For one output both libraries minimize the same objective, penalty
    # included: scikit-learn's L-BFGS batch is the whole set. (With several
    # squared-error outputs scikit-learn's loss is the mean over outputs but
    # its gradient the sum, so its line search sees a different function.)
    params = dict(solver="lbfgs", activation=activation, alpha=alpha, max_iter=20)
    sample_weight = SAMPLE_WEIGHT if weighted else None
    ours, theirs = _fit_both(task, params, sample_weight=sample_weight)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    _assert_same_weights(ours, theirs)
    _assert_same_predictions(ours, theirs, X)


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
def test_loss_of_unclipped_probabilities_where_sklearn_clips(binary):
    # scikit-learn clips the predicted probabilities to [eps, 1 - eps] before
    # taking the log loss; ours is computed from the logits. The gradients do
    # not clip, so the weights agree; the reported loss differs once a true
    # class gets a probability below eps, as on badly scaled inputs (the
    # digits' pixels times 16) in the first epoch, and agrees on scaled ones.
    from sklearn.datasets import load_digits

    X_digits, y_digits = load_digits(return_X_y=True)
    if binary:
        y_digits = y_digits == 0
    params = dict(alpha=0.0, max_iter=1, random_state=0)
    for X_fit, clipped in ((16.0 * X_digits, True), (X_digits / 16.0, False)):
        ours = BatchMLPClassifier(**params).fit(X_fit, y_digits)
        theirs = MLPClassifier(**params).fit(X_fit, y_digits)
        _assert_same_weights(ours, theirs)
        if clipped:
            assert ours.loss_curve_[0] > theirs.loss_curve_[0] + 1e-3
        else:
            assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
