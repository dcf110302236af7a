"""The compiled loop's threads: the same bits on any number of them.

Each batch is cut into row blocks and tiles that depend on the batch and the
network alone (_tiles.pxd), so a fit's every weight must be the same bits
whether one thread or five share the steps. The fits below force small
blocks and tiles, and threads at every step, through the runner's default
thresholds; a spy checks that the threads asked for really ran. The thread
count itself (_threads.py) is tested against its rules: OpenMP's limit in
the calling thread, the physical cores, the fits running at once, the BLAS
vendor and a forked child.
"""

import multiprocessing
import os
import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import bitwise_equal
from threadpoolctl import threadpool_limits

from skbatchnet import BatchMLPClassifier, BatchMLPRegressor, _threads
from skbatchnet._compiled import CompiledEpochs

pytestmark = pytest.mark.skipif(
    not _threads.splits_products(), reason="threads run where scipy's BLAS is OpenBLAS"
)

SMALL_TILES = dict(
    split_rows=np.iinfo(np.intp).max,
    block_rows=8,
    split_work=300,
    gemm_limit=2000,
    update_piece=100,
    thread_work=0,
    choose_threads=False,  # the team at every step, however slow
)


def _openmp():
    from skbatchnet import _extension

    return _extension.epoch_module()[0].with_openmp()


def test_the_build_has_openmp_where_expected():
    # .ci/run also builds without OpenMP and says so (SKBATCHNET_EXPECT_OPENMP=0).
    assert _openmp() == (os.environ.get("SKBATCHNET_EXPECT_OPENMP", "1") == "1")


@pytest.fixture
def threads_everywhere(monkeypatch):
    """Small blocks and tiles, threads at every step, eight 'cores'; returns
    the thread counts the loop was given."""
    monkeypatch.setattr(
        CompiledEpochs, "default_thresholds", staticmethod(lambda: SMALL_TILES)
    )
    monkeypatch.setattr(_threads, "_cores", lambda: 8)
    given = []
    original = CompiledEpochs.run

    def run(self, order, optimizer, averager):
        loop = self.epoch

        class Spy:
            def __getattr__(self, name):
                return getattr(loop, name)

            @staticmethod
            def run_epoch(*args):
                given.append(args[-1])
                return loop.run_epoch(*args)

        self.epoch = Spy()
        try:
            return original(self, order, optimizer, averager)
        finally:
            self.epoch = loop

    monkeypatch.setattr(CompiledEpochs, "run", run)
    return given


def _data(kind, n=150, d=9):
    rng = np.random.RandomState(0)
    X = rng.randn(n, d)
    y = X @ rng.randn(d) + 0.1 * rng.randn(n)
    if kind == "csr":
        X[rng.rand(n, d) < 0.6] = 0
        X = sp.csr_matrix(X)
    if kind == "float32":
        X = X.astype(np.float32)
    return X, y


CASES = {
    "sgd": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    "adam": dict(solver="adam"),
    "average": dict(solver="sgd", average=True, alpha=0.01),
    "csr": dict(solver="sgd", momentum=0.0),
    "clipping": dict(solver="sgd", max_gradient_norm=0.5),
    "csr-clipping": dict(solver="adam", max_gradient_norm=0.5),
    "dp-noise": dict(
        solver="sgd",
        max_gradient_norm=0.5,
        batch_sampling="poisson",
        gradient_reduction="unbiased",
        noise_multiplier=1.0,
        unsafe_noise_seed=7,
    ),
    "float32": dict(solver="adam", alpha=0.1),
    "tracking": dict(solver="sgd", track_noise_scale=True),
    "csr-tracking": dict(solver="adam", track_noise_scale=True),
    "classifier": dict(solver="adam"),
}


