"""What the DP-SGD benchmarks share: the same network in torch, and Opacus.

``bench_dp.py`` (speed) and ``dp_accuracy.py`` (accuracy) train one network
in both libraries from the same initial weights. skbatchnet draws them with
:meth:`skbatchnet.backprop.Network.initialize` from
``np.random.RandomState(random_state)``, as ``fit`` does;
:func:`torch_mlp` copies them into ``nn.Linear`` layers (whose ``weight`` is
``(fan_out, fan_in)``, the transpose of ``coefs_[l]``).

torch and Opacus are benchmark-only dependencies:
``pip install -e ".[bench]"`` (torch's CPU wheel is smaller:
``pip install torch --index-url https://download.pytorch.org/whl/cpu``
first).
"""

import logging
import math
import os
import warnings

import numpy as np

from skbatchnet import BatchMLPClassifier
from skbatchnet.backprop import Network

try:
    import opacus
    import torch
    from opacus import PrivacyEngine
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "This benchmark compares skbatchnet with Opacus, which needs torch and "
        'opacus: pip install -e ".[bench]" (for torch\'s smaller CPU wheel, run '
        "pip install torch --index-url https://download.pytorch.org/whl/cpu "
        f"first). Import failed: {exc}"
    ) from exc

# The estimator parameters DP-SGD adds; the skbatchnet side of the benchmarks
# needs all of them.
DP_PARAMETERS = (
    "max_gradient_norm",
    "noise_multiplier",
    "batch_sampling",
    "target_delta",
    "unsafe_noise_seed",
)


def missing_dp_parameters():
    """The DP-SGD parameters this skbatchnet's ``BatchMLPClassifier`` lacks."""
    params = BatchMLPClassifier().get_params()
    return [name for name in DP_PARAMETERS if name not in params]


def require_skbatchnet_dp(script):
    """Exit with a clear message when skbatchnet has no DP-SGD yet."""
    missing = missing_dp_parameters()
    if missing:
        import skbatchnet

        raise SystemExit(
            f"{script}: the skbatchnet imported from "
            f"{os.path.dirname(skbatchnet.__file__)} has no DP-SGD yet: "
            f"BatchMLPClassifier lacks {', '.join(missing)}. Build a revision "
            "that has it (python setup.py build_ext --inplace), or rerun with "
            "--without-skbatchnet-dp to measure the Opacus side alone."
        )


