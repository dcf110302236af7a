"""BatchMLPClassifier and BatchMLPRegressor: thin estimators over the core."""

import numpy as np
from scipy.special import expit
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from ._base import BaseBatchMLP
from ._losses import LOSSES
from ._parameters import SHARED_PARAMETERS_DOC, extend_signature
from ._targets import LEARNING_MODES, TargetEncoding, one_hot
from ._validation import check_class_weight, check_sparse_structure

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

    n_steps_per_epoch_ : list of int
        Optimizer steps taken in each epoch of ``loss_curve_`` (1 per L-BFGS
        iteration); a batch of zero total weight takes no step.

    n_samples_per_epoch_ : list of int
        Training rows seen in each epoch of ``loss_curve_`` (for
        ``'lbfgs'``, the rows of every evaluation of the objective made in
        that iteration).

    clip_fraction_curve_ : list of float or None
        With ``max_gradient_norm``, the fraction of each epoch's rows whose
        loss gradient was clipped (rows of skipped zero-weight batches count
        as not clipped), from the data without noise; NaN for an epoch
        trained without clipping. None when no epoch clipped.

    noise_scale_curve_ : list of float or None
        With ``track_noise_scale=True``, each epoch's gradient noise scale
        ``gradient_variance_curve_[e] / squared_gradient_curve_[e]``: inf
        where the squared gradient's estimate is not positive, NaN for an
        epoch without a step of two rows or more, or trained without
        tracking. None when no epoch tracked it.

    squared_gradient_curve_, gradient_variance_curve_ : list of float or None
        The noise scale's terms: each epoch's mean, over its steps of two
        rows or more, of the step's estimate of ``|G|^2`` and of
        ``tr(Sigma)`` (McCandlish et al.'s estimators from the batch sizes 1
        and B, :mod:`skbatchnet._noise_scale`).

    coefs_ : list of ndarray of shape (fan_in, fan_out)
        Weight matrix of each layer.

    noise_multiplier_ : float
        Under DP noise (``noise_multiplier > 0`` or ``target_epsilon``), the
        noise multiplier of the last call: the parameter, or the one
        calibrated to ``target_epsilon``. Absent for a model never trained
        with noise.

    privacy_ledger_ : skbatchnet.privacy.PrivacyLedger
        Under DP noise, the noisy steps taken, ``(sigma, q, steps)`` per run,
        over ``partial_fit`` calls and ``warm_start`` fits (empty Poisson
        batches included); ``privacy_ledger_.epsilon(delta)`` is the epsilon
        at any delta. Steps without noise that continue a private model are
        recorded with ``sigma=0``, which makes epsilon infinite.

    epsilon_ : float or None
        The epsilon ``privacy_ledger_`` spends at ``target_delta`` (as the
        last call saw it), by the RDP accountant with add-or-remove
        adjacency; None without ``target_delta``. Computed when first read
        (an accountant call costs tens of milliseconds, whatever the steps),
        so a fit that nobody asks for its epsilon does not pay for it.

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
        The resolved number of rows per batch (stochastic solvers); under a
        batch-size schedule, that of the last epoch trained.

    batch_size_curve_ : list of int
        The batch size of each epoch of ``loss_curve_`` (the training rows,
        for an L-BFGS iteration, which evaluates the whole set).
"""

_OBJECTIVE = """\
    Minimizes, over the training set with sample weights ``s_i`` summing to
    ``S``, the objective

    .. math::

        E = \\frac{1}{S} \\sum_i s_i \\, \\ell_i
            + \\frac{\\alpha}{2S} \\lVert W \\rVert^2,

    biases not penalized. ``batch_size``, ``shuffle`` and ``solver`` change
    how ``E`` is minimized, not what, under ``gradient_reduction='unbiased'``
    or ``'sum'`` for any sample weights, and under ``'mean'`` (the default)
    for equal weights (where a run ends at a constant learning rate still
    depends on them). Under unequal weights ``'mean'`` (scikit-learn's
    reduction) converges to a point that depends on the batch size, and at
    ``batch_size=1`` ignores the weights. With
    ``alpha=0`` and the same ``random_state``, ``fit`` follows the same
    trajectory as scikit-learn's MLP, except with ``early_stopping=True`` on
    a multiclass target, whose validation split is stratified here.
"""


def _docstring(
    kind,
    intro,
    example,
    parameters_before="",
    parameters_after="",
    attributes_before="",
):
    """The numpydoc of the ``kind`` ('classifier' or 'regressor') estimator."""
    other = "regressor" if kind == "classifier" else "classifier"
    name = kind.capitalize()
    return f"""Multi-layer perceptron {kind} with explicit minibatching.

    {intro}

{_OBJECTIVE}
    Parameters
    ----------
{parameters_before}{SHARED_PARAMETERS_DOC}{parameters_after}
    Attributes
    ----------
{attributes_before}{_SHARED_ATTRIBUTES}
    See Also
    --------
    BatchMLP{other.capitalize()} : The {other}.
    sklearn.neural_network.MLP{name} : scikit-learn's version.

    Examples
    --------
{example}
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


def _data_and_labels(estimator, X, y, reset, dtype=None):
    # Before validate_data, whose conversions (CSC or COO to CSR, a new
    # dtype) would already read the index arrays.
    check_sparse_structure(X)
    return validate_data(
        estimator,
        X,
        y,
        accept_sparse=["csr", "csc"],
        multi_output=True,
        dtype=(np.float64, np.float32) if dtype is None else dtype,
        # Rows are sliced at every step; C order also makes a whole-set batch
        # sum in the same order as scikit-learn's gathered batches.
        order="C",
        reset=reset,
    )


