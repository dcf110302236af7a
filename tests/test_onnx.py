"""ONNX export: onnxruntime runs the exported graph, predict is the oracle.

Every configuration the converters support is fitted briefly (the point is
the graph, not convergence), exported with skl2onnx, checked by
``onnx.checker`` and run by onnxruntime on data it was not fitted on; the
graph's labels equal ``predict``'s and its numbers agree with ``predict`` and
``predict_proba`` within the tolerance of the precision it computes in.
"""

import doctest
import pathlib

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

import skbatchnet.onnx  # noqa: E402  registers the converters
from skbatchnet import BatchMLPClassifier, BatchMLPRegressor  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
KINDS = ["binary", "multiclass", "multilabel"]
TOLERANCE = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-10, atol=1e-12),
}
SMALL = dict(hidden_layer_sizes=(6, 5), max_iter=5, random_state=0)


def _data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    return X[:40], X[40:], X @ rng.randn(4, 3)


def _targets(kind, Z):
    if kind == "binary":
        return (Z[:, 0] > 0).astype(int)
    if kind == "multiclass":
        return np.digitize(Z[:, 0], [-0.5, 0.5])
    if kind == "multilabel":
        return (Z > 0).astype(int)
    return Z[:, 0] if kind == 1 else Z[:, :kind]


def _run(model, X, dtype, options=None, **kwargs):
    """The exported graph's outputs on ``X`` in ``dtype``, checked first."""
    graph = skl2onnx.to_onnx(model, X[:1].astype(dtype), options=options, **kwargs)
    onnx.checker.check_model(graph, full_check=True)
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = 1
    session = ort.InferenceSession(
        graph.SerializeToString(), settings, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: X.astype(dtype)})


def _tolerance(model, dtype):
    """The graph computes in double only for a double input and float64 weights."""
    final = model[-1] if hasattr(model, "steps") else model
    double = dtype == np.float64 and final.coefs_[0].dtype == np.float64
    return TOLERANCE[np.float64 if double else np.float32]


def _assert_close(actual, expected, tolerance, dtype):
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, **tolerance)


