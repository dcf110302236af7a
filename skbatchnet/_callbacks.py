"""scikit-learn's callback API (``sklearn.callback``, 1.9+), or a stand-in.

With scikit-learn 1.9 the estimators support ``set_callbacks(...)`` and report
each epoch (each L-BFGS iteration) as a task, so ``ProgressBar`` and
``ScoringMonitor`` work, also inside a Pipeline or a search. Older versions
get a context whose hooks do nothing, and no ``set_callbacks`` method, which is
how meta-estimators tell whether an estimator supports callbacks.
"""

try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # scikit-learn < 1.9

    class _NoCallbacks:
        def subcontext(self, *args, **kwargs):
            return self

        def call_on_fit_task_begin(self, **kwargs):
            return self

        def call_on_fit_task_end(self, **kwargs):
            return False

    class CallbackSupportMixin:
        def _init_callback_context(self, *args, **kwargs):
            return _NoCallbacks()

    def with_callbacks(method):
        return method


# Attributes owned by the callback machinery: never copied, never rolled back.
CALLBACK_STATE = ("_skl_callbacks", "_callback_fit_ctx", "_parent_callback_ctx")

__all__ = ["CALLBACK_STATE", "CallbackSupportMixin", "TaskReporter", "with_callbacks"]


class TaskReporter:
    """Reports each epoch (L-BFGS iteration) to scikit-learn's callbacks.

    Returns True when a callback asks training to stop.
    """

    def __init__(self, estimator, context, X, y, metadata):
        self.estimator, self.context = estimator, context
        self.X, self.y, self.metadata = X, y, metadata

    def task(self, name, loss):
        est, kwargs = self.estimator, dict(X=self.X, y=self.y, metadata=self.metadata)
        task = self.context.subcontext(task_name=name)
        task.call_on_fit_task_begin(estimator=est, **kwargs)
        # Evaluated only if a callback asks for the fitted estimator; copies,
        # because training goes on updating the live weights in place.
        return task.call_on_fit_task_end(
            estimator=est,
            reconstruction_attributes=lambda: {
                "coefs_": [c.copy() for c in est.coefs_],
                "intercepts_": [b.copy() for b in est.intercepts_],
                "loss_": loss,
                "n_iter_": est.n_iter_,
            },
            **kwargs,
        )
