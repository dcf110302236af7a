"""BatchMLPClassifier and BatchMLPRegressor: thin estimators over the core."""

import numpy as np
from scipy.special import expit
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from ._base import BaseBatchMLP
from ._callbacks import with_callbacks
from ._losses import LOSSES

_SHARED_PARAMETERS = """\
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers.

    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        ``'sgd'`` and ``'adam'`` take minibatch steps; ``'lbfgs'`` minimizes
        the whole-set objective ``E`` directly and ignores ``batch_size`` and
        ``gradient_reduction``.

    alpha : float, default=0.0001
        Strength of the L2 penalty in the objective
        ``E = (1/S) sum_i s_i loss_i + (alpha / 2S) ||W||^2``. Unlike
        scikit-learn's MLP, whose penalty is divided by the batch size,
        ``alpha`` means the same at every ``batch_size``.

    batch_size : int, 'auto' or 'full', default='auto'
        Rows per step: 1 is stochastic gradient descent, an int is a
        minibatch, ``'auto'`` is ``min(200, n_samples)``, ``'full'`` is
        gradient descent on the whole set. A batch larger than the data set is
        the whole set.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning rate schedule of ``solver='sgd'``: constant; divided by
        ``(t + 1) ** power_t`` after each epoch, ``t`` being the samples seen;
        or divided by 5 whenever the loss stalls for ``n_iter_no_change``
        epochs.

    learning_rate_init : float, default=0.001
        Initial step size of ``'sgd'`` and ``'adam'``.

    power_t : float, default=0.5
        Exponent of ``learning_rate='invscaling'``.

    max_iter : int, default=200
        Maximum number of epochs (passes over the data) for the stochastic
        solvers, of iterations for ``'lbfgs'``.

    shuffle : bool, default=True
        Whether to draw a new order of the examples at every epoch.

    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialization, the early-stopping split and the
        shuffles, drawn from one stream in that order (as scikit-learn does).

    tol : float, default=1e-4
        Improvement below which an epoch counts as no progress.

    verbose : bool, default=False
        Print progress to stdout.

    warm_start : bool, default=False
        When True, ``fit`` starts from the previous weights. The optimizer
        state, the epoch counter ``n_iter_`` and the random stream start
        afresh (as in scikit-learn); ``t_``, ``loss_curve_`` and ``best_loss_``
        carry over.

    momentum : float, default=0.9
        Momentum of ``solver='sgd'``.

    nesterovs_momentum : bool, default=True
        Whether ``solver='sgd'`` uses Nesterov's momentum.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified by
        class for single-label classification) and stop when its score stops
        improving; the best weights are kept.

    validation_fraction : float, default=0.1
        Share of the data held out for early stopping.

    beta_1 : float, default=0.9
        Decay of the first-moment estimate of ``'adam'``.

    beta_2 : float, default=0.999
        Decay of the second-moment estimate of ``'adam'``.

    epsilon : float, default=1e-8
        Numerical stability term of ``'adam'``.

    n_iter_no_change : int, default=10
        Epochs without ``tol`` improvement before stopping (or, with
        ``learning_rate='adaptive'``, before dividing the learning rate by 5).

    max_fun : int, default=15000
        Maximum number of objective evaluations of ``'lbfgs'``.

    gradient_reduction : {'mean', 'sum'}, default='mean'
        How per-example gradients ``g_i = grad(loss_i) + (alpha/S) W`` become
        one step: ``'mean'`` follows ``sum_i s_i g_i / sum_i s_i``, an
        estimate of ``grad E``; ``'sum'`` follows ``sum_i s_i g_i``, whose
        step grows with the batch (the linear learning-rate scaling rule).

    drop_last : bool or 'merge', default=False
        What happens to a last batch shorter than ``batch_size``: kept as a
        short step (False), dropped (True), or merged into the batch before
        it (``'merge'``, so every step has between ``batch_size`` and
        ``2 * batch_size - 1`` rows). A data set smaller than one batch is one
        batch.

    average : bool or int, default=False
        Weight averaging for ``'sgd'`` and ``'adam'``, as in scikit-learn's
        ``SGDClassifier``: when True, ``coefs_`` and ``intercepts_`` (and so
        ``predict``) hold the running mean of the weights after each step;
        an int ``k`` starts the mean once ``k`` samples have been seen.
        Training continues from the raw weights; the average carries over
        ``partial_fit`` calls, ``warm_start`` fits and pickling. Ignored by
        ``'lbfgs'``. With ``early_stopping``, the average is over the whole
        run.
"""

