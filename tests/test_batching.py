"""Tests of the minibatcher: batch sizes, last-batch policies, shuffling, and
parity with scikit-learn's MLP batch order."""

import numpy as np
import pytest
from sklearn.utils import gen_batches
from sklearn.utils import shuffle as sk_shuffle

from skbatchnet.batching import Minibatcher, resolve_batch_size

POLICIES = [False, True, "merge"]


def rows(batch, n):
    """The row indices a batch (slice or index array) selects."""
    return np.arange(n)[batch]


def epochs(mb, n, k):
    gen = mb.iter_epochs(n)
    return [[rows(b, n) for b in next(gen)] for _ in range(k)]


def sklearn_epochs(n, batch_size, rng, k):
    """scikit-learn's MLP order: cumulative shuffle, then gen_batches."""
    sample_idx = np.arange(n, dtype=int)
    out = []
    for _ in range(k):
        sample_idx = sk_shuffle(sample_idx, random_state=rng)
        out.append([sample_idx[s] for s in gen_batches(n, batch_size)])
    return out


# --------------------------------------------------------------------------
# resolve_batch_size
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "batch_size, n, expected",
    [
        (1, 50, 1),
        (32, 50, 32),
        (50, 50, 50),
        (np.int64(7), 50, 7),
        ("auto", 50, 50),
        ("auto", 200, 200),
        ("auto", 1000, 200),
        ("full", 1000, 1000),
        ("full", 3, 3),
        (64, 10, 10),
    ],
)
def test_resolve_batch_size(batch_size, n, expected):
    result = resolve_batch_size(batch_size, n)
    assert result == expected
    assert isinstance(result, int)


@pytest.mark.parametrize("bad", [0, -1, 2.5, 1.0, "big", "Auto", True, False, None])
def test_resolve_batch_size_rejects(bad):
    with pytest.raises(ValueError):
        resolve_batch_size(bad, 10)


@pytest.mark.parametrize("bad", [0, 2.5, "Auto", None])
def test_resolve_batch_size_error_names_the_choices(bad):
    with pytest.raises(ValueError) as info:
        resolve_batch_size(bad, 10)
    assert str(info.value) == (
        f"batch_size must be a positive integer, 'auto' or 'full', got {bad!r}."
    )


def test_invalid_minibatcher_messages():
    # The whole messages, word for word: each names the value and the fix.
    with pytest.raises(ValueError) as info:
        Minibatcher(4, drop_last="keep").bounds(10)
    assert str(info.value) == "drop_last must be False, True or 'merge', got 'keep'."
    with pytest.raises(ValueError) as info:
        Minibatcher(4).bounds(0)
    assert str(info.value) == (
        "n_samples must be a positive integer, got 0: an epoch needs at least one row."
    )


def test_default_batch_size_is_auto():
    assert Minibatcher().batch_size == "auto"
    assert Minibatcher().bounds(450) == Minibatcher("auto").bounds(450)
    assert Minibatcher().bounds(450) == [(0, 200), (200, 400), (400, 450)]


@pytest.mark.parametrize("merge", ["".join(["mer", "ge"]), np.str_("merge")])
def test_merge_is_recognised_by_value_not_identity(merge):
    # A string equal to 'merge' built at run time (or a numpy string, as read
    # from a configuration) is not the literal's object; it is the same policy.
    assert merge == "merge"
    assert Minibatcher(4, drop_last=merge).bounds(10) == [(0, 4), (4, 10)]


def test_invalid_minibatcher_options():
    for kwargs in ({"drop_last": "keep"}, {"drop_last": None}, {"drop_last": 2}):
        with pytest.raises(ValueError):
            Minibatcher(4, **kwargs).bounds(10)
    with pytest.raises(TypeError):  # batching yields rows; reduction is not its own
        Minibatcher(4, gradient_reduction="mean")
    with pytest.raises(ValueError):
        next(Minibatcher(0).iter_epochs(10))
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            Minibatcher(4).bounds(n)


@pytest.mark.parametrize("drop_last", [False, True, "merge"])
@pytest.mark.parametrize("batch_size, n", [(1, 5), (4, 10), (4, 12), (32, 10)])
def test_n_steps_counts_the_batches_of_an_epoch(batch_size, n, drop_last):
    batcher = Minibatcher(batch_size, shuffle=False, drop_last=drop_last)
    assert batcher.n_steps(n) == len(next(batcher.iter_epochs(n)))


# --------------------------------------------------------------------------
# bounds and last-batch policies
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "drop_last, expected",
    [
        (False, [(0, 4), (4, 8), (8, 10)]),
        (True, [(0, 4), (4, 8)]),
        ("merge", [(0, 4), (4, 10)]),
    ],
)
def test_bounds_last_batch_policies(drop_last, expected):
    mb = Minibatcher(4, drop_last=drop_last, shuffle=False)
    assert mb.bounds(10) == expected
    # A batch size that divides n leaves no short batch: every policy agrees.
    assert mb.bounds(12) == [(0, 4), (4, 8), (8, 12)]
    epoch = epochs(mb, 10, 1)[0]
    assert [list(b) for b in epoch] == [list(range(a, b)) for a, b in expected]


