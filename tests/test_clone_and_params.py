"""``clone``, ``get_params`` and ``set_params`` over every constructor
parameter, as scikit-learn's tools use them.
"""

import numpy as np
import pytest
from conftest import (
    binary_problem,
    regression_problem,
    same_weights,
    small_estimator,
)
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor

ESTIMATORS = (BatchMLPClassifier, BatchMLPRegressor)

# A valid value different from the default, for every constructor parameter.
NON_DEFAULT = {
    "hidden_layer_sizes": (7, 3),
    "activation": "tanh",
    "solver": "sgd",
    "alpha": 0.01,
    "batch_size": "full",
    "learning_rate": "adaptive",
    "learning_rate_init": 0.005,
    "learning_rate_scaling": "sqrt",
    "track_noise_scale": True,
    "power_t": 0.25,
    "max_iter": 7,
    "shuffle": False,
    "random_state": 3,
    "tol": 1e-3,
    "verbose": True,
    "warm_start": True,
    "momentum": 0.5,
    "nesterovs_momentum": False,
    "early_stopping": True,
    "validation_fraction": 0.2,
    "beta_1": 0.8,
    "beta_2": 0.99,
    "epsilon": 1e-7,
    "n_iter_no_change": 4,
    "max_fun": 500,
    "gradient_reduction": "sum",
    "drop_last": "merge",
    "average": 5,
    "max_gradient_norm": 2.5,
    "batch_sampling": "poisson",
    "noise_multiplier": 1.5,
    "target_epsilon": 4.0,
    "target_delta": 1e-6,
    "unsafe_noise_seed": 11,
    "class_weight": "balanced",
    "loss": "poisson",
}


def _fit_data(cls):
    if cls is BatchMLPClassifier:
        return binary_problem(n=80)
    X, y = regression_problem(n=80)
    return X, np.abs(y)  # the Poisson loss needs non-negative targets


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_clone_of_fitted_estimator_is_unfitted(cls):
    X, y = _fit_data(cls)
    est = small_estimator(cls, batch_size=16, gradient_reduction="sum", drop_last=True)
    est.fit(X, y)
    twin = clone(est)
    assert type(twin) is cls
    with pytest.raises(NotFittedError):
        twin.predict(X)
    for attr in ("coefs_", "intercepts_", "n_iter_", "loss_curve_", "batch_size_"):
        assert not hasattr(twin, attr)
    assert twin.get_params() == est.get_params()
    # The clone trains to the same weights.
    assert same_weights(twin.fit(X, y), est)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_params_set_params_round_trip_every_parameter(cls, capsys):
    est = cls()
    defaults = est.get_params()
    missing = set(defaults) - set(NON_DEFAULT)
    assert not missing, f"no non-default value to test for {sorted(missing)}"
    for name in defaults:
        value = NON_DEFAULT[name]
        assert value != defaults[name], name
        single = cls().set_params(**{name: value})
        assert single.get_params()[name] is value
        others = {k: v for k, v in single.get_params().items() if k != name}
        assert others == {k: v for k, v in defaults.items() if k != name}
        assert clone(single).get_params()[name] == value
        # Setting the default back restores the original parameters.
        assert single.set_params(**{name: defaults[name]}).get_params() == defaults

    # All at once: accepted by the parameter validation of fit. DP noise
    # refuses early stopping, the adaptive rate and balanced class weights,
    # and target_epsilon an explicit noise multiplier (tests/test_dp_sgd.py);
    # tracking the noise scale refuses clipping (tests/test_noise_tracking.py).
    private = {"noise_multiplier", "target_epsilon", "track_noise_scale"}
    changed = {name: NON_DEFAULT[name] for name in defaults if name not in private}
    changed.update({name: defaults[name] for name in private})
    est = cls(**changed)
    assert est.get_params() == changed
    assert cls(**cls().set_params(**changed).get_params()).get_params() == changed
    X, y = _fit_data(cls)
    est.fit(X, y)
    assert est.get_params() == changed  # fit does not alter the parameters
    assert est.n_iter_ <= 7
    assert est.validation_scores_ is not None
    capsys.readouterr()
