"""The estimators' parameters: their one list, defaults, constraints and docs.

Both estimators take scikit-learn's MLP parameters plus the batching ones
(``gradient_reduction``, ``drop_last``, ``average``, ``max_gradient_norm``).
They are written once, in :class:`Parameters`; each estimator adds its own
(``loss``, ``class_weight``) through :func:`extend_signature`.
"""

import inspect
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, Options, StrOptions

from ._activations import ACTIVATIONS
from ._optimizers import SOLVERS
from ._private import check_private_settings
from ._scheduling import check_schedule_type, is_adaptive
from .reduction import REDUCTIONS
from .schedules import BatchSizeSchedule

__all__ = [
    "SHARED_PARAMETERS_DOC",
    "Parameters",
    "check_combinations",
    "extend_signature",
]


class Parameters:
    """The shared constructor: stores every parameter as given, checks none."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto", "full", "adaptive"}),
            Interval(Integral, 1, None, closed="left"),
            BatchSizeSchedule,
        ],
        "learning_rate_scaling": [StrOptions({"auto", "linear", "sqrt"}), None],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "gradient_reduction": [StrOptions(set(REDUCTIONS))],
        "drop_last": ["boolean", StrOptions({"merge"})],
        "average": ["boolean", Interval(Integral, 1, None, closed="left")],
        "max_gradient_norm": [None, Interval(Real, 0, None, closed="neither")],
        "batch_sampling": [StrOptions({"epoch", "poisson"})],
        "noise_multiplier": [Interval(Real, 0, None, closed="left")],
        "target_epsilon": [None, Interval(Real, 0, None, closed="neither")],
        "target_delta": [None, Interval(Real, 0, 1, closed="neither")],
        "unsafe_noise_seed": [None, Interval(Integral, 0, None, closed="left")],
        "track_noise_scale": ["boolean"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_scaling="auto",
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
        max_gradient_norm=None,
        batch_sampling="epoch",
        noise_multiplier=0.0,
        target_epsilon=None,
        target_delta=None,
        unsafe_noise_seed=None,
        track_noise_scale=False,
    ):
        for name, value in locals().items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _validate_params(self):
        # Before scikit-learn's checks, whose message for a lambda would list
        # the valid types but not why a plain callable is refused.
        check_schedule_type(self.batch_size)
        super()._validate_params()


def extend_signature(init):
    """Give ``init`` the full signature: its own parameters and the base's.

    A subclass's ``__init__`` names only what it adds and passes the shared
    parameters on as ``**params``; scikit-learn's ``get_params``, ``clone``,
    ``repr`` and ``help()`` read this signature, so the shared parameter list
    is written once, in :class:`Parameters`.
    """
    own = [
        p
        for p in inspect.signature(init).parameters.values()
        if p.kind is not p.VAR_KEYWORD
    ]
    names = {p.name for p in own}
    shared = [
        p
        for p in inspect.signature(Parameters.__init__).parameters.values()
        if p.name not in names
    ]
    keyword = inspect.Parameter.KEYWORD_ONLY
    init.__signature__ = inspect.Signature(
        [p for p in own + shared if p.kind is not keyword]
        + [p for p in shared + own if p.kind is keyword]
    )
    return init


def check_combinations(params):
    """Refuse settings that are each valid but do not go together.

    ``params`` are an estimator's ``get_params()``, already validated one by
    one; raises a ValueError that names the settings and the fix.
    """
    if params["max_gradient_norm"] is not None and params["solver"] == "lbfgs":
        raise ValueError(
            "max_gradient_norm clips each example's gradient in a minibatch "
            "step, and solver='lbfgs' takes none: it minimizes E on the whole "
            "set. Use solver='sgd' or 'adam', or set max_gradient_norm=None."
        )
    if params["track_noise_scale"] or is_adaptive(params["batch_size"]):
        _check_tracking(params)
    check_private_settings(params)


def _check_tracking(params):
    """Refuse track_noise_scale=True where its estimates have no meaning."""
    why = None
    if params["solver"] == "lbfgs":
        why = "solver='lbfgs' takes no minibatch steps. Use solver='sgd' or 'adam'"
    elif params["noise_multiplier"] > 0 or params["target_epsilon"] is not None:
        why = (
            "under DP noise the estimates would release what the noise hides "
            "about each example. Train without noise to measure the noise scale"
        )
    elif params["max_gradient_norm"] is not None:
        why = (
            "the estimates need the unclipped per-example gradients, which a "
            "clipped step does not form. Set max_gradient_norm=None"
        )
    if why is not None:
        what = (
            f"batch_size={params['batch_size']!r}, which tracks the noise scale,"
            if is_adaptive(params["batch_size"])
            else "track_noise_scale=True"
        )
        raise ValueError(
            f"{what} cannot be used here: {why}; or set track_noise_scale=False "
            "and a fixed batch_size."
        )


SHARED_PARAMETERS_DOC = """\
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

    batch_size : int, 'auto', 'full', 'adaptive' or BatchSizeSchedule, \