_SHARED_ATTRIBUTES = """\
    loss_ : float
        The objective at the end of training (for the stochastic solvers, the
        last epoch's estimate, each batch weighted by its share of the data).

    best_loss_ : float or None
        Minimum of ``loss_curve_``; None when ``early_stopping=True``.

    loss_curve_ : list of float
        The objective estimated at each epoch (each L-BFGS iteration for
        ``'lbfgs'``).

    validation_scores_ : list of float or None
        Score on the held-out set at each epoch, with ``early_stopping=True``.

    validation_loss_curve_ : list of float
        Mean loss (without the penalty) on the held-out set at each epoch;
        only with ``early_stopping=True``.

    best_validation_score_ : float or None
        Best of ``validation_scores_``.

    t_ : int
        Number of training samples seen by the solver.

    coefs_ : list of ndarray of shape (fan_in, fan_out)
        Weight matrix of each layer.

    intercepts_ : list of ndarray of shape (fan_out,)
        Bias vector of each layer.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when X has string feature names.

    n_iter_ : int
        Number of epochs (L-BFGS iterations) run by the last ``fit``;
        ``partial_fit`` adds one per call.

    n_layers_ : int
        Number of layers, input and output included.

    n_outputs_ : int
        Number of outputs.

    out_activation_ : str
        Name of the output activation.

    batch_size_ : int
        The resolved number of rows per batch (stochastic solvers).
"""

_OBJECTIVE = """\
    Minimizes, over the training set with sample weights ``s_i`` summing to
    ``S``, the objective

    .. math::

        E = \\frac{1}{S} \\sum_i s_i \\, \\ell_i
            + \\frac{\\alpha}{2S} \\lVert W \\rVert^2,

    biases not penalized. ``batch_size``, ``gradient_reduction``, ``shuffle``
    and ``solver`` change how ``E`` is minimized, never what. With
    ``alpha=0`` and the same ``random_state``, ``fit`` follows the same
    trajectory as scikit-learn's MLP.
"""


def _check_label_types(labels, name):
    # numpy cannot sort a mix of strings and numbers, and the TypeError it
    # raises would not say which input is wrong.
    if labels.dtype == object:
        kinds = {isinstance(v, str) for v in labels.ravel()}
        if len(kinds) > 1:
            raise ValueError(
                f"{name} mixes string and non-string labels; convert the labels "
                f"to one type, for example with {name}.astype(str)."
            )


def _one_hot(binarizer, y, dtype):
    """The targets as the fitted ``binarizer`` encodes them, in ``dtype``.

    Multiclass labels (all known to the binarizer, which the callers check)
    are encoded directly: ``LabelBinarizer.transform`` builds an integer
    matrix that then needs converting, several times slower, which is felt
    in every ``fit`` on large data.
    """
    if binarizer.y_type_ != "multiclass":
        return binarizer.transform(y).astype(dtype, copy=False)
    Y = np.zeros((len(y), len(binarizer.classes_)), dtype)
    Y[np.arange(len(y)), np.searchsorted(binarizer.classes_, y)] = 1
    return Y


def _data_and_labels(estimator, X, y, reset):
    return validate_data(
        estimator,
        X,
        y,
        accept_sparse=["csr", "csc"],
        multi_output=True,
        dtype=(np.float64, np.float32),
        # Rows are sliced at every step; C order also makes a whole-set batch
        # sum in the same order as scikit-learn's gathered batches.
        order="C",
        reset=reset,
    )