class BatchMLPClassifier(ClassifierMixin, BaseBatchMLP):
    __doc__ = _docstring(
        kind="classifier",
        intro="""A drop-in replacement for
    :class:`sklearn.neural_network.MLPClassifier` with the log loss: softmax
    outputs for multiclass targets, logistic outputs for binary and multilabel
    targets.""",
        parameters_after="""\

    class_weight : dict, list of dict, 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``: a dict
        ``{label: weight}`` for a single-output ``y``, a list of such dicts,
        one per output, for a multilabel ``y``; weights are finite and
        non-negative. ``'balanced'`` uses ``n_samples / (n_classes *
        np.bincount(y))`` (per output); it is not available in
        ``partial_fit``, whose chunks do not show the class frequencies (pass
        a dict computed on the whole data instead).
""",
        attributes_before="""\
    classes_ : ndarray or list of ndarray
        Class labels for each output.

""",
        example="""\
    >>> from sklearn.datasets import make_classification
    >>> from skbatchnet import BatchMLPClassifier
    >>> X, y = make_classification(n_samples=100, random_state=1)
    >>> clf = BatchMLPClassifier(batch_size=16, max_iter=300, random_state=1)
    >>> clf.fit(X, y).score(X, y) > 0.9
    True""",
    )

    _parameter_constraints: dict = {
        **BaseBatchMLP._parameter_constraints,
        "class_weight": [dict, list, StrOptions({"balanced"}), None],
    }

    @extend_signature
    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        class_weight=None,
        **params,
    ):
        super().__init__(hidden_layer_sizes, activation, **params)
        self.class_weight = class_weight

    def _network_loss(self):
        return (
            "log_loss"
            if self._label_binarizer.y_type_ == "multiclass"
            else ("binary_log_loss")
        )

    def _encode_targets(self, X, y, *, mode, classes=None, dtype=None):
        first_pass = mode in LEARNING_MODES
        X, y = _data_and_labels(self, X, y, first_pass, dtype)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        _check_label_types(y, "y")
        if classes is not None:
            if np.ndim(classes) != 1:
                raise ValueError(
                    "classes must be a 1-D array-like of all the labels, such as "
                    f"[0, 1, 2], got one of shape {np.shape(classes)}."
                )
            _check_label_types(np.asarray(classes), "classes")
        if first_pass:
            binarizer = LabelBinarizer()
            if mode == "partial_fit" and not type_of_target(y).startswith("multilabel"):
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
            if mode == "refit" and set(seen) != set(self.classes_):
                # scikit-learn's message first, complete, arrays printed as
                # numpy prints them, for code that matches on it.
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as "
                    f"in the previous call to fit. Previously got {self.classes_}, "
                    f"`y` has {seen}. Set warm_start=False to fit the new classes."
                )
            if unseen.size:
                raise ValueError(
                    f"y has labels {unseen.tolist()} that were not seen when the "
                    f"model was first fitted (classes_={self.classes_.tolist()})."
                )
        return X, one_hot(self._label_binarizer, y, X.dtype), y

    def _target_encoding(self):
        return TargetEncoding(self._label_binarizer)

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
        check_class_weight(self.class_weight, np.ndim(y) == 2 and y.shape[1])
        return compute_sample_weight(self.class_weight, y)

    def _score_output(self, output, y, sample_weight):
        return accuracy_score(y, self._predictions(output), sample_weight=sample_weight)

    def _predictions(self, output):
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

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
            A column of ones when the model was fitted on a single class.
        """
        Z = self._forward(X, logits=True)
        if len(self.classes_) == 1:
            # One class is certain. (scikit-learn returns two columns of
            # meaningless numbers here; one column matches ``classes_``.)
            return np.ones_like(Z, dtype=self.coefs_[0].dtype)
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
        proba = self._in_model_dtype(proba)
        finfo = np.finfo(proba.dtype)
        return np.clip(proba, finfo.tiny, 1 - finfo.epsneg, out=proba)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, finite for any input.

        The probabilities lie strictly inside (0, 1), so the smallest value is
        the log of the smallest normal float.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            In the order of ``classes_``.
        """
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class BatchMLPRegressor(RegressorMixin, BaseBatchMLP):
    __doc__ = _docstring(
        kind="regressor",
        intro="""A drop-in replacement for
    :class:`sklearn.neural_network.MLPRegressor`.""",
        parameters_before="""\
    loss : {'squared_error', 'poisson'}, default='squared_error'
        ``'squared_error'``: ``loss_i = 0.5 ||y_i - yhat_i||^2`` summed over
        outputs, identity output. ``'poisson'``: the half Poisson deviance with
        an exponential output, for non-negative targets. scikit-learn averages
        the squared error over the ``k`` outputs (not its gradient): the
        steps are the same, but ``loss_curve_`` is ``k`` times scikit-learn's,
        so ``tol`` compares ``k`` times larger improvements; ``tol=k * tol``
        stops where scikit-learn does.

""",
        example="""\
    >>> from sklearn.datasets import make_regression
    >>> from skbatchnet import BatchMLPRegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=1)
    >>> reg = BatchMLPRegressor(batch_size=32, max_iter=500, random_state=1)
    >>> reg.fit(X, y).score(X, y) > 0.9
    True""",
    )

    _parameter_constraints: dict = {
        **BaseBatchMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    @extend_signature
    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        **params,
    ):
        super().__init__(hidden_layer_sizes, activation, **params)
        self.loss = loss

    def _network_loss(self):
        return self.loss

    def _encode_targets(self, X, y, *, mode, classes=None, dtype=None):
        X, y = _data_and_labels(self, X, y, mode in LEARNING_MODES, dtype)
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

    def _predictions(self, output):
        return output.ravel() if self.n_outputs_ == 1 else output
