"""A differentially private fit: what it refuses, its randomness, its account.

A fit is private when ``noise_multiplier > 0`` or ``target_epsilon`` is set:
its steps are DP-SGD's (Poisson batches, per-example clipping, Gaussian
noise; :mod:`skbatchnet.reduction`), and the epsilon they spend is accounted
for by :mod:`skbatchnet.privacy`. The guarantee holds only if nothing else the
fit decides depends on the data, so this module refuses, before any training,
every setting that would make such a decision (early stopping, the adaptive
rate, balanced class weights, weights above 1), and the estimators switch off
what may run without deciding anything (the ``tol`` stopping rule, the
divergence-by-growth stop: ``max_iter`` epochs are run) and count a step's
rows as expected (``q n``), since a Poisson batch's size would tell whether an
example was drawn.

The noise and the Poisson batches come from a Generator of fresh operating
system entropy, made for each call and never stored: an int ``random_state``
is public, and a stored generator (PCG64's state steps back as easily as
forward) would let whoever holds a pickle of the model regenerate the noise.
``unsafe_noise_seed`` makes both reproducible, for tests, and says so.
"""

import copy
import math

import numpy as np

from ._warn import warn
from .batching import resolve_batch_size
from .privacy import (
    PrivacyLedger,
    PrivacyWarning,
    calibrate_noise_multiplier,
    require_dp_accounting,
)
from .schedules import BatchSizeSchedule

__all__ = [
    "batch_generator",
    "check_private_data",
    "check_private_settings",
    "is_private",
    "noise_multiplier",
    "record_steps",
    "warn_if_classes_inferred",
]


def is_private(params):
    """Whether the settings ``params`` (``get_params()``) ask for DP noise."""
    return params["noise_multiplier"] > 0 or params["target_epsilon"] is not None


def _refuse(what, why, fix):
    raise ValueError(f"{what}: {why} {fix}")


def check_private_settings(params):
    """Refuse settings that do not go together with Poisson batches or noise.

    ``params`` are an estimator's ``get_params()``, each already valid on its
    own; raises a ValueError that names the settings and the fix.
    """
    poisson = params["batch_sampling"] == "poisson"
    if poisson and params["solver"] == "lbfgs":
        _refuse(
            "batch_sampling='poisson' with solver='lbfgs'",
            "L-BFGS takes no minibatch steps.",
            "Use solver='sgd' or 'adam', or batch_sampling='epoch'.",
        )
    if params["target_epsilon"] is not None:
        if params["noise_multiplier"] > 0:
            _refuse(
                "target_epsilon with noise_multiplier > 0",
                "target_epsilon chooses the noise multiplier itself.",
                "Set one of them: noise_multiplier=0 or target_epsilon=None.",
            )
        if params["target_delta"] is None:
            _refuse(
                "target_epsilon without target_delta",
                "epsilon is defined at a delta.",
                "Set target_delta, well below 1 / n_samples (e.g. 1e-5).",
            )
        if isinstance(params["batch_size"], BatchSizeSchedule):
            _refuse(
                f"target_epsilon with batch_size={params['batch_size']!r}",
                "the calibration assumes one sampling rate q for the whole run, "
                "and a schedule changes it every time the batch size changes.",
                "Set noise_multiplier instead: each epoch's q is accounted for "
                "in privacy_ledger_, and epsilon_ reports what the run spent.",
            )
        if params["warm_start"]:
            _refuse(
                "target_epsilon with warm_start=True",
                "the calibration needs the number of steps of the whole run, "
                "which a continued fit does not know.",
                "Set noise_multiplier instead, and read epsilon_ after fitting.",
            )
    if not is_private(params):
        return
    missing = [
        need
        for need, present in (
            ("max_gradient_norm (the clipping norm C)", params["max_gradient_norm"]),
            ("batch_sampling='poisson'", poisson),
            (
                "gradient_reduction='unbiased' or 'sum' ('mean' divides by the "
                "batch's own weight, which the noise does not hide)",
                params["gradient_reduction"] != "mean",
            ),
        )
        if not present
    ]
    if missing:
        _refuse(
            "DP noise (noise_multiplier > 0 or target_epsilon)",
            "its steps are DP-SGD's.",
            "Also set " + "; ".join(missing) + ".",
        )
    decisions = {
        "early_stopping=True": params["early_stopping"],
        "learning_rate='adaptive'": params["learning_rate"] == "adaptive",
        "class_weight='balanced'": params.get("class_weight") == "balanced",
    }
    for setting, present in decisions.items():
        if present:
            _refuse(
                f"{setting} under DP noise",
                "it makes a decision from the data that the noise does not "
                "cover (the held-out score, the loss, the class frequencies).",
                f"Remove {setting.split('=')[0]}, or train without noise.",
            )
    if params["target_delta"] is not None or params["target_epsilon"] is not None:
        require_dp_accounting()