class BatchMLPClassifier(ClassifierMixin, BaseBatchMLP):
    __doc__ = f"""Multi-layer perceptron classifier with explicit minibatching.

    A drop-in replacement for :class:`sklearn.neural_network.MLPClassifier`
    with the log loss: softmax outputs for multiclass targets, logistic
    outputs for binary and multilabel targets.

{_OBJECTIVE}
    Parameters
    ----------
{_SHARED_PARAMETERS}
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``.
        ``'balanced'`` uses ``n_samples / (n_classes * np.bincount(y))``; it is
        not available in ``partial_fit``, whose chunks do not show the class
        frequencies (pass a dict computed on the whole data instead).

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Class labels for each output.

{_SHARED_ATTRIBUTES}
    See Also
    --------
    BatchMLPRegressor : The regressor.
    sklearn.neural_network.MLPClassifier : scikit-learn's version.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from skbatchnet import BatchMLPClassifier
    >>> X, y = make_classification(n_samples=100, random_state=1)
    >>> clf = BatchMLPClassifier(batch_size=16, max_iter=300, random_state=1)
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **BaseBatchMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        gradient_reduction="mean",
        drop_last=False,
        average=False,
        class_weight=None,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            gradient_reduction=gradient_reduction,
            drop_last=drop_last,
            average=average,
        )
        self.class_weight = class_weight

    def _network_loss(self):
        return (
            "log_loss"
            if self._label_binarizer.y_type_ == "multiclass"
            else ("binary_log_loss")
        )

    def _encode_targets(self, X, y, first_pass, incremental, classes=None):
        X, y = _data_and_labels(self, X, y, reset=first_pass)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        _check_label_types(y, "y")
        if classes is not None:
            _check_label_types(np.asarray(classes), "classes")
        if first_pass:
            binarizer = LabelBinarizer()
            if incremental and not type_of_target(y).startswith("multilabel"):
                if classes is None:
                    raise ValueError(
                        "classes must be passed on the first call to partial_fit: "
                        "the list of all labels, for example np.unique(y_all)."
                    )
                binarizer.fit(classes)
                unseen = np.setdiff1d(unique_labels(y), binarizer.classes_)
                if unseen.size:
                    raise ValueError(
                        f"y has labels {unseen.tolist()} that are not in classes="
                        f"{binarizer.classes_.tolist()}; add them to classes."
                    )
            else:
                binarizer.fit(y)
            if len(binarizer.classes_) < 2:
                raise ValueError(
                    "The target y has only one class "
                    f"({binarizer.classes_.tolist()}); a classifier needs at least "
                    "two. Check the labels, or pass every class in 'classes' to "
                    "partial_fit."
                )
            self._label_binarizer = binarizer
            self.classes_ = binarizer.classes_
        else:
            if classes is not None and not np.array_equal(
                np.unique(classes), self.classes_
            ):
                raise ValueError(
                    f"classes={np.unique(classes).tolist()} differs from the classes "
                    f"of the first call, {self.classes_.tolist()}."
                )
            seen = unique_labels(y)
            unseen = np.setdiff1d(seen, self.classes_)
            if self.warm_start and not incremental and set(seen) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where y has the same classes as in "
                    f"the previous fit: previously {self.classes_.tolist()}, y has "
                    f"{seen.tolist()}."
                )
            if unseen.size:
                raise ValueError(
                    f"y has labels {unseen.tolist()} that were not seen when the "
                    f"model was first fitted (classes_={self.classes_.tolist()})."
                )
        return X, _one_hot(self._label_binarizer, y, X.dtype), y

    def _class_sample_weight(self, y, incremental):
        if self.class_weight is None:
            return None
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit, whose "
                "chunks do not show the class frequencies; pass a dict computed on "
                "all the data, e.g. with sklearn.utils.class_weight."
                "compute_class_weight."
            )
        return compute_sample_weight(self.class_weight, y)

    def _score_output(self, output, y, sample_weight):
        return accuracy_score(y, self._labels(output), sample_weight=sample_weight)

    def _labels(self, output):
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and labels y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a label indicator matrix for multilabel targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights ``s_i`` of the objective.

        Returns
        -------
        self : BatchMLPClassifier
        """
        return self._fit(X, y, sample_weight)

    @available_if(lambda est: est._check_solver())
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One pass of minibatch steps over the data given.

        The optimizer state and the random stream continue from the previous
        call. The data given is the training set ``S`` of this call's
        objective.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            All the labels; required on the first call.

        Returns
        -------
        self : BatchMLPClassifier
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X):
        """Predict labels for X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        return self._labels(self._forward(X))

    def predict_proba(self, X):
        """Probability of each class, in the order of ``classes_``.

        Probabilities lie strictly inside (0, 1): a probability that rounds to
        exactly 0 or 1 is returned as the nearest representable value inside
        the interval, so that ``log(predict_proba)`` stays finite.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        Z = self._forward(X, logits=True)
        # Logits at the edge of the float range overflow z - max(z) to -inf,
        # whose exp is the right answer, 0.
        with np.errstate(over="ignore"):
            if self.out_activation_ == "softmax":
                proba = LOSSES["log_loss"].activation(Z, Z)
            elif self.n_outputs_ == 1:
                # Both columns from the logit: 1 - expit(z) would lose every
                # digit of the smaller probability once expit(z) rounds to 1.
                proba = expit(np.hstack([-Z, Z]))
            else:
                proba = expit(Z)
        finfo = np.finfo(proba.dtype)
        return np.clip(proba, finfo.tiny, 1 - finfo.epsneg, out=proba)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Finite for any input, since the probabilities lie strictly inside
        (0, 1); the smallest value is the log of the smallest normal float.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class BatchMLPRegressor(RegressorMixin, BaseBatchMLP):
    __doc__ = f"""Multi-layer perceptron regressor with explicit minibatching.

    A drop-in replacement for :class:`sklearn.neural_network.MLPRegressor`.

{_OBJECTIVE}
    Parameters
    ----------
    loss : {{'squared_error', 'poisson'}}, default='squared_error'
        ``'squared_error'``: ``loss_i = 0.5 ||y_i - yhat_i||^2`` summed over
        outputs, identity output. ``'poisson'``: the half Poisson deviance with
        an exponential output, for non-negative targets.

{_SHARED_PARAMETERS}
    Attributes
    ----------
{_SHARED_ATTRIBUTES}
    See Also
    --------
    BatchMLPClassifier : The classifier.
    sklearn.neural_network.MLPRegressor : scikit-learn's version.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from skbatchnet import BatchMLPRegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=1)
    >>> reg = BatchMLPRegressor(batch_size=32, max_iter=500, random_state=1)
    >>> reg.fit(X, y).score(X, y) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **BaseBatchMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        gradient_reduction="mean",
        drop_last=False,
        average=False,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            gradient_reduction=gradient_reduction,
            drop_last=drop_last,
            average=average,
        )
        self.loss = loss

    def _network_loss(self):
        return self.loss

    def _encode_targets(self, X, y, first_pass, incremental, classes=None):
        X, y = _data_and_labels(self, X, y, reset=first_pass)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.asarray(y, dtype=X.dtype)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        if self.loss == "poisson" and np.any(Y < 0):
            raise ValueError(
                "loss='poisson' requires non-negative targets y; got a minimum of "
                f"{float(Y.min())!r}. Use loss='squared_error' or shift the targets."
            )
        return X, Y, y

    def _score_output(self, output, y, sample_weight):
        if not np.isfinite(output).all():
            return np.nan
        return r2_score(
            y,
            output.ravel() if self.n_outputs_ == 1 else output,
            sample_weight=sample_weight,
        )

    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data X and targets y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights ``s_i`` of the objective.

        Returns
        -------
        self : BatchMLPRegressor
        """
        return self._fit(X, y, sample_weight)

    @available_if(lambda est: est._check_solver())
    @with_callbacks
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One pass of minibatch steps over the data given.

        The optimizer state and the random stream continue from the previous
        call. The data given is the training set ``S`` of this call's
        objective.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : None
            Ignored; accepted so that tools written for classifiers (such as
            ``learning_curve(..., exploit_incremental_learning=True)``) work.

        Returns
        -------
        self : BatchMLPRegressor
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict targets for X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        output = self._forward(X)
        return output.ravel() if self.n_outputs_ == 1 else output