# -- the matrix ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_regressor(activation, loss, n_outputs, dtype):
    X, X_new, Z = _data()
    y = _targets(n_outputs, Z[:40])
    if loss == "poisson":
        y = np.exp(y / 4)
    model = BatchMLPRegressor(loss, activation=activation, **SMALL).fit(X, y)
    (predicted,) = _run(model, X_new, dtype)
    assert predicted.shape == (len(X_new), n_outputs)
    expected = model.predict(X_new).reshape(len(X_new), n_outputs)
    _assert_close(predicted, expected, _tolerance(model, dtype), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_classifier(activation, kind, dtype):
    X, X_new, Z = _data()
    model = BatchMLPClassifier(activation=activation, **SMALL)
    model.fit(X, _targets(kind, Z[:40]))
    labels, proba = _run(model, X_new, dtype, options={"zipmap": False})
    np.testing.assert_array_equal(labels, model.predict(X_new))
    tolerance = _tolerance(model, dtype)
    _assert_close(proba, model.predict_proba(X_new), tolerance, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_pipeline_with_a_scaler(kind, dtype):
    X, X_new, Z = _data()
    X, X_new = 10 * X + 3, 10 * X_new + 3  # something to scale
    if kind == "regressor":
        model = make_pipeline(StandardScaler(), BatchMLPRegressor(**SMALL))
        expected = model.fit(X, Z[:40, :2]).predict(X_new)
    else:
        model = make_pipeline(StandardScaler(), BatchMLPClassifier(**SMALL))
        model.fit(X, _targets("multiclass", Z[:40]))
        expected = model.predict_proba(X_new)
    options = {BatchMLPClassifier: {"zipmap": False}} if kind == "classifier" else None
    outputs = _run(model, X_new, dtype, options=options)
    if kind == "classifier":
        np.testing.assert_array_equal(outputs[0], model.predict(X_new))
    _assert_close(outputs[-1], expected, _tolerance(model, dtype), dtype)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_the_graph_holds_the_averaged_weights(kind):
    X, X_new, Z = _data()
    cls = BatchMLPRegressor if kind == "regressor" else BatchMLPClassifier
    y = Z[:40, 0] if kind == "regressor" else _targets("multiclass", Z[:40])
    params = dict(SMALL, batch_size=4, max_iter=3)
    averaged = cls(average=True, **params).fit(X, y)
    last = cls(**params).fit(X, y)  # the same steps, without the average
    classifier = kind == "classifier"
    options = {"zipmap": False} if classifier else None
    outputs = _run(averaged, X_new, np.float64, options=options)
    predict = "predict_proba" if classifier else "predict"
    expected = getattr(averaged, predict)(X_new).reshape(outputs[-1].shape)
    np.testing.assert_allclose(outputs[-1], expected, **TOLERANCE[np.float64])
    raw = getattr(last, predict)(X_new).reshape(outputs[-1].shape)
    assert np.abs(outputs[-1] - raw).max() > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_float32_model_computes_in_float32_whatever_the_input(dtype):
    X, X_new, Z = _data()
    model = BatchMLPClassifier(**SMALL).fit(
        X.astype(np.float32), _targets("binary", Z[:40])
    )
    labels, proba = _run(model, X_new, dtype, options={"zipmap": False})
    np.testing.assert_array_equal(labels, model.predict(X_new))
    _assert_close(proba, model.predict_proba(X_new), TOLERANCE[np.float32], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_small_probabilities_keep_their_digits(kind, dtype):
    # Logits in the hundreds: probabilities far below 1e-16, and below the
    # float range, which predict_proba clips to the smallest normal float.
    X, X_new, Z = _data()
    model = BatchMLPClassifier(activation="identity", **SMALL)
    model.fit(X.astype(dtype), _targets(kind, Z[:40]))
    X_far = 100 * X_new
    labels, proba = _run(model, X_far, dtype, options={"zipmap": False})
    expected = model.predict_proba(X_far)
    assert expected.min() < 1e-30
    assert (proba > 0).all() and (proba < 1).all()
    np.testing.assert_array_equal(labels, model.predict(X_far))
    np.testing.assert_allclose(np.log(proba), np.log(expected), **TOLERANCE[dtype])


# -- skl2onnx's options -----------------------------------------------------------


# zipmap='columns' with nocl=True fails in skl2onnx's own parser, for every
# classifier (scikit-learn's too), before any converter runs.
@pytest.mark.parametrize(
    "zipmap, nocl", [(True, False), (True, True), ("columns", False)]
)
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_zipmap_and_nocl(kind, zipmap, nocl):
    X, X_new, Z = _data()
    names = np.array(["low", "mid", "high"])
    model = BatchMLPClassifier(**SMALL).fit(X, names[_targets(kind, Z[:40])])
    labels, *columns = _run(
        model, X_new, np.float64, options={"zipmap": zipmap, "nocl": nocl}
    )
    expected = model.predict(X_new)
    if nocl:
        expected = np.searchsorted(model.classes_, expected)
    np.testing.assert_array_equal(labels, expected)
    if zipmap is True:
        # ZipMap holds float32 values, keyed by label (by index with nocl).
        (dicts,) = columns
        keys = range(len(model.classes_)) if nocl else model.classes_
        proba = np.array([[row[key] for key in keys] for row in dicts])
    else:
        proba = np.column_stack(columns)
    _assert_close(
        proba.astype(np.float32),
        model.predict_proba(X_new),
        TOLERANCE[np.float32],
        np.float32,
    )


def test_zipmap_of_a_multilabel_model_maps_each_label_to_its_probability():
    X, X_new, Z = _data()
    model = BatchMLPClassifier(**SMALL).fit(X, _targets("multilabel", Z[:40]))
    labels, dicts = _run(model, X_new, np.float32)
    np.testing.assert_array_equal(labels, model.predict(X_new))
    proba = np.array([[row[k] for k in range(3)] for row in dicts])
    np.testing.assert_allclose(
        proba, model.predict_proba(X_new), **TOLERANCE[np.float32]
    )


def test_zipmap_probabilities_stay_inside_the_unit_interval_in_float32():
    # A double graph's probabilities, cast to float32 for the ZipMap, are
    # clipped to float32's bounds: the double ones would round to 0 and 1.
    X, X_new, Z = _data()
    model = BatchMLPClassifier(activation="identity", **SMALL)
    model.fit(X, _targets("multiclass", Z[:40]))
    _, dicts = _run(model, 100 * X_new, np.float64)
    proba = np.array([list(row.values()) for row in dicts])
    assert proba.min() == np.finfo(np.float32).tiny
    assert ((proba > 0) & (proba < 1)).all()


def test_integral_float_and_bool_labels_come_out_as_int64():
    X, X_new, Z = _data()
    for y in (
        _targets("binary", Z[:40]).astype(bool),
        _targets("multiclass", Z[:40]) * 2.0,
    ):
        model = BatchMLPClassifier(**SMALL).fit(X, y)
        labels, _ = _run(model, X_new, np.float64, options={"zipmap": False})
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, model.predict(X_new).astype(np.int64))


# -- what is not supported ---------------------------------------------------------


def _single_class():
    X, _, _ = _data()
    return BatchMLPClassifier(**SMALL).fit(X, np.full(40, 7)), {"zipmap": False}


def _labels_beyond_int64():
    X, _, Z = _data()
    y = _targets("binary", Z[:40]).astype(np.uint64) + np.uint64(2**63)
    return BatchMLPClassifier(**SMALL).fit(X, y), {"zipmap": False}


def _raw_scores_option():
    X, _, Z = _data()
    model = BatchMLPClassifier(**SMALL).fit(X, _targets("binary", Z[:40]))
    return model, {"raw_scores": True}


@pytest.mark.parametrize(
    "case, error, match",
    [
        (_single_class, ValueError, r"fitted on a single class \(\[7\]\).*two classes"),
        (_labels_beyond_int64, ValueError, r"neither strings nor integers.*'nocl'"),
        (_raw_scores_option, NameError, r"Option 'raw_scores' not in \['nocl'"),
    ],
)
def test_an_unsupported_configuration_is_refused_by_name(case, error, match):
    model, options = case()
    X, _, _ = _data()
    with pytest.raises(error, match=match):
        skl2onnx.to_onnx(model, X[:1], options=options)


def test_an_old_opset_and_a_wrong_input_width_are_refused():
    X, _, Z = _data()
    model = BatchMLPRegressor(**SMALL).fit(X, Z[:40, 0])
    with pytest.raises(ValueError, match="opset 13 or later, got target_opset=12"):
        skl2onnx.to_onnx(model, X[:1], target_opset=12)
    with pytest.raises(ValueError, match=r"has 3 features.*fitted with 4"):
        skl2onnx.to_onnx(model, X[:1, :3])


def test_registering_again_keeps_the_converters_working():
    skbatchnet.onnx.register_converters()
    X, X_new, Z = _data()
    model = BatchMLPRegressor(**SMALL).fit(X, Z[:40, 0])
    (predicted,) = _run(model, X_new, np.float64)
    np.testing.assert_allclose(predicted.ravel(), model.predict(X_new), rtol=1e-10)


def test_module_examples():
    result = doctest.testmod(skbatchnet.onnx, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_the_deploying_page_runs():
    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "deploying.rst"
    result = doctest.testfile(
        str(page), module_relative=False, optionflags=doctest.ELLIPSIS
    )
    assert result.attempted > 0
    assert result.failed == 0
