"""Privacy accounting for DP-SGD: the epsilon that noisy steps spend.

Requires Google's ``dp-accounting`` (``pip install "skbatchnet[privacy]"``),
imported on first use, so this module imports without it.

A DP-SGD step draws its batch by Poisson sampling (each row independently,
with probability ``q = sample_rate``), clips each example's gradient to norm
``C``, sums, and adds Gaussian noise of standard deviation ``sigma * C``
(``sigma = noise_multiplier``). One step is the *sampled Gaussian mechanism*;
``T`` steps are its ``T``-fold composition, the ``dp_accounting`` event
``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), T)``.
An accountant turns that event into the smallest ``epsilon`` for which the
whole training run is ``(epsilon, target_delta)``-differentially private.

Adjacency is *add or remove one example*
(``NeighboringRelation.ADD_OR_REMOVE_ONE``), the relation Poisson sampling's
amplification is proved for, and the one TensorFlow Privacy and Opacus
report. The guarantee covers every intermediate model as well as the final
one. It holds only if nothing else the fit does depends on the data, and it
treats the number of rows ``n`` (hence ``q``) as public.

Two accountants are offered (``accountant=``):

``'rdp'`` (the default)
    Rényi differential privacy (Mironov 2017; the sampled Gaussian
    mechanism's RDP from Mironov, Talwar and Zhang 2019), converted to
    ``(epsilon, delta)`` with the bound of Balle et al. (2020) over
    dp-accounting's default orders. It is the analysis behind most published
    DP-SGD numbers, and it is fast: under a tenth of a second even for
    ``10^5`` steps, so it can be recomputed after every ``partial_fit``, and
    calibration takes about a second.
``'pld'``
    The privacy loss distribution, composed numerically (Koskela et al.
    2020; dp-accounting's pessimistic "connect the dots" discretization of
    Doroshenko et al. 2022, interval ``1e-4``). It is nearly exact, so its
    epsilon is smaller: by 5 to 10 % after ``10^4`` steps or more, by up to a
    third after a few hundred. But a call takes about ten times as long
    (half a second to a few seconds), and calibration ten to thirty times
    as long (10 to 20 s; a minute when the target needs little noise).

Published numbers computed with RDP before 2020 used the older conversion
``epsilon = min_a (rdp(a) + log(1 / delta) / (a - 1))`` (Mironov 2017,
Proposition 3); for the same run they are larger than ``'rdp'`` here, by
0.2 to 0.8 for the runs in TensorFlow Privacy's MNIST tutorial (its 3.01 is
2.60 here). Both are valid upper bounds.

References
----------
M. Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.

I. Mironov, "Rényi Differential Privacy", CSF 2017.

I. Mironov, K. Talwar and L. Zhang, "Rényi Differential Privacy of the
Sampled Gaussian Mechanism", arXiv:1908.10530, 2019.

B. Balle et al., "Hypothesis Testing Interpretations and Rényi Differential
Privacy", AISTATS 2020.

A. Koskela, J. Jälkö and A. Honkela, "Computing Tight Differential Privacy
Guarantees Using FFT", AISTATS 2020.

V. Doroshenko, B. Ghazi, P. Kamath, R. Kumar and P. Manurangsi, "Connect the
Dots: Tighter Discrete Approximations of Privacy Loss Distributions", PETS
2022.

Examples
--------
>>> from skbatchnet.privacy import PrivacyLedger, dp_sgd_epsilon
>>> q = 256 / 60000  # batch_size / n_samples
>>> round(dp_sgd_epsilon(1.1, q, 60 * 235, target_delta=1e-5), 1)
2.6
>>> ledger = PrivacyLedger()
>>> ledger.record(1.1, q, 30 * 235).record(1.1, q, 30 * 235)
PrivacyLedger([(1.1, 0.004266666666666667, 14100)])
>>> round(ledger.epsilon(target_delta=1e-5), 1)
2.6
"""

import math
from numbers import Integral, Real

__all__ = [
    "ACCOUNTANTS",
    "PrivacyLedger",
    "PrivacyWarning",
    "calibrate_noise_multiplier",
    "dp_sgd_epsilon",
    "require_dp_accounting",
]

_INSTALL = 'pip install "skbatchnet[privacy]"'


class PrivacyWarning(UserWarning):
    """A private fit does something its guarantee does not cover.

    Raised when a private classifier learns ``classes_`` from the data, and
    when ``unsafe_noise_seed`` makes the noise reproducible.
    """


def _dp_accounting():
    """The ``dp_accounting`` package, imported on first use."""
    try:
        import dp_accounting
    except ImportError as exc:
        raise ImportError(
            "Privacy accounting needs Google's dp-accounting package, which is "
            f"not installed: {_INSTALL}"
        ) from exc
    return dp_accounting