def _fit(case, batch_size, n_threads):
    params = dict(
        hidden_layer_sizes=(23, 17),
        batch_size=batch_size,
        max_iter=3,
        random_state=0,
        learning_rate_init=0.01,
        **CASES[case],
    )
    X, y = _data("csr" if case.startswith("csr") else case)
    if case == "classifier":
        est, y = BatchMLPClassifier(**params), np.digitize(y, [-1, 1])
    else:
        est = BatchMLPRegressor(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PrivacyWarning, ConvergenceWarning
        with threadpool_limits(limits=n_threads, user_api="openmp"):
            est.fit(X, y)
    return est


@pytest.mark.parametrize("batch_size", [1, 13, 64, "full"])
@pytest.mark.parametrize("case", list(CASES))
def test_fits_are_the_same_bits_on_any_number_of_threads(
    case, batch_size, threads_everywhere
):
    one = _fit(case, batch_size, 1)
    assert set(threads_everywhere) == {1}
    for n_threads in (2, 3, 5):
        threads_everywhere.clear()
        other = _fit(case, batch_size, n_threads)
        # Without OpenMP in the build, one thread, whatever the limit says.
        assert set(threads_everywhere) == {n_threads if _openmp() else 1}
        weights = one.coefs_ + one.intercepts_
        assert bitwise_equal(weights, other.coefs_ + other.intercepts_)
        assert one.loss_curve_ == other.loss_curve_
        if "tracking" in case:  # NaN at batch 1: compared as bytes
            for name in ("squared_gradient_curve_", "gradient_variance_curve_"):
                ours = np.asarray(getattr(other, name))
                assert np.asarray(getattr(one, name)).tobytes() == ours.tobytes()
    if case == "dp-noise":  # the noise does not depend on the thread count
        assert one.epsilon_ == other.epsilon_
        plain = _fit("clipping", batch_size, 1)
        assert not bitwise_equal(one.coefs_, plain.coefs_)


def test_the_loop_measures_both_modes_and_its_choice_changes_no_bit():
    # The default: per step, the team or one thread, whichever has been
    # faster; both get measured, and the weights are those of one thread.
    from skbatchnet import _extension

    epoch, plan_module = _extension.epoch_module()
    rng = np.random.RandomState(0)
    X, Y = rng.randn(512, 32), rng.randn(512, 4)
    units = [32, 96, 64, 4]
    bounds = [[i, i + 128] for i in range(0, 512, 128)]
    weights = {}
    for n_threads in (1, 2):
        plan = plan_module.EpochPlan(
            units, X, Y, None, bounds, activation=3, loss=0, reduction=0,
            alpha=0.0, total_weight=512.0, chunk_rows=512,
            split_rows=np.iinfo(np.intp).max, thread_work=0,
        )  # fmt: skip
        params = np.random.RandomState(1).randn(sum(
            a * b + b for a, b in zip(units[:-1], units[1:])
        )) * 0.1  # fmt: skip
        state = plan_module.OptimizerState(
            0, params, learning_rate=1e-3, velocity=np.zeros_like(params)
        )
        for _ in range(20):
            epoch.run_epoch(plan, state, None, n_threads=n_threads)
        weights[n_threads] = params.copy()
        choice = plan.thread_choice
        if n_threads == 2 and _openmp():
            assert choice["one_thread"] > 0 and choice["team"] > 0
            assert choice["mode"] in (0, 1)
        else:  # one thread is never timed: nothing to choose
            assert choice["one_thread"] == choice["team"] == 0
    assert weights[1].tobytes() == weights[2].tobytes()


def test_default_tiles_give_the_same_bits_on_one_thread_and_two(monkeypatch):
    # The shipped thresholds, on a batch large enough for threads to share.
    monkeypatch.setattr(_threads, "_cores", lambda: 2)
    rng = np.random.RandomState(1)
    X, y = rng.randn(600, 40), rng.randint(0, 3, 600)
    fits = []
    for limit in (1, 2):
        est = BatchMLPClassifier(
            hidden_layer_sizes=(96, 64), batch_size=300, max_iter=2, random_state=0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with threadpool_limits(limits=limit, user_api="openmp"):
                fits.append(est.fit(X, y))
    a, b = fits
    assert bitwise_equal(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_)


# -- the thread count ------------------------------------------------------------


def _count(max_threads=4, split=True):
    with _threads.loop_threads(lambda: max_threads, split) as n:
        return n


def test_the_count_is_openmps_capped_by_the_physical_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "_cores", lambda: 3)
    assert _count(4) == 3
    assert _count(2) == 2
    # OMP_NUM_THREADS is the user's word, above the cores too, as in
    # scikit-learn.
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert _count(4) == 4


def test_one_thread_without_tiles_openmp_or_after_a_fork(monkeypatch):
    monkeypatch.setattr(_threads, "_cores", lambda: 4)
    assert _count(4, split=False) == 1
    with _threads.loop_threads(None, True) as n:
        assert n == 1
    monkeypatch.setattr(_threads, "_forked", [True])
    assert _count(4) == 1


def test_fits_running_at_once_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "_cores", lambda: 4)
    with _threads.loop_threads(lambda: 4, True) as first:
        assert first == 4
        with _threads.loop_threads(lambda: 4, True) as second:
            assert second == 2
            assert _count(4) == 1
    assert _count(4) == 4 and _threads._running == [0]


def test_threadpool_limits_reaches_the_loops_openmp():
    from skbatchnet import _extension

    epoch, _ = _extension.epoch_module()
    if not epoch.with_openmp():
        assert epoch.openmp_max_threads() == 1
        return
    with threadpool_limits(limits=1):
        assert epoch.openmp_max_threads() == 1
    with threadpool_limits(limits=3, user_api="openmp"):
        assert epoch.openmp_max_threads() == 3


def test_another_blas_gets_whole_products_on_one_thread(monkeypatch):
    _threads.blas_vendor.cache_clear()
    monkeypatch.setattr(_threads, "blas_vendor", lambda: "mkl")
    assert CompiledEpochs.default_thresholds() == {"split_rows": 0}
    assert _count(4, split=_threads.splits_products()) == 1


def test_the_vendor_is_scipys_openblas_here():
    assert _threads.blas_vendor() == "openblas"


# -- fork ----------------------------------------------------------------------------


def _fit_in_child(queue):
    est = _fit("adam", 13, 2)
    queue.put([a.tobytes() for a in est.coefs_])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_of_a_threaded_fit_trains_without_hanging(threads_everywhere):
    # GNU OpenMP's team does not survive fork: a child that started one would
    # wait forever for threads that do not exist. The child trains on one
    # thread instead, to the same bits.
    parent = _fit("adam", 13, 2)
    assert 2 in threads_everywhere or not _openmp()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        child = context.Process(target=_fit_in_child, args=(queue,))
        child.start()
    try:
        weights = queue.get(timeout=120)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert weights == [a.tobytes() for a in parent.coefs_]


def test_fits_in_threads_each_get_their_share(threads_everywhere, monkeypatch):
    # Two fits at once in one process: while both run, each gets one of the
    # two 'cores'; the weights are those of the fits run one at a time.
    monkeypatch.setattr(_threads, "_cores", lambda: 2)
    alone = _fit("sgd", 64, 2)
    results = [None, None]
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait(timeout=60)
        results[i] = _fit("sgd", 64, 2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for est in results:
        assert bitwise_equal(alone.coefs_, est.coefs_)
    assert set(threads_everywhere) <= {1, 2}