@pytest.mark.parametrize("drop_last", POLICIES)
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size, n", [(8, 5), ("full", 5), ("auto", 150)])
def test_small_data_set_is_one_batch(drop_last, shuffle, batch_size, n):
    mb = Minibatcher(batch_size, drop_last=drop_last, shuffle=shuffle, random_state=0)
    assert mb.bounds(n) == [(0, n)]
    for epoch in epochs(mb, n, 3):
        assert len(epoch) == 1
        np.testing.assert_array_equal(np.sort(epoch[0]), np.arange(n))


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 7, 10])
@pytest.mark.parametrize("n", [10, 11, 23, 24])
def test_bounds_properties(batch_size, n):
    for drop_last in POLICIES:
        bounds = Minibatcher(batch_size, drop_last=drop_last).bounds(n)
        starts, stops = zip(*bounds)
        assert starts[0] == 0
        assert list(starts[1:]) == list(stops[:-1])  # contiguous, in order
        sizes = [stop - start for start, stop in bounds]
        if drop_last is False:
            assert stops[-1] == n and all(s == batch_size for s in sizes[:-1])
            assert 1 <= sizes[-1] <= batch_size
        elif drop_last is True:
            assert all(s == batch_size for s in sizes)
            assert stops[-1] == n - n % batch_size
        else:
            assert stops[-1] == n
            assert all(batch_size <= s <= 2 * batch_size - 1 for s in sizes)


@pytest.mark.parametrize("drop_last", [False, "merge"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_every_example_once_per_epoch(drop_last, shuffle, batch_size):
    n = 23
    mb = Minibatcher(batch_size, drop_last=drop_last, shuffle=shuffle, random_state=3)
    expected_sizes = [stop - start for start, stop in mb.bounds(n)]
    for epoch in epochs(mb, n, 4):
        assert [len(b) for b in epoch] == expected_sizes
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(n))


def test_drop_last_true_drops_the_short_batch_every_epoch():
    n, batch_size = 23, 5
    mb = Minibatcher(batch_size, drop_last=True, random_state=1)
    seen = set()
    for epoch in epochs(mb, n, 6):
        assert [len(b) for b in epoch] == [batch_size] * 4
        flat = np.concatenate(epoch)
        assert len(np.unique(flat)) == 20  # no repeats within an epoch
        seen.update(flat.tolist())
    # The dropped examples differ between epochs, so all are eventually seen.
    assert seen == set(range(n))


def test_no_shuffle_keeps_stored_order():
    mb = Minibatcher(4, shuffle=False, random_state=0)
    for epoch in epochs(mb, 10, 3):
        np.testing.assert_array_equal(np.concatenate(epoch), np.arange(10))


# --------------------------------------------------------------------------
# Shuffling and random state
# --------------------------------------------------------------------------
def test_shuffle_draws_a_new_order_every_epoch():
    n = 40
    orders = [np.concatenate(e) for e in epochs(Minibatcher(6, random_state=0), n, 5)]
    for a in orders:
        assert not np.array_equal(a, np.arange(n))
    for i in range(len(orders)):
        for j in range(i + 1, len(orders)):
            assert not np.array_equal(orders[i], orders[j])


def test_same_seed_same_sequence_different_seed_differs():
    def run(seed):
        return [
            np.concatenate(e) for e in epochs(Minibatcher(6, random_state=seed), 40, 4)
        ]

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_random_state_instance_is_advanced():
    n = 30
    rng = np.random.RandomState(5)
    mb = Minibatcher(7, random_state=rng)
    gen = mb.iter_epochs(n)
    first = np.concatenate(next(gen))
    assert rng.randint(2**31) != np.random.RandomState(5).randint(2**31)
    # The stream continues from where the caller left it: a second generator
    # on the same instance does not repeat the first epoch.
    second = np.concatenate(next(mb.iter_epochs(n)))
    assert not np.array_equal(first, second)


# --------------------------------------------------------------------------
# Parity with scikit-learn's MLP
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 42])
@pytest.mark.parametrize("batch_size, n", [(5, 23), (7, 50), ("auto", 450), (1, 6)])
def test_batch_order_matches_sklearn(seed, batch_size, n):
    k = 5
    size = min(200, n) if batch_size == "auto" else batch_size
    expected = sklearn_epochs(n, size, np.random.RandomState(seed), k)
    ours = epochs(Minibatcher(batch_size, random_state=seed), n, k)
    for got_epoch, want_epoch in zip(ours, expected):
        assert len(got_epoch) == len(want_epoch)
        for got, want in zip(got_epoch, want_epoch):
            np.testing.assert_array_equal(got, want)


def test_rng_stream_matches_sklearn_with_instance():
    n, k = 23, 4
    ours_rng, sk_rng = np.random.RandomState(11), np.random.RandomState(11)
    ours = epochs(Minibatcher(5, random_state=ours_rng), n, k)
    expected = sklearn_epochs(n, 5, sk_rng, k)
    for got_epoch, want_epoch in zip(ours, expected):
        for got, want in zip(got_epoch, want_epoch):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        ours_rng.randint(2**31, size=8), sk_rng.randint(2**31, size=8)
    )


@pytest.mark.parametrize("batch_size", ["full", 64, 10])
def test_single_batch_is_a_slice_but_advances_rng(batch_size):
    n, k = 10, 3
    ours_rng, sk_rng = np.random.RandomState(2), np.random.RandomState(2)
    gen = Minibatcher(batch_size, random_state=ours_rng).iter_epochs(n)
    for _ in range(k):
        (batch,) = next(gen)
        assert isinstance(batch, slice)
        np.testing.assert_array_equal(rows(batch, n), np.arange(n))
    sklearn_epochs(n, n, sk_rng, k)
    np.testing.assert_array_equal(
        ours_rng.randint(2**31, size=8), sk_rng.randint(2**31, size=8)
    )
