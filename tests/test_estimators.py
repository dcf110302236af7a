"""Behaviour of BatchMLPClassifier / BatchMLPRegressor as estimators.

``warm_start``, ``drop_last`` and divergence have their own test modules.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    SMALL,
    allclose_weights,
    bitwise_equal,
    copied_weights,
    make_data,
    pickled_state,
    spy_split,
)
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.preprocessing import LabelBinarizer

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, Minibatcher, Network


class _Recorder(BatchMLPClassifier):
    """Logs the held-out labels and the weights at each validation scoring."""

    def _score_output(self, output, y, sample_weight):
        log = self.__dict__.setdefault("log", [])
        log.append((np.asarray(y).copy(), copied_weights(self)))
        return super()._score_output(output, y, sample_weight)


@pytest.mark.parametrize("solver, stateful", [("adam", 1), ("sgd", 1), ("sgd", 0)])
def test_partial_fit_keeps_optimizer_state(solver, stateful):
    # Second call of a continuing estimator vs. a single step taken from the
    # same weights with a fresh optimizer (warm-start fit, max_iter=1). With
    # plain SGD (momentum=0) the optimizer has no state: both must agree, which
    # shows the comparison isolates the optimizer state.
    X, y, _ = make_data()
    kw = dict(learning_rate_init=0.01, batch_size=5, shuffle=False, **SMALL)
    est = BatchMLPRegressor(solver=solver, momentum=0.9 if stateful else 0.0, **kw)
    cont = clone(est).partial_fit(X, y).partial_fit(X, y)
    fresh = clone(est).partial_fit(X, y)
    fresh.set_params(warm_start=True, max_iter=1).fit(X, y)
    # Without optimizer state the two runs make the same operations in the
    # same order: bit for bit the same weights.
    assert bitwise_equal(copied_weights(cont), copied_weights(fresh)) is not bool(
        stateful
    )


def test_partial_fit_continues_random_stream():
    # Reference: the documented stream is initialization, then one
    # RandomState.shuffle of arange(n) per epoch. Replaying the estimator's
    # batches in order with shuffle=False reproduces it exactly, so the
    # "replayed shuffle" and "fresh stream" alternatives are valid models too.
    X, y, _ = make_data(n=25)
    kw = dict(solver="sgd", momentum=0.0, learning_rate_init=0.05, batch_size=1)
    cont = BatchMLPRegressor(shuffle=True, **kw, **SMALL)
    cont.partial_fit(X, y).partial_fit(X, y)

    def order(rng):
        batches = next(Minibatcher(1, shuffle=True, random_state=rng).iter_epochs(25))
        return np.concatenate(batches)

    rng = np.random.RandomState(0)
    Network.initialize([4, 6, 1], loss="squared_error", random_state=rng)
    first, second = order(rng), order(rng)
    fresh_stream = order(np.random.RandomState(0))
    assert sorted(second) == list(range(25))
    assert not np.array_equal(first, second)

    def replay(*orders):
        ref = BatchMLPRegressor(shuffle=False, **kw, **SMALL)
        for o in orders:
            ref.partial_fit(X[o], y[o])
        return copied_weights(ref)

    assert allclose_weights(copied_weights(cont), replay(first, second), rtol=1e-10)
    assert not allclose_weights(copied_weights(cont), replay(first, first))
    assert not allclose_weights(copied_weights(cont), replay(first, fresh_stream))
    # Black-box: a clone started from the same weights with a fresh stream
    # (warm-start fit of one epoch) takes a different second step.
    clone_ = BatchMLPRegressor(shuffle=True, **kw, **SMALL).partial_fit(X, y)
    clone_.set_params(warm_start=True, max_iter=1).fit(X, y)
    assert not allclose_weights(copied_weights(cont), copied_weights(clone_))


def test_regressor_partial_fit_ignores_classes():
    X, y, _ = make_data()
    a = BatchMLPRegressor(solver="sgd", **SMALL).partial_fit(X, y, classes=[1, 2])
    b = BatchMLPRegressor(solver="sgd", **SMALL).partial_fit(X, y)
    assert bitwise_equal(copied_weights(a), copied_weights(b))


@pytest.mark.parametrize("Est", [BatchMLPClassifier, BatchMLPRegressor])
def test_partial_fit_unavailable_for_lbfgs(Est):
    est = Est(solver="lbfgs")
    assert not hasattr(est, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit"):
        est.partial_fit(np.ones((2, 1)), [0.0, 1.0])
    assert hasattr(est.set_params(solver="sgd"), "partial_fit")


def test_classifier_first_partial_fit_requires_classes():
    X, _, y = make_data()
    est = BatchMLPClassifier(solver="sgd", **SMALL)
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X, y)
    assert not hasattr(est, "coefs_")
    Y = np.column_stack([y == 0, y == 1, y != 1]).astype(int)
    est.partial_fit(X, Y)  # multilabel: the label set is the columns
    assert est.predict(X).shape == Y.shape


def test_partial_fit_unseen_labels_leave_estimator_unchanged():
    X, _, y = make_data()
    est = BatchMLPClassifier(solver="sgd", **SMALL)
    with pytest.raises(ValueError, match=r"\[2\]"):
        est.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(est, "coefs_")
    assert vars(est) == est.get_params(deep=False)

    est.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    before = pickled_state(est)
    y_bad = y.copy()
    y_bad[:3] = [7, 9, 7]
    with pytest.raises(ValueError, match=r"\[7, 9\]"):
        est.partial_fit(X, y_bad)
    assert pickled_state(est) == before
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X, y, classes=[0, 1, 2, 3])
    assert pickled_state(est) == before

    fitted = BatchMLPClassifier(solver="adam", max_iter=3, **SMALL).fit(X, y)
    before = pickled_state(fitted)
    with pytest.raises(ValueError, match=r"\[7, 9\]"):
        fitted.partial_fit(X, y_bad)
    assert pickled_state(fitted) == before


def test_partial_fit_counters():
    X, _, y = make_data()
    est = BatchMLPClassifier(solver="adam", batch_size=7, **SMALL)
    est.partial_fit(X, y, classes=[0, 1, 2])
    assert (est.n_iter_, est.t_) == (1, 40)
    est.partial_fit(X[:13], y[:13])
    assert (est.n_iter_, est.t_) == (2, 53)
    assert len(est.loss_curve_) == 2


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_fit_attributes(solver):
    X, _, y = make_data()
    est = BatchMLPClassifier(
        hidden_layer_sizes=(5, 3), solver=solver, max_iter=7, random_state=0
    ).fit(X, y)
    assert [c.shape for c in est.coefs_] == [(4, 5), (5, 3), (3, 3)]
    assert [b.shape for b in est.intercepts_] == [(5,), (3,), (3,)]
    assert (est.n_layers_, est.n_outputs_, est.n_features_in_) == (4, 3, 4)
    assert est.out_activation_ == "softmax" and list(est.classes_) == [0, 1, 2]
    assert 1 <= est.n_iter_ <= 7
    assert np.isfinite(est.loss_) and est.loss_ > 0
    assert est.best_loss_ == min(est.loss_curve_)
    if solver == "lbfgs":
        assert len(est.loss_curve_) >= est.n_iter_ - 1
    else:
        assert (len(est.loss_curve_), est.n_iter_, est.t_) == (7, 7, 280)
        assert (est.loss_, est.batch_size_) == (est.loss_curve_[-1], 40)
        assert est.validation_scores_ is est.best_validation_score_ is None


@pytest.mark.parametrize(
    "Est, params, y_kind, expected, n_outputs",
    [
        (BatchMLPRegressor, {}, "reg", "identity", 1),
        (BatchMLPRegressor, {"loss": "poisson"}, "count", "exp", 1),
        (BatchMLPClassifier, {}, "binary", "logistic", 1),
        (BatchMLPClassifier, {}, "multilabel", "logistic", 2),
        (BatchMLPClassifier, {}, "multiclass", "softmax", 3),
    ],
)
def test_out_activation(Est, params, y_kind, expected, n_outputs):
    X, y_reg, y_cls = make_data()
    y = {
        "reg": y_reg,
        "count": np.round(np.abs(y_reg)),
        "binary": y_cls % 2,
        "multilabel": np.column_stack([y_cls == 0, y_cls == 1]).astype(int),
        "multiclass": y_cls,
    }[y_kind]
    est = Est(max_iter=2, **params, **SMALL).fit(X, y)
    assert (est.out_activation_, est.n_outputs_) == (expected, n_outputs)


def test_feature_names_in():
    pd = pytest.importorskip("pandas")
    X, y, _ = make_data()
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = BatchMLPRegressor(max_iter=2, **SMALL).fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b", "c", "d"])
    assert not hasattr(BatchMLPRegressor(max_iter=2).fit(X, y), "feature_names_in_")


@pytest.mark.parametrize(
    "batch_size, n, expected",
    [("auto", 250, 200), ("auto", 30, 30), ("full", 250, 250), (500, 30, 30)],
)
def test_batch_size_resolved(batch_size, n, expected):
    X, y, _ = make_data(n=n)
    est = BatchMLPRegressor(batch_size=batch_size, max_iter=1, **SMALL).fit(X, y)
    assert est.batch_size_ == expected


def test_early_stopping_attributes(monkeypatch):
    # Exact oracle: each epoch's validation score and loss recomputed from the
    # same held-out rows and that epoch's weights (logged by _Recorder).
    parts = spy_split(monkeypatch)
    X, _, y = make_data(n=60)
    w = np.linspace(0.2, 3.0, 60)
    est = _Recorder(early_stopping=True, max_iter=6, n_iter_no_change=100, **SMALL)
    est.fit(X, y, sample_weight=w)
    X_val, _, y_val, w_val = parts["val"]
    Y_val = LabelBinarizer().fit(est.classes_).transform(y_val)
    scores, losses = [], []
    for _, weights in est.log:
        net = Network(
            weights[:2], weights[2:], activation=est.activation, loss="log_loss"
        )
        predicted = est.classes_[net.decision_function(X_val).argmax(axis=1)]
        scores.append(np.average(predicted == y_val, weights=w_val))
        losses.append(np.average(net.per_example_loss(X_val, Y_val), weights=w_val))
    assert len(est.log) == 6
    assert est.validation_scores_ == pytest.approx(scores, rel=1e-15)
    assert est.validation_loss_curve_ == pytest.approx(losses, rel=1e-12)
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.best_loss_ is None
    assert est.batch_size_ == 54  # 'auto' on the 54 training rows


def test_early_stopping_keeps_best_weights():
    X, _, y = make_data(n=80)
    kw = dict(solver="sgd", learning_rate_init=0.5, batch_size=8, n_iter_no_change=99)
    est = _Recorder(early_stopping=True, max_iter=12, **kw, **SMALL).fit(X, y)
    snapshots = [weights for _, weights in est.log]
    best = int(np.argmax(est.validation_scores_))
    assert len(snapshots) == est.n_iter_ == 12
    assert best < 11, "precondition: the last epoch is not the best"
    assert bitwise_equal(copied_weights(est), snapshots[best])
    assert not allclose_weights(copied_weights(est), snapshots[-1])


@pytest.mark.parametrize(
    "counts, fraction, expected",
    [((24, 16), 0.25, (6, 4)), ((10, 10, 10, 10), 0.2, (2, 2, 2, 2))],
)
def test_early_stopping_split_is_stratified(counts, fraction, expected):
    y = np.repeat(np.arange(len(counts)), counts)
    X = np.random.RandomState(0).randn(y.size, 3) + y[:, None]
    kw = dict(early_stopping=True, validation_fraction=fraction, batch_size="full")
    # A random split hits the exact proportions only by luck; across 8 seeds
    # all hits would be an event of probability < 1e-4.
    for seed in range(8):
        est = _Recorder((4,), max_iter=2, random_state=seed, **kw).fit(X, y)
        assert est.batch_size_ == y.size - sum(expected)  # training rows
        assert len(est.log) == 2
        for y_val, _ in est.log:
            assert tuple(np.bincount(y_val, minlength=len(counts))) == expected


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("fmt", [sp.csr_matrix, sp.csc_matrix])
def test_sparse_matches_dense(solver, fmt):
    rng = np.random.RandomState(0)
    X = rng.randn(60, 8) * (rng.rand(60, 8) < 0.3)
    y = rng.randint(0, 3, 60)
    est = BatchMLPClassifier(solver=solver, max_iter=15, batch_size=16, **SMALL)
    dense, sparse = clone(est).fit(X, y), clone(est).fit(fmt(X), y)
    assert allclose_weights(
        copied_weights(dense),
        copied_weights(sparse),
        rtol=1e-8,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        dense.predict_proba(X), sparse.predict_proba(fmt(X)), rtol=1e-8
    )


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_float32_stays_float32(solver):
    X, _, y = make_data()
    X32 = X.astype(np.float32)
    est = BatchMLPClassifier(solver=solver, max_iter=5, **SMALL).fit(X32, y)
    assert {p.dtype for p in est.coefs_ + est.intercepts_} == {np.dtype(np.float32)}
    assert est.predict_proba(X32).dtype == np.float32
    assert est.predict_log_proba(X32).dtype == np.float32
    reg = BatchMLPRegressor(solver=solver, max_iter=5, **SMALL).fit(X32, X32[:, 0])
    assert reg.coefs_[0].dtype == np.float32
    assert reg.predict(X32).dtype == np.float32


def test_target_types():
    X, y_reg, y = make_data()
    Y = np.column_stack([y_reg, -y_reg, 2 * y_reg])
    reg = BatchMLPRegressor(max_iter=3, **SMALL).fit(X, Y)
    assert reg.predict(X).shape == (40, 3) and reg.predict(X[:1]).shape == (1, 3)
    assert reg.n_outputs_ == 3 and reg.coefs_[-1].shape == (6, 3)

    Y = np.column_stack([y == 0, y == 1, y > 0]).astype(int)
    multilabel = BatchMLPClassifier(max_iter=20, **SMALL).fit(X, Y)
    assert multilabel.predict(X).shape == multilabel.predict_proba(X).shape == Y.shape
    assert set(np.unique(multilabel.predict(X))) <= {0, 1}

    labels = np.array(["cat", "dog", "eel"])[y]
    est = BatchMLPClassifier(max_iter=20, **SMALL).fit(X, labels)
    pred = est.predict(X)
    assert pred.dtype.kind in "UO" and set(pred) <= {"cat", "dog", "eel"}
    np.testing.assert_array_equal(est.classes_, ["cat", "dog", "eel"])
    binary = BatchMLPClassifier(max_iter=5, **SMALL).fit(X, labels == "cat")
    assert binary.predict(X).dtype == bool


@pytest.mark.parametrize(
    "classes, y",
    [
        ([0, 1, 2], [2, 0, 1, 1]),
        ([-3, 7, 10, 11], [11, -3, 11]),
        ([1.0, 2.0, 3.0], np.array([3.0, 1.0])),
        (["cat", "dog", "eel"], ["eel", "cat", "eel"]),
        (np.array(["b", "a", "c"], dtype=object), np.array(["a", "c"], dtype=object)),
        ([0, 1], [1, 0, 1]),  # binary: one column
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_targets_encoded_as_label_binarizer_does(classes, y, dtype):
    # The oracle is scikit-learn's LabelBinarizer, whose encoding the fast
    # multiclass path replaces; classes may include labels absent from y
    # (partial_fit's `classes`).
    from sklearn.preprocessing import LabelBinarizer

    from skbatchnet._targets import one_hot

    binarizer = LabelBinarizer().fit(classes)
    Y = one_hot(binarizer, y, dtype)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, binarizer.transform(y))


def test_zero_sample_weight_equals_dropping_rows():
    X, y, _ = make_data()
    keep = np.arange(40) % 3 != 0
    kw = dict(solver="sgd", batch_size="full", shuffle=False, alpha=0.1, max_iter=10)
    weighted = BatchMLPRegressor(**kw, **SMALL).fit(X, y, sample_weight=keep * 1.0)
    dropped = BatchMLPRegressor(**kw, **SMALL).fit(X[keep], y[keep])
    plain = BatchMLPRegressor(**kw, **SMALL).fit(X, y)
    assert allclose_weights(
        copied_weights(weighted),
        copied_weights(dropped),
        rtol=1e-10,
    )
    assert not allclose_weights(copied_weights(weighted), copied_weights(plain))


def test_class_weight():
    # class_weight is documented as multiplied into the sample weights, so
    # the fits are bit for bit those with the product as sample_weight.
    X, _, y = make_data()
    y[:25] = 0  # imbalanced
    est = BatchMLPClassifier(batch_size=10, max_iter=5, **SMALL)
    plain = copied_weights(clone(est).fit(X, y))

    balanced = copied_weights(clone(est).set_params(class_weight="balanced").fit(X, y))
    # 'balanced', written out: n_samples / (n_classes * count of the class).
    counts = np.bincount(y)
    sw = (len(y) / (len(counts) * counts))[y]
    assert bitwise_equal(
        balanced, copied_weights(clone(est).fit(X, y, sample_weight=sw))
    )
    assert not allclose_weights(balanced, plain)

    cw = {0: 1.0, 1: 3.0, 2: 0.5}
    as_dict = copied_weights(clone(est).set_params(class_weight=cw).fit(X, y))
    sw_cw = np.array([cw[c] for c in y])
    assert bitwise_equal(
        as_dict, copied_weights(clone(est).fit(X, y, sample_weight=sw_cw))
    )
    assert not allclose_weights(as_dict, plain)

    extra = np.linspace(0.5, 2.0, 40)
    both = clone(est).set_params(class_weight=cw).fit(X, y, sample_weight=extra)
    product = clone(est).fit(X, y, sample_weight=extra * sw_cw)
    assert bitwise_equal(copied_weights(both), copied_weights(product))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_predict_log_proba(n_classes):
    X, _, y = make_data()
    est = BatchMLPClassifier(max_iter=30, **SMALL).fit(X, y % n_classes)
    for data in (X, X * 1e6):
        proba, log_proba = est.predict_proba(data), est.predict_log_proba(data)
        assert proba.shape == log_proba.shape == (40, n_classes)
        np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
        assert np.isfinite(log_proba).all() and (log_proba <= 0).all()
        np.testing.assert_allclose(logsumexp(log_proba, axis=1), 0, atol=1e-10)
        # Away from rounding (1 - p loses ~1e-16 absolutely) both must agree.
        ok = proba > 1e-6
        np.testing.assert_allclose(log_proba[ok], np.log(proba[ok]), atol=1e-8)
    # Huge inputs saturate the output: log(proba) is -inf or near the float
    # range, yet predict_log_proba stays finite.
    assert proba.min() < 1e-15 and proba.max() > 1 - 1e-15


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_verbose(solver, capsys):
    X, y, _ = make_data()
    est = BatchMLPRegressor(solver=solver, verbose=True, max_iter=4, **SMALL)
    est.fit(X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "Iteration" in ln]
    assert len(lines) == len(est.loss_curve_) >= 1
    assert lines[0].startswith("Iteration 1, loss = ")


@pytest.mark.parametrize("batch_size, differs", [(5, True), (1, False)])
def test_gradient_reduction_sum(batch_size, differs):
    X, y, _ = make_data()
    kw = dict(solver="sgd", learning_rate_init=0.002, batch_size=batch_size, max_iter=3)
    mean = BatchMLPRegressor(gradient_reduction="mean", **kw, **SMALL).fit(X, y)
    total = BatchMLPRegressor(gradient_reduction="sum", **kw, **SMALL).fit(X, y)
    assert np.isfinite(total.loss_)
    assert (
        allclose_weights(
            copied_weights(mean),
            copied_weights(total),
            rtol=1e-12,
        )
        is not differs
    )