def require_dp_accounting():
    """Raise the ImportError of a missing dp-accounting now, before training."""
    _dp_accounting()


def _rdp_accountant(dp_accounting):
    return dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )


def _pld_accountant(dp_accounting):
    return dp_accounting.pld.PLDAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )


# Accountant names and the fresh, empty accountant each one makes (given the
# dp_accounting module, which is imported only when an epsilon is asked for).
ACCOUNTANTS = {"rdp": _rdp_accountant, "pld": _pld_accountant}


def _make_accountant(dp_accounting, accountant):
    made = ACCOUNTANTS[accountant](dp_accounting)
    # The amplification by Poisson sampling behind every number here is
    # proved for add/remove adjacency; an accountant that quietly used
    # another relation would report a different guarantee.
    if made.neighboring_relation is not (
        dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    ):
        raise RuntimeError(
            f"The {accountant!r} accountant uses {made.neighboring_relation}, "
            "not ADD_OR_REMOVE_ONE adjacency."
        )
    return made


# -- argument checks: each error names the parameter, the value and the fix ---


def _is_real(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_noise_multiplier(noise_multiplier):
    if not (
        _is_real(noise_multiplier)
        and math.isfinite(noise_multiplier)
        and noise_multiplier >= 0
    ):
        raise ValueError(
            "noise_multiplier must be a finite number >= 0 (the noise's standard "
            "deviation over the clipping norm), got "
            f"{noise_multiplier!r}."
        )
    return float(noise_multiplier)


def _check_sample_rate(sample_rate):
    if not (_is_real(sample_rate) and 0 < sample_rate <= 1):
        raise ValueError(
            "sample_rate must be in (0, 1]: the probability that Poisson sampling "
            f"puts a row in a batch, batch_size / n_samples; got {sample_rate!r}."
        )
    return float(sample_rate)


def _check_steps(steps, minimum=0):
    if not (
        isinstance(steps, Integral) and not isinstance(steps, bool) and steps >= minimum
    ):
        raise ValueError(
            f"steps must be an integer >= {minimum}, the number of noisy steps "
            f"taken; got {steps!r}."
        )
    return int(steps)


def _check_target_delta(target_delta):
    if not (_is_real(target_delta) and 0 < target_delta < 1):
        raise ValueError(
            "target_delta must be in (0, 1), and well below 1 / n_samples for a "
            f"meaningful guarantee (1e-5 is common); got {target_delta!r}."
        )
    return float(target_delta)


def _check_target_epsilon(target_epsilon):
    if not (
        _is_real(target_epsilon)
        and math.isfinite(target_epsilon)
        and target_epsilon > 0
    ):
        raise ValueError(
            "target_epsilon must be a finite number > 0 (1 to 10 is usual); got "
            f"{target_epsilon!r}."
        )
    return float(target_epsilon)


def _check_accountant(accountant):
    if not (isinstance(accountant, str) and accountant in ACCOUNTANTS):
        raise ValueError(
            f"accountant must be one of {sorted(ACCOUNTANTS)}, got {accountant!r}."
        )
    return accountant


# -- the event and its epsilon ------------------------------------------------


def _dp_sgd_event(dp_accounting, noise_multiplier, sample_rate, steps):
    """``steps`` steps of the Poisson-sampled Gaussian mechanism."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
        ),
        steps,
    )


class PrivacyLedger:
    """The noisy steps of a training run, to account for its privacy.

    A list of records ``(noise_multiplier, sample_rate, steps)``, one for
    each run of steps that shared the same noise and sampling rate; a record
    that continues the previous one's ``(noise_multiplier, sample_rate)`` is
    merged into it, so that successive ``partial_fit`` calls keep the ledger,
    and the event the accountant composes, small. The ledger holds plain
    Python numbers only: it pickles, copies and compares by value.

    Attributes
    ----------
    records : list of tuple (float, float, int)
        ``(noise_multiplier, sample_rate, steps)``, in the order recorded.

    See Also
    --------
    dp_sgd_epsilon : The epsilon of a single run of steps.

    Examples
    --------
    >>> from skbatchnet.privacy import PrivacyLedger
    >>> ledger = PrivacyLedger()
    >>> ledger.epsilon(target_delta=1e-5)
    0.0
    >>> ledger.record(1.0, 0.01, 500).record(1.0, 0.01, 500).record(2.0, 0.01, 100)
    PrivacyLedger([(1.0, 0.01, 1000), (2.0, 0.01, 100)])
    >>> ledger.steps
    1100
    >>> round(ledger.epsilon(target_delta=1e-5), 2)
    2.11
    """

    def __init__(self):
        self.records = []
        self._epsilons = {}  # (records, delta, accountant) -> epsilon

    def record(self, noise_multiplier, sample_rate, steps):
        """Add ``steps`` noisy steps.

        Parameters
        ----------
        noise_multiplier : float
            ``sigma``: the noise's standard deviation divided by the clipping
            norm. A record with ``noise_multiplier=0`` (and ``steps > 0``)
            makes the epsilon infinite.
        sample_rate : float
            ``q`` in (0, 1]: the probability that Poisson sampling puts a
            row in a step's batch.
        steps : int
            Steps taken, empty batches included (an empty batch's step still
            releases noise). ``0`` records nothing.

        Returns
        -------
        self : PrivacyLedger
            The ledger, so that calls can be chained.
        """
        noise_multiplier = _check_noise_multiplier(noise_multiplier)
        sample_rate = _check_sample_rate(sample_rate)
        steps = _check_steps(steps)
        if steps == 0:
            return self
        if self.records and self.records[-1][:2] == (noise_multiplier, sample_rate):
            self.records[-1] = (
                noise_multiplier,
                sample_rate,
                self.records[-1][2] + steps,
            )
        else:
            self.records.append((noise_multiplier, sample_rate, steps))
        return self

    @property
    def steps(self):
        """The number of steps recorded, an int."""
        return sum(steps for _, _, steps in self.records)

    def event(self):
        """The ``dp_accounting`` event of the recorded steps.

        A record ``(sigma, q, steps)`` is the event::

            SelfComposedDpEvent(
                PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps
            )

        Several records make the ``ComposedDpEvent`` of theirs, and an empty
        ledger ``NoOpDpEvent()``. Any ``dp_accounting`` accountant can
        compose the event.

        Returns
        -------
        event : dp_accounting.DpEvent
            The steps recorded, as one event.
        """
        dp_accounting = _dp_accounting()
        events = [_dp_sgd_event(dp_accounting, *record) for record in self.records]
        if not events:
            return dp_accounting.NoOpDpEvent()
        if len(events) == 1:
            return events[0]
        return dp_accounting.ComposedDpEvent(events)

    def epsilon(self, target_delta, *, accountant="rdp"):
        """The epsilon spent by all recorded steps, at ``target_delta``.

        Parameters
        ----------
        target_delta : float
            ``delta`` in (0, 1); it should be well below ``1 / n_samples``.
        accountant : {'rdp', 'pld'}, default='rdp'
            Rényi DP or the privacy loss distribution; see the module's
            documentation for the difference.

        Returns
        -------
        epsilon : float
            ``0.0`` for an empty ledger, ``inf`` if a record has
            ``noise_multiplier=0``.
        """
        target_delta = _check_target_delta(target_delta)
        accountant = _check_accountant(accountant)
        if not self.records:
            return 0.0
        if any(noise_multiplier == 0 for noise_multiplier, _, _ in self.records):
            return math.inf
        # An accountant's epsilon costs tens of milliseconds whatever the
        # steps; asked again for the same records, the ledger answers at once.
        key = (tuple(self.records), target_delta, accountant)
        cache = vars(self).setdefault("_epsilons", {})  # older pickles lack it
        if key not in cache:
            dp_accounting = _dp_accounting()
            made = _make_accountant(dp_accounting, accountant)
            cache[key] = float(made.compose(self.event()).get_epsilon(target_delta))
        return cache[key]

    def __eq__(self, other):
        if not isinstance(other, PrivacyLedger):
            return NotImplemented
        return self.records == other.records

    # Mutable, so unhashable, as a list is.
    __hash__ = None

    def __repr__(self):
        return f"PrivacyLedger({self.records!r})"


def dp_sgd_epsilon(
    noise_multiplier, sample_rate, steps, target_delta, *, accountant="rdp"
):
    """The epsilon spent by ``steps`` steps of DP-SGD.

    Each step is the Poisson-sampled Gaussian mechanism: every row joins the
    batch independently with probability ``sample_rate``, and the sum of the
    clipped gradients gets Gaussian noise of standard deviation
    ``noise_multiplier`` times the clipping norm. The ``steps`` steps are
    composed as one ``dp_accounting`` event under add/remove adjacency (see
    the module's documentation).

    Parameters
    ----------
    noise_multiplier : float
        ``sigma`` >= 0: the noise's standard deviation over the clipping
        norm. ``0`` gives ``inf``.
    sample_rate : float
        ``q`` in (0, 1]: ``batch_size / n_samples``.
    steps : int
        Noisy steps taken (>= 0), empty batches included. ``0`` gives ``0.0``.
    target_delta : float
        ``delta`` in (0, 1); it should be well below ``1 / n_samples``.
    accountant : {'rdp', 'pld'}, default='rdp'
        ``'rdp'``: Rényi DP, the classic analysis and the fast one (under a
        tenth of a second up to ``10^5`` steps). ``'pld'``: the privacy loss
        distribution, tighter (a smaller epsilon, by 5 to 10 % after
        ``10^4`` steps, up to a third after a few hundred) but about ten
        times slower (half a second to a few seconds). RDP is the default
        because most published DP-SGD numbers use it and because it is cheap
        enough to recompute after every ``partial_fit``.

    Returns
    -------
    epsilon : float
        The run is ``(epsilon, target_delta)``-differentially private.

    See Also
    --------
    calibrate_noise_multiplier : The noise that reaches a target epsilon.
    PrivacyLedger : The epsilon of several runs of steps.

    Examples
    --------
    TensorFlow Privacy's MNIST tutorial: 60 epochs over 60,000 rows in
    batches of 256, noise multiplier 1.1.

    >>> import math
    >>> from skbatchnet.privacy import dp_sgd_epsilon
    >>> steps = math.ceil(60 * 60000 / 256)
    >>> round(dp_sgd_epsilon(1.1, 256 / 60000, steps, 1e-5), 2)
    2.6
    >>> round(dp_sgd_epsilon(1.1, 256 / 60000, steps, 1e-5, accountant="pld"), 2)
    2.38
    """
    ledger = PrivacyLedger().record(noise_multiplier, sample_rate, steps)
    return ledger.epsilon(target_delta, accountant=accountant)


def calibrate_noise_multiplier(
    target_epsilon, target_delta, sample_rate, steps, *, accountant="rdp"
):
    """The smallest noise multiplier whose steps spend at most ``target_epsilon``.

    The search is dp-accounting's own (``calibrate_dp_mechanism``: an
    expanding bracket from ``[0, 1]``, then Brent's method to ``1e-6`` in
    sigma), and it returns a sigma whose epsilon does not exceed the target.

    Parameters
    ----------
    target_epsilon : float
        The epsilon to reach, > 0.
    target_delta : float
        ``delta`` in (0, 1); it should be well below ``1 / n_samples``.
    sample_rate : float
        ``q`` in (0, 1]: ``batch_size / n_samples``.
    steps : int
        The noisy steps training will take, >= 1 (``max_iter`` epochs of
        ``ceil(1 / sample_rate)`` steps, for instance).
    accountant : {'rdp', 'pld'}, default='rdp'
        As in :func:`dp_sgd_epsilon`. Each trial of the search is one
        epsilon: with ``'rdp'`` calibration takes about a second, with
        ``'pld'`` 10 to 20 seconds (a minute when the target needs little
        noise), and it finds a sigma 4 to 16 % smaller.

    Returns
    -------
    noise_multiplier : float
        ``dp_sgd_epsilon(noise_multiplier, sample_rate, steps, target_delta,
        accountant=accountant) <= target_epsilon``, and a sigma ``1e-6``
        smaller would exceed it.

    See Also
    --------
    dp_sgd_epsilon : The epsilon of a given noise multiplier.

    Examples
    --------
    >>> from skbatchnet.privacy import calibrate_noise_multiplier, dp_sgd_epsilon
    >>> sigma = calibrate_noise_multiplier(3.0, 1e-5, 256 / 60000, 14063)
    >>> round(sigma, 2)
    1.01
    >>> dp_sgd_epsilon(sigma, 256 / 60000, 14063, 1e-5) <= 3.0
    True
    """
    target_epsilon = _check_target_epsilon(target_epsilon)
    target_delta = _check_target_delta(target_delta)
    sample_rate = _check_sample_rate(sample_rate)
    steps = _check_steps(steps, minimum=1)
    accountant = _check_accountant(accountant)
    dp_accounting = _dp_accounting()
    try:
        sigma = dp_accounting.calibrate_dp_mechanism(
            lambda: _make_accountant(dp_accounting, accountant),
            lambda sigma: _dp_sgd_event(dp_accounting, sigma, sample_rate, steps),
            target_epsilon,
            target_delta,
        )
    except dp_accounting.mechanism_calibration.NoBracketIntervalFoundError as exc:
        raise ValueError(
            f"No noise_multiplier up to 2**30 reaches target_epsilon="
            f"{target_epsilon!r} at target_delta={target_delta!r}; raise "
            "target_epsilon or target_delta, or take fewer steps."
        ) from exc
    return float(sigma)