default='auto'
        Rows per step: 1 is stochastic gradient descent, an int is a
        minibatch, ``'auto'`` is ``min(200, n_samples)``, ``'full'`` is
        gradient descent on the whole set. A batch larger than the data set is
        the whole set. ``'adaptive'`` is
        :class:`~skbatchnet.schedules.AdaptiveBatchSize` with its defaults:
        the batch follows the gradient noise scale tracked while training
        (``track_noise_scale`` is implied; not with ``'lbfgs'``, DP noise or
        ``max_gradient_norm``). A schedule from :mod:`skbatchnet.schedules` (such as
        ``StepBatchSize({0: 8, 10: 32})``) gives each epoch its own batch
        size, from the epoch number ``n_iter_`` at its start: ``fit`` counts
        from 0, ``partial_fit`` adds one per call. A size the schedule gives
        that is not a positive int or ``'full'``, or exceeds the training
        rows, raises before training (for a call's first 10^5 epochs; a
        later one's as it starts, rolling the fit back); plain callables
        are refused (they do not pickle). Ignored by ``'lbfgs'``; refused
        with ``target_epsilon``, whose calibration assumes one sampling
        rate (with ``noise_multiplier`` each epoch's rate is accounted for).

    learning_rate_scaling : {'auto', 'linear', 'sqrt'} or None, default='auto'
        How the learning rate follows a batch-size schedule (no effect at a
        fixed ``batch_size``): each epoch's rate is multiplied by ``r ** (p -
        c)``, ``r`` being its batch size over the schedule's at epoch 0,
        ``p`` 1 for ``'linear'`` and 1/2 for ``'sqrt'``, and ``c`` 1 for
        ``'sgd'`` under ``gradient_reduction='sum'`` (whose step already
        grows with the batch) and 0 otherwise (Adam divides the gradient's
        scale out under any reduction). None keeps the rate as given.
        ``'auto'`` is None for ``'sgd'`` (under ``'sum'`` the step then
        grows linearly with the batch, under ``'mean'`` the growing batch
        anneals the noise at a fixed rate) and ``'sqrt'`` for ``'adam'``.
        Exact for plain SGD in the small-step limit; approximate with
        momentum and for Adam. See
        :func:`skbatchnet.schedules.learning_rate_factor`.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning rate schedule of ``solver='sgd'``: constant; divided by
        ``(t + 1) ** power_t`` after each epoch, ``t`` being the samples seen;
        or divided by 5 whenever the loss stalls for ``n_iter_no_change``
        epochs.

    learning_rate_init : float, default=0.001
        Initial step size of ``'sgd'`` and ``'adam'``.

    power_t : float, default=0.5
        Exponent of ``learning_rate='invscaling'``. A ``power_t`` so large
        that the rate after a call's first epoch is below the smallest float
        (0) raises a ValueError before training, where scikit-learn raises an
        OverflowError; a rate that reaches 0 later in a run is 0, and the
        stopping rule ends the run.

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
        improving; the best weights are kept. A binary target with a class too
        rare to stratify raises a ValueError (as in scikit-learn); a
        multiclass one warns and is split at random. A run that diverges
        stops there, keeping the best weights, with a ConvergenceWarning.

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

    gradient_reduction : {'mean', 'sum', 'unbiased'}, default='mean'
        How per-example gradients ``g_i = grad(loss_i) + (alpha/S) W`` become
        one step, for a batch ``B`` of a training set of ``n`` rows and total
        weight ``S``:

        - ``'mean'`` follows ``sum_B s_i g_i / sum_B s_i``, as scikit-learn
          does. It estimates ``grad E`` without bias only when the sample
          weights are equal. Under unequal weights it is a ratio estimator
          whose fixed point depends on the batch size: at ``batch_size=1``
          the weights cancel and training follows the unweighted objective;
          only a whole-set batch gives ``grad E`` exactly.
        - ``'unbiased'`` follows
          ``sum_B s_i grad(loss_i) / (|B| S / n) + (alpha/S) W``, the
          batch's weighted sum divided by its *expected* weight, the penalty
          at its expectation: an unbiased estimate
          of ``grad E`` under any weights, equal to ``'mean'`` with unit
          weights. A batch of zero weight steps on the penalty alone.
        - ``'sum'`` follows ``sum_B s_i g_i``, an unbiased estimate of
          ``(|B| S / n) grad E`` under any weights: its step grows with the
          batch (the linear learning-rate scaling rule).

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
        an int ``k`` starts the mean once ``k`` samples have been seen (any
        int: a ``k`` beyond the samples training sees leaves the weights
        unaveraged).
        Training continues from the raw weights; the average carries over
        ``partial_fit`` calls, ``warm_start`` fits and pickling. Ignored by
        ``'lbfgs'``. With ``early_stopping``, the average is over the whole
        run.

    max_gradient_norm : float > 0, default=None
        Per-example clipping: each example's gradient of its loss (every
        layer's weights and biases flattened into one vector, the penalty
        left out) is scaled by ``min(1, C / ||grad(loss_i)||)``, with ``C``
        this value, before the reduction combines the batch. The norms come
        from the backward pass's own matrices, without forming any
        per-example gradient. Composes with every reduction and with
        ``'sgd'`` and ``'adam'``; refused with ``'lbfgs'``. The fraction of
        examples clipped in each epoch is reported in
        ``clip_fraction_curve_``, for tuning ``C``. None does not clip.

    batch_sampling : {'epoch', 'poisson'}, default='epoch'
        How batches are drawn. ``'epoch'``: each epoch visits every row once,
        in batches of ``batch_size`` (shuffled if ``shuffle``; ``drop_last``
        applies). ``'poisson'``: each step takes every row independently with
        probability ``q = batch_size / n_samples`` (DP-SGD's sampling), for
        ``ceil(n_samples / batch_size)`` steps an epoch; ``shuffle`` and
        ``drop_last`` do not apply. A batch's size and weight are then
        random: ``'unbiased'`` divides by the expected weight ``q S`` and
        ``'sum'`` takes its penalty at that expectation, and under both every
        step is taken, empty batches included (``'mean'`` skips them).
        Without noise the batches follow ``random_state``.

    noise_multiplier : float >= 0, default=0.0
        DP-SGD (Abadi et al. 2016): Gaussian noise of standard deviation
        ``noise_multiplier * max_gradient_norm`` added to each step's sum of
        clipped gradients before the reduction's divisor. Needs
        ``max_gradient_norm``, ``batch_sampling='poisson'`` and
        ``gradient_reduction='unbiased'`` or ``'sum'``; under ``'unbiased'``
        the step is ``(sum_B s_i clip(grad(loss_i)) + N(0, sigma^2 C^2 I)) /
        batch_size`` plus the penalty. Under noise ``n_samples`` is treated
        as public (as Opacus does) and takes the place of ``S`` in the step
        and the objective (the same for unit weights); weights must be at
        most 1; the noise and the batches come from fresh OS entropy (not
        ``random_state``, which still draws the initial weights); and
        training runs ``max_iter`` epochs, since the ``tol`` rule would stop
        on the data; ``t_``, ``n_samples_per_epoch_`` and an integer
        ``average`` count each step's expected rows ``q n``, not the rows
        drawn; training without noise before or after makes ``epsilon_``
        infinite. Early stopping, ``learning_rate='adaptive'`` and
        ``class_weight='balanced'`` are refused. What the fitted model
        reports from the data (``loss_curve_``, ``best_loss_``,
        ``clip_fraction_curve_``, ``classes_``) and what a pipeline's
        preprocessing learns are not covered by the guarantee. numpy's
        generator is not a cryptographically secure source, and
        floating-point Gaussian noise has known attacks; the guarantee is
        that of the mathematics, not of this implementation against them.

    target_epsilon : float > 0, default=None
        Choose the noise multiplier so that ``max_iter`` epochs spend this
        epsilon at ``target_delta`` (published as ``noise_multiplier_``; the
        parameter is not changed). Refused with ``noise_multiplier > 0``,
        ``warm_start`` and ``partial_fit``, which do not know the run's
        steps. Needs the ``privacy`` extra (dp-accounting).

    target_delta : float in (0, 1), default=None
        The delta at which ``epsilon_`` is reported; it must be below ``1 /
        n_samples``. Needs the ``privacy`` extra (dp-accounting).

    unsafe_noise_seed : int >= 0, default=None
        Seed the noise and the Poisson batches, which voids the privacy
        guarantee (with a ``PrivacyWarning``): for tests and reproducible
        comparisons only. Each call to ``fit`` or ``partial_fit`` starts the
        generator from this seed.
    track_noise_scale : bool, default=False
        Estimate the gradient noise scale ``B_simple = tr(Sigma) / |G|^2``
        (McCandlish et al., 2018) at every step of two rows or more, from the
        step's per-example gradient norms and its reduced gradient, and
        record it per epoch in ``noise_scale_curve_``, with its terms in
        ``squared_gradient_curve_`` and ``gradient_variance_curve_``. It costs
        a pass over each row's activations and one over the gradient per
        step, small beside the step's products. Not with
        ``solver='lbfgs'``, DP noise or ``max_gradient_norm``. See the user
        guide, "Choosing the batch size".
"""
