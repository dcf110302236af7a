"""scikit-learn's callback API: each epoch (L-BFGS iteration) is a task.

With scikit-learn >= 1.9 the estimators accept ``set_callbacks``; before it,
they must work exactly as without callbacks.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

try:
    from sklearn import callback
except ImportError:  # scikit-learn < 1.9: only the fallback test applies
    callback = None


needs_callbacks = pytest.mark.skipif(
    callback is None, reason="scikit-learn < 1.9 has no sklearn.callback"
)

X, y = make_classification(n_samples=120, n_features=6, random_state=0)


class Recorder:
    """A callback that records every task and can ask to stop."""

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.ended, self.losses, self.setups, self.teardowns = [], [], 0, 0

    def setup(self, estimator, context):
        self.setups += 1

    def teardown(self, estimator, context):
        self.teardowns += 1

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        self.ended.append(context.task_name)
        if context.task_name in ("epoch", "iteration"):
            self.losses.append(fitted_estimator.loss_)
            n_done = self.ended.count(context.task_name)
            return self.stop_after is not None and n_done >= self.stop_after
        return False


@needs_callbacks
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_every_epoch_is_a_task(solver):
    rec = Recorder()
    est = BatchMLPClassifier((5,), solver=solver, max_iter=7, random_state=0)
    est.set_callbacks(rec).fit(X, y)
    task = "iteration" if solver == "lbfgs" else "epoch"
    assert rec.ended.count(task) == len(est.loss_curve_) > 0
    assert rec.ended[-1] == "fit"
    # The fitted estimator handed to the callback carries that task's loss.
    assert rec.losses == est.loss_curve_
    assert rec.setups == rec.teardowns == 1


@needs_callbacks
def test_a_callback_can_stop_training():
    rec = Recorder(stop_after=3)
    est = BatchMLPRegressor(hidden_layer_sizes=(4,), solver="sgd", max_iter=50)
    est.set_callbacks(rec).fit(X, y.astype(float))
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3


@needs_callbacks
def test_partial_fit_reports_one_epoch_and_teardown_follows_a_failure():
    rec = Recorder()
    est = BatchMLPRegressor(hidden_layer_sizes=(4,), solver="sgd", random_state=0)
    est.set_callbacks(rec).partial_fit(X, y.astype(float))
    assert rec.ended == ["epoch", "fit"]
    before = [c.copy() for c in est.coefs_]
    # A diverging step fails after the callbacks were set up: teardown still
    # runs, and the model is rolled back.
    est.set_params(learning_rate_init=1e6, gradient_reduction="sum", batch_size=1)
    with pytest.raises(ValueError, match="non-finite"):
        est.partial_fit(X * 1e3, y * 1e3)
    assert rec.setups == rec.teardowns == 2
    assert all(np.array_equal(a, b) for a, b in zip(est.coefs_, before))


@needs_callbacks
def test_scoring_monitor_in_pipeline_and_search():
    monitor = callback.ScoringMonitor(scoring="accuracy")
    est = BatchMLPClassifier((5,), max_iter=4, random_state=0).set_callbacks(monitor)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), est),
        {"batchmlpclassifier__batch_size": [16, "full"]},
        cv=2,
    ).fit(X, y)
    logs = monitor.get_logs(select="all")
    rows = logs.data if hasattr(logs, "data") else logs
    assert len(rows) > 0
    assert search.best_estimator_[-1].n_iter_ == 4


@needs_callbacks
def test_progress_bar_through_a_search():
    pytest.importorskip("rich")
    search = GridSearchCV(
        make_pipeline(
            StandardScaler(), BatchMLPClassifier((5,), max_iter=3, random_state=0)
        ),
        {"batchmlpclassifier__gradient_reduction": ["mean", "sum"]},
        cv=2,
    )
    search.set_callbacks(callback.ProgressBar(max_propagation_depth=None))
    search.fit(X, y)
    assert search.best_estimator_[-1].n_iter_ == 3


def test_without_the_callback_api():
    """Older scikit-learn: no set_callbacks, and fitting works as before."""
    script = textwrap.dedent(
        """
        import sys, warnings
        import sklearn.model_selection, sklearn.pipeline  # they use the API
        sys.modules["sklearn.callback"] = None  # skbatchnet sees scikit-learn < 1.9
        import numpy as np
        from skbatchnet import BatchMLPClassifier
        warnings.simplefilter("ignore")
        rng = np.random.RandomState(0)
        X, y = rng.randn(50, 3), rng.randint(0, 2, 50)
        est = BatchMLPClassifier((4,), max_iter=5, random_state=0).fit(X, y)
        assert not hasattr(est, "set_callbacks")
        est.partial_fit(X, y)
        print(len(est.loss_curve_))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "6"