def check_private_data(params, n_samples, max_weight, *, incremental):
    """Refuse what a private fit cannot take from this call's data.

    Weights above 1 would raise an example's sensitivity above ``C``
    (``max_weight`` is the data's largest weight, None without weights: a
    number, which data held on a cluster computes where its weights are);
    ``target_delta`` must be below ``1 / n_samples`` (a delta of ``1 / n``
    allows publishing one example outright); ``target_epsilon`` needs the
    whole run's steps, which ``partial_fit`` does not know.
    """
    if incremental and params["target_epsilon"] is not None:
        _refuse(
            "target_epsilon with partial_fit",
            "the calibration needs the number of steps of the whole run.",
            "Set noise_multiplier instead; epsilon_ accumulates over the calls.",
        )
    if max_weight is not None and max_weight > 1:
        _refuse(
            "Sample or class weights above 1 under DP noise",
            "an example of weight s moves the noisy sum by up to s C, more than "
            "the C the noise is scaled to.",
            "Rescale the weights to at most 1 (e.g. divide by their maximum).",
        )
    delta = params["target_delta"]
    if delta is not None and not delta < 1 / n_samples:
        _refuse(
            f"target_delta={delta!r} with {n_samples} training rows",
            "a delta of 1 / n_samples or more allows publishing an example.",
            f"Set target_delta well below {1 / n_samples:.3g} (e.g. 1 / n^1.1).",
        )


def batch_generator(params, rng):
    """The Generator of this call's Poisson batches and noise.

    Under noise: fresh OS entropy, or ``unsafe_noise_seed`` with a warning.
    Without noise, Poisson batches follow ``random_state``: the generator is
    seeded from ``rng``, the estimator's stream.
    """
    if not is_private(params):
        return np.random.default_rng(rng.randint(0, 2**32, size=4))
    seed = params["unsafe_noise_seed"]
    if seed is None:
        return np.random.default_rng()
    warn(
        f"unsafe_noise_seed={seed!r} makes the noise and the Poisson batches "
        "reproducible, which voids the privacy guarantee: use it for tests "
        "only, and never publish a model trained with it.",
        PrivacyWarning,
    )
    return np.random.default_rng(seed)


def noise_multiplier(params, n_samples):
    """The noise multiplier of this fit: ``noise_multiplier``, or the one
    calibrated to ``target_epsilon`` at ``target_delta`` for ``max_iter``
    epochs of ``ceil(n / batch_size)`` steps, sampling rate ``batch_size / n``.
    """
    if params["target_epsilon"] is None:
        return float(params["noise_multiplier"])
    batch_size = resolve_batch_size(params["batch_size"], n_samples)
    steps = params["max_iter"] * math.ceil(n_samples / batch_size)
    return calibrate_noise_multiplier(
        params["target_epsilon"],
        params["target_delta"],
        batch_size / n_samples,
        steps,
    )


def record_steps(ledger, sigma, sample_rate, steps):
    """The ledger with ``steps`` more steps of noise ``sigma`` at rate ``q``.

    ``ledger`` None starts one. Steps without noise (``sigma=0``, a
    non-private continuation of a private model) make epsilon infinite.
    """
    # A copy: a fit that fails later restores the ledger it started with.
    ledger = PrivacyLedger() if ledger is None else copy.deepcopy(ledger)
    return ledger.record(sigma, sample_rate, steps)


def warn_if_classes_inferred(params):
    """Warn that a private classifier's ``classes_`` comes from the data."""
    if is_private(params):
        warn(
            "classes_ is learned from y, and the privacy guarantee does not "
            "cover it (a label seen once reveals its example). Pass every "
            "possible label to partial_fit(classes=...) to keep it out of "
            "the data.",
            PrivacyWarning,
        )
