"""Standard normal draws for DP-SGD's noise: a ziggurat over raw 64-bit draws.

DP-SGD draws one normal per parameter per step, and at numpy's speed
(``Generator.standard_normal``, about 9 ns a draw here, much of it a
mispredicted branch on the sign) the noise costs as much as the rest of a
step. This sampler is Marsaglia and Tsang's ziggurat (2000), written so that
its common path has no unpredictable branch, and laid out so that the compiled
loop (``_noise.pxd``) and this numpy specification consume a generator in the
same order and compute the same bits:

1. a block of raw 64-bit draws, one per output, ``bit_generator.random_raw``;
2. each draw's low 8 bits pick a layer ``i``, bit 8 the sign, the top 52 bits
   an integer ``m``; ``x = m * w[i]`` is accepted when ``m < k[i]``
   (probability about 0.99);
3. every other output, in index order, takes the slow path with new draws
   after the block: a wedge test against ``exp(-x^2 / 2)`` for layers ``i >=
   1``, Marsaglia's exponential method for the tail beyond ``r`` from layer 0,
   and on rejection the whole procedure again.

The half-normal under ``exp(-x^2 / 2)`` is cut into 256 pieces of equal area
``v``: layer 0 is the base strip ``[0, r] x [0, f(r)]`` with the tail beyond
``r``; layer ``i`` is the rectangle of width ``x_i`` between heights ``f(x_i)``
and ``f(x_{i+1})``, with ``x_1 = r`` and ``x_256 = 0``. ``r`` is found here by
bisection so that the top layer closes at ``f(0) = 1``.
"""

import math

import numpy as np

__all__ = ["TABLES", "ZigguratTables", "check_bit_generator", "standard_normal"]

LAYERS = 256
_MANTISSA = 2.0**52
_UNIT = 2.0**-53  # a 53-bit uniform double from the top bits of a draw


def _f(x):
    return math.exp(-0.5 * x * x)


def _edges(r):
    """The layers' edges for a tail start ``r``, and how far the top misses 1."""
    v = r * _f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
    x = [v / _f(r), r]  # layer 0's virtual width, so that its area is v too
    for _ in range(LAYERS - 2):
        y = _f(x[-1]) + v / x[-1]
        if y >= 1:
            return x, v, 1.0  # closed too early: r is too small
        x.append(math.sqrt(-2 * math.log(y)))
    return x, v, _f(x[-1]) + v / x[-1] - 1


def _tail_start():
    lo, hi = 3.0, 4.0  # the top overshoots 1 at lo and falls short at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _edges(mid)[2] > 0:
            lo = mid
        else:
            hi = mid
    return hi


class ZigguratTables:
    """The ziggurat's constants, computed once, shared by both tiers.

    Attributes
    ----------
    r : float
        Where the tail starts.
    x : ndarray of float64, shape (257,)
        Layer widths: ``x[0]`` is layer 0's virtual width ``v / f(r)``,
        ``x[1] = r``, ..., ``x[256] = 0``.
    y : ndarray of float64, shape (257,)
        ``f(x)``, with ``y[0] = 0`` (layer 0 starts at the axis).
    w : ndarray of float64, shape (256,)
        ``x[i] / 2^52``: the output of an integer ``m`` in layer ``i``.
    k : ndarray of uint64, shape (256,)
        The fast path's bound: ``m < k[i]`` puts ``m w[i]`` below
        ``x[i + 1]``, under the curve.
    """

    def __init__(self):
        self.r = _tail_start()
        x, _, _ = _edges(self.r)
        self.x = np.array(x + [0.0])
        self.y = np.array([0.0] + [_f(e) for e in x[1:]] + [1.0])
        self.w = self.x[:LAYERS] / _MANTISSA
        self.k = np.array(
            [math.floor(_MANTISSA * self.x[i + 1] / self.x[i]) for i in range(LAYERS)],
            dtype=np.uint64,
        )


TABLES = ZigguratTables()


# Bit generators whose raw draws (``random_raw``, ``next_uint64`` in C) are
# the same 64 bits; MT19937's raw draws have 32.
RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)


def check_bit_generator(bit_generator):
    """Raise a TypeError unless ``bit_generator`` makes 64-bit raw draws."""
    if not isinstance(bit_generator, RAW64):
        names = ", ".join(g.__name__ for g in RAW64)
        raise TypeError(
            f"The noise draws 64-bit words from a {names} bit generator, got "
            f"{type(bit_generator).__name__}: use numpy.random.default_rng()."
        )


def _slow(t, raw, next_raw):
    """One output whose draw ``raw`` missed the fast path; ``next_raw()``
    gives the draws after the block. Mirrors ``_noise.pxd``'s ``_slow``."""
    while True:
        i, m = raw & 0xFF, raw >> 12
        sign = 1.0 - 2.0 * ((raw >> 8) & 1)
        x = m * float(t.w[i])
        if m < int(t.k[i]):
            return x * sign
        if i == 0:
            if x < t.r:
                return x * sign
            while True:  # Marsaglia's tail: exponential proposals beyond r
                a = -math.log(1.0 - (next_raw() >> 11) * _UNIT) / t.r
                b = -math.log(1.0 - (next_raw() >> 11) * _UNIT)
                if b + b > a * a:
                    return (t.r + a) * sign
        lower, upper = float(t.y[i]), float(t.y[i + 1])
        height = lower + (next_raw() >> 11) * _UNIT * (upper - lower)
        if height < math.exp(-0.5 * x * x):
            return x * sign
        raw = next_raw()


def standard_normal(bit_generator, size, tables=TABLES):
    """``size`` standard normal draws from ``bit_generator``, advanced in place.

    The numpy tier's sampler, and the specification of the compiled loop's:
    both return the same bits from the same state and leave it in the same
    state. Not numpy's own sampler: ``Generator.standard_normal`` draws
    other numbers.

    Parameters
    ----------
    bit_generator : numpy.random.BitGenerator
        A PCG64 (numpy's default), PCG64DXSM, SFC64 or Philox.
    size : int
    tables : ZigguratTables, optional

    Returns
    -------
    z : ndarray of float64, shape (size,)
    """
    check_bit_generator(bit_generator)
    raw = bit_generator.random_raw(size)
    layer = (raw & np.uint64(0xFF)).astype(np.intp)
    m = raw >> np.uint64(12)
    sign = 1.0 - 2.0 * ((raw >> np.uint64(8)) & np.uint64(1)).astype(np.float64)
    z = m.astype(np.float64) * tables.w[layer] * sign
    missed = np.flatnonzero(m >= tables.k[layer])
    for j in missed:  # in index order, with the draws after the block
        z[j] = _slow(tables, int(raw[j]), lambda: int(bit_generator.random_raw()))
    return z
