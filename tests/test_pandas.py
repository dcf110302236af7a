"""pandas inputs: DataFrame feature names, Series targets and labels,
against scikit-learn's own MLP as the reference.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import (
    binary_problem,
    digits_problem,
    regression_problem,
    same_weights,
    small_estimator,
)
from sklearn.model_selection import (
    GridSearchCV,
)
from sklearn.neural_network import MLPClassifier, MLPRegressor

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

ESTIMATORS = (BatchMLPClassifier, BatchMLPRegressor)


@pytest.mark.parametrize(
    "cls, reference",
    [(BatchMLPClassifier, MLPClassifier), (BatchMLPRegressor, MLPRegressor)],
)
def test_dataframe_feature_names(cls, reference):
    X, y = binary_problem() if cls is BatchMLPClassifier else regression_problem()
    columns = [f"f{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=columns)
    est = small_estimator(cls).fit(df, y)
    ref = reference(hidden_layer_sizes=(12,), max_iter=15, random_state=0).fit(df, y)
    np.testing.assert_array_equal(est.feature_names_in_, columns)
    assert est.n_features_in_ == X.shape[1]
    # Same weights as from the frame's array: names do not change the fit.
    # (Compared with to_numpy(), which keeps the frame's Fortran memory
    # layout: a fit on the C-ordered X can differ in the last bits.)
    assert same_weights(est, small_estimator(cls).fit(df.to_numpy(), y))

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
    bare = small_estimator(cls).fit(X, y)
    assert not hasattr(bare, "feature_names_in_")
    bare_ref = reference(hidden_layer_sizes=(12,), max_iter=15, random_state=0)
    assert outcome(bare, df) == outcome(bare_ref.fit(X, y), df)
    assert outcome(bare, df)[1]

    # partial_fit checks the names of later chunks.
    classes = {"classes": np.unique(y)} if cls is BatchMLPClassifier else {}
    incremental = small_estimator(cls).partial_fit(df, y, **classes)
    with pytest.raises(ValueError, match="same order"):
        incremental.partial_fit(reordered, y)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_series_targets(cls):
    X, y = binary_problem() if cls is BatchMLPClassifier else regression_problem()
    from_series = small_estimator(cls).fit(X, pd.Series(y, name="target"))
    from_array = small_estimator(cls).fit(X, y)
    assert same_weights(from_series, from_array)
    np.testing.assert_array_equal(from_series.predict(X), from_array.predict(X))
    assert from_series.score(X, pd.Series(y)) == from_array.score(X, y)

    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    both = small_estimator(cls).fit(df, pd.Series(y, index=df.index))
    assert same_weights(both, small_estimator(cls).fit(df.to_numpy(), y))
    # Shuffled index labels: rows are matched by position, as in scikit-learn.
    shuffled = pd.Series(y, index=np.random.RandomState(0).permutation(len(y)))
    assert same_weights(small_estimator(cls).fit(X, shuffled), from_array)


@pytest.mark.parametrize("dtype", [object, "string", "category", None])
def test_string_labels_in_series(dtype):
    X, y = digits_problem(200)
    names = np.array("zero one two three four five six seven eight nine".split())
    labels = pd.Series(names[y], dtype=dtype)
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    est = small_estimator(BatchMLPClassifier).fit(df, labels)
    np.testing.assert_array_equal(est.classes_, np.sort(names))
    predicted = est.predict(df)
    assert set(predicted) <= set(names)

    # The same model as with integer codes in the order of the sorted names.
    codes = np.searchsorted(np.sort(names), names[y])
    array = df.to_numpy()
    coded = small_estimator(BatchMLPClassifier).fit(array, codes)
    assert same_weights(est, coded)
    np.testing.assert_array_equal(predicted, np.sort(names)[coded.predict(array)])
    np.testing.assert_array_equal(est.predict_proba(df), coded.predict_proba(array))
    assert est.score(df, labels) == coded.score(array, codes)

    # Grid search with string labels in a Series.
    search = GridSearchCV(
        small_estimator(BatchMLPClassifier, max_iter=5),
        {"batch_size": [32, "full"]},
        cv=3,
        error_score="raise",
    ).fit(df, labels)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert set(search.predict(df)) <= set(names)