def quiet():
    """Silence what both libraries say on every fit.

    Opacus warns about its non-secure random generator and logs about
    empty batches; skbatchnet warns about classes inferred from the data
    under noise, and about fits stopped at ``max_iter``; dp-accounting logs
    (through absl) each RDP order it drops while calibrating. The benchmarks
    state what matters once in their output instead.
    """
    warnings.simplefilter("ignore")
    for name in ("opacus", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def environment_line():
    """torch's and Opacus's versions and thread counts."""
    return (
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"{torch.__config__.parallel_info().splitlines()[-1].strip()}), "
        f"opacus {opacus.__version__}"
    )


def load_average():
    """The 1, 5 and 15 minute load averages, as a string."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux or macOS
        return "unknown"


def initial_weights(layer_units, seed, dtype):
    """The weights and biases ``fit(random_state=seed)`` starts from.

    ``BatchMLPClassifier`` draws them from ``RandomState(seed)`` before
    anything else (checked by :func:`check_initial_weights`), for the
    multiclass softmax output ("log_loss").
    """
    net = Network.initialize(
        layer_units,
        activation="relu",
        loss="log_loss",
        random_state=np.random.RandomState(seed),
        dtype=dtype,
    )
    return net.coefs, net.intercepts


def check_initial_weights(X, y, hidden, seed, **dp_params):
    """Fail unless a fit that barely moves keeps :func:`initial_weights`.

    Fits ``max_iter=1`` with a learning rate of ``1e-30`` (plus
    ``dp_params``, for the DP path): its weights must equal the drawn ones
    to float32 rounding, else the torch model would start elsewhere.
    """
    units = [X.shape[1], *hidden, len(np.unique(y))]
    coefs, intercepts = initial_weights(units, seed, X.dtype)
    model = BatchMLPClassifier(
        hidden_layer_sizes=hidden,
        solver="sgd",
        momentum=0.0,
        alpha=0.0,
        learning_rate_init=1e-30,
        max_iter=1,
        random_state=seed,
        **dp_params,
    ).fit(X, y)
    for drawn, fitted in zip(coefs + intercepts, model.coefs_ + model.intercepts_):
        if not np.allclose(drawn, fitted, rtol=0, atol=1e-6):
            raise RuntimeError(
                "Network.initialize(RandomState(seed)) no longer reproduces the "
                "weights fit starts from; the torch model would start elsewhere."
            )


def check_same_step(X, y, hidden, *, max_grad_norm, learning_rate, mode):
    """Fail unless one clipped step is the same in both libraries.

    One full-batch step without noise: skbatchnet with ``batch_size=n``,
    ``max_gradient_norm`` and ``gradient_reduction='unbiased'`` (the clipped
    sum over n), against Opacus with Poisson sampling at ``q = 1`` (every
    row) and ``noise_multiplier=0`` (the clipped sum over its expected batch
    size, n). The weights after the step must agree to float32 rounding
    (``1e-6`` plus a thousandth of the step's largest change): this is the
    DP step of both benchmarks, noise aside. Returns the largest difference
    and the step's largest change.
    """
    n = len(y)
    units = [X.shape[1], *hidden, len(np.unique(y))]
    weights = initial_weights(units, 0, X.dtype)
    model = BatchMLPClassifier(
        hidden_layer_sizes=hidden,
        solver="sgd",
        momentum=0.0,
        alpha=0.0,
        learning_rate_init=learning_rate,
        batch_size=n,
        max_iter=1,
        max_gradient_norm=max_grad_norm,
        gradient_reduction="unbiased",
        shuffle=False,
        random_state=0,
    ).fit(X, y)
    run = OpacusRun(
        *weights,
        X,
        y,
        batch_size=n,
        learning_rate=learning_rate,
        noise_multiplier=0.0,
        max_grad_norm=max_grad_norm,
        mode=mode,
    ).train(1)
    linears = [m for m in run.model.modules() if isinstance(m, nn.Linear)]
    difference = max(
        max(
            np.abs(linear.weight.detach().numpy().T - W).max(),
            np.abs(linear.bias.detach().numpy() - b).max(),
        )
        for linear, W, b in zip(linears, model.coefs_, model.intercepts_)
    )
    step = max(np.abs(W - W0).max() for W, W0 in zip(model.coefs_, weights[0]))
    if not difference <= 1e-6 + 1e-3 * step:
        raise RuntimeError(
            f"One clipped step differs between skbatchnet and Opacus ({mode}) by "
            f"{difference:.3g}, for a step of {step:.3g}: they do not compute the "
            "same DP-SGD step."
        )
    return difference, step


def torch_mlp(coefs, intercepts):
    """A ReLU MLP in torch with the given weights, ``nn.Linear`` per layer.

    The output layer has no activation: ``nn.CrossEntropyLoss`` applies the
    softmax, as skbatchnet's "log_loss" does.
    """
    layers = []
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        linear = nn.Linear(W.shape[0], W.shape[1], dtype=torch.from_numpy(W).dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(coefs) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BatchedTensors(torch.utils.data.Dataset):
    """Rows of ``X`` and ``y`` that a DataLoader fetches a batch at a time.

    torch's DataLoader calls ``__getitems__`` with a batch's indices when a
    dataset has it, so a batch is two tensor gathers instead of one
    ``__getitem__`` per row and a ``default_collate`` stacking them (what a
    ``TensorDataset`` costs). The batch comes back as ``(X_batch, y_batch)``,
    which :func:`passthrough` hands on unchanged; an empty index list gives
    tensors with zero rows, which every layer and Opacus accept.
    """

    def __init__(self, X, y):
        self.X = torch.from_numpy(np.ascontiguousarray(X))
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        return self.X[index], self.y[index]

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.X[index], self.y[index]


def passthrough(batch):
    """The collate function of :class:`BatchedTensors`: the batch as it is."""
    return batch


def data_loader(X, y, batch_size, *, loader="batched", shuffle=False, seed=None):
    """A plain DataLoader over ``X, y``; Opacus replaces its sampler.

    ``loader='batched'`` fetches each batch at once (:class:`BatchedTensors`);
    ``'tensordataset'`` is the usual ``TensorDataset``, row by row.
    """
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    if loader == "batched":
        dataset, collate = BatchedTensors(X, y), passthrough
    else:
        dataset = torch.utils.data.TensorDataset(
            torch.from_numpy(np.ascontiguousarray(X)),
            torch.from_numpy(np.asarray(y, dtype=np.int64)),
        )
        collate = None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        generator=generator,
    )


class OpacusRun:
    """A model, optimizer, loss and Poisson data loader made private by Opacus.

    ``make_private`` with ``poisson_sampling=True`` and ``loss_reduction=
    'mean'``: every step draws each row with probability
    ``q = 1 / len(loader) = 1 / ceil(n / batch_size)``, clips each
    example's gradient (all parameters flattened) to ``max_grad_norm``, sums,
    adds ``N(0, (noise_multiplier * max_grad_norm)^2)`` per coordinate and
    divides by ``expected_batch_size = int(n * q)``; then plain SGD. An epoch
    is ``len(loader)`` steps. With ``batch_size`` dividing ``n``, ``q`` and
    the divisor are ``batch_size / n`` and ``batch_size``: skbatchnet's step
    under ``gradient_reduction='unbiased'`` and ``batch_sampling='poisson'``.

    ``mode`` is Opacus's ``grad_sample_mode``: ``'hooks'`` (the default,
    per-example gradients materialized) or ``'ghost'`` (ghost clipping: the
    norms from activations and output gradients, then a second backward pass
    of the clipped loss). The accountant is Opacus's RDP one, the analysis
    skbatchnet's ``epsilon_`` uses.
    """

    def __init__(
        self,
        coefs,
        intercepts,
        X,
        y,
        *,
        batch_size,
        learning_rate,
        noise_multiplier,
        max_grad_norm,
        mode="hooks",
        loader="batched",
        seed=None,
    ):
        model = torch_mlp(coefs, intercepts)
        optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0)
        self.engine = PrivacyEngine(accountant="rdp")
        made = self.engine.make_private(
            module=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(reduction="mean"),
            data_loader=data_loader(X, y, batch_size, loader=loader, seed=seed),
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            loss_reduction="mean",
            grad_sample_mode=mode,
        )
        if mode == "ghost":
            self.model, self.optimizer, self.criterion, self.loader = made
        else:
            self.model, self.optimizer, self.loader = made
            self.criterion = nn.CrossEntropyLoss(reduction="mean")
        self.n_samples = len(y)
        self.sample_rate = 1 / len(self.loader)
        self.expected_batch_size = self.optimizer.expected_batch_size

    def matches(self, batch_size):
        """Whether Opacus's q and divisor are ``batch_size / n`` and ``batch_size``."""
        return self.expected_batch_size == batch_size and math.isclose(
            self.sample_rate, batch_size / self.n_samples, rel_tol=1e-12
        )

    def train(self, epochs):
        """Run ``epochs`` epochs of DP-SGD."""
        self.model.train()
        for _ in range(epochs):
            for xb, yb in self.loader:
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.criterion(self.model(xb), yb)
                loss.backward()
                self.optimizer.step()
        return self

    def epsilon(self, delta):
        """Opacus's RDP epsilon for the steps taken so far."""
        return float(self.engine.get_epsilon(delta))

    def accuracy(self, X, y):
        """Test accuracy of the trained model."""
        self.model.eval()
        with torch.no_grad():
            predicted = self.model(torch.from_numpy(X)).argmax(dim=1).numpy()
        return float(np.mean(predicted == y))


class TorchRun:
    """The same network trained by plain torch SGD, without privacy.

    Shuffled batches of ``batch_size`` rows, mean loss: the reference for
    what Opacus adds to a torch step (not part of the comparison with
    skbatchnet's DP step).
    """

    def __init__(
        self, coefs, intercepts, X, y, *, batch_size, learning_rate, loader="batched"
    ):
        self.model = torch_mlp(coefs, intercepts)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=learning_rate, momentum=0
        )
        self.criterion = nn.CrossEntropyLoss(reduction="mean")
        self.loader = data_loader(X, y, batch_size, loader=loader, shuffle=True)

    def train(self, epochs):
        self.model.train()
        for _ in range(epochs):
            for xb, yb in self.loader:
                self.optimizer.zero_grad(set_to_none=True)
                self.criterion(self.model(xb), yb).backward()
                self.optimizer.step()
        return self

    def accuracy(self, X, y):
        self.model.eval()
        with torch.no_grad():
            predicted = self.model(torch.from_numpy(X)).argmax(dim=1).numpy()
        return float(np.mean(predicted == y))
