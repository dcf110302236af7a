"""Input checks shared by the estimators; each error names the fix."""

from itertools import pairwise
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import _check_sample_weight

from ._warn import warn


def check_hidden_layer_sizes(hidden_layer_sizes):
    """Return the hidden layer sizes as a list of positive ints."""
    sizes = hidden_layer_sizes
    if isinstance(sizes, Integral) and not isinstance(sizes, bool):
        sizes = [sizes]
    try:
        sizes = list(sizes)
    except TypeError:
        sizes = None
    if sizes is None or not all(
        isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise ValueError(
            "hidden_layer_sizes must be a positive int or a sequence of positive "
            f"ints such as (100,) or (64, 32), got {hidden_layer_sizes!r}."
        )
    return [int(s) for s in sizes]


def check_network_size(layer_units, dtype, hidden_layer_sizes):
    """Refuse a network whose parameters no array could hold.

    ``hidden_layer_sizes`` accepts any positive int, so the parameter count
    (exact, in Python ints) is checked against the largest array numpy can
    index, before a size reaches numpy or the compiled loop's ``Py_ssize_t``
    as an overflowed product. Below that limit an allocation that does not
    fit in memory raises numpy's MemoryError.
    """
    n_parameters = sum(
        fan_out * (fan_in + 1) for fan_in, fan_out in pairwise(layer_units)
    )
    limit = np.iinfo(np.intp).max // np.dtype(dtype).itemsize
    if n_parameters > limit:
        raise ValueError(
            f"hidden_layer_sizes={hidden_layer_sizes!r} makes a network of "
            f"{n_parameters} parameters on {layer_units[0]} features and "
            f"{layer_units[-1]} outputs, more than an array can hold ({limit} "
            f"{np.dtype(dtype).name} values). Choose smaller hidden layers."
        )


def check_sample_weight(sample_weight, X):
    """Validate sample weights: right length, finite, non-negative, not all 0.

    Returns None for None, so unweighted data keeps the cheaper unweighted path.
    """
    if sample_weight is None:
        return None
    sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError(
            "sample_weight contains NaN or infinity; give every example a finite, "
            "non-negative weight."
        )
    if np.any(sample_weight < 0):
        bad = np.flatnonzero(sample_weight < 0)
        raise ValueError(
            f"sample_weight must be non-negative, got {sample_weight[bad[0]]!r} at "
            f"index {bad[0]} ({bad.size} negative in all). Drop those examples or "
            "give them weight 0."
        )
    # Totals are summed in float64 wherever training takes them: float32
    # weights may sum past float32's range (3.4e38).
    total = np.sum(sample_weight, dtype=np.float64)
    if not total > 0:
        raise ValueError(
            "sample_weight sums to 0, so the objective is undefined; at least one "
            "example needs a positive weight."
        )
    return sample_weight


def merge_class_weight(sample_weight, class_weight, X):
    """The weights of the objective: sample weights times class weights.

    Either may be None; the product is validated like ``sample_weight``.
    """
    if class_weight is None:
        return sample_weight
    class_weight = class_weight.astype(X.dtype, copy=False)
    if sample_weight is not None:
        class_weight *= sample_weight
    return check_sample_weight(class_weight, X)


def check_class_weight(class_weight, n_outputs):
    """Check ``class_weight`` against ``y``: a dict per output, finite weights.

    ``n_outputs`` is the number of columns of a multilabel ``y`` and 0 (or
    False) for a single-output ``y``.
    """
    if isinstance(class_weight, str):
        return
    if n_outputs:
        if not isinstance(class_weight, list) or len(class_weight) != n_outputs:
            raise ValueError(
                f"class_weight for a multilabel y with {n_outputs} outputs must be "
                f"'balanced' or a list of {n_outputs} dicts, one per output (such "
                f"as [{{0: 1, 1: 2}}] * {n_outputs}), got {class_weight!r}."
            )
        dicts = class_weight
    elif isinstance(class_weight, list):
        raise ValueError(
            "class_weight is a list, which is for a multilabel y (one dict per "
            "output); for this single-output y pass one dict {label: weight} or "
            "'balanced'."
        )
    else:
        dicts = [class_weight]
    for weights in dicts:
        if not isinstance(weights, dict):
            raise ValueError(
                f"class_weight must hold dicts {{label: weight}}, got {weights!r}."
            )
        for label, weight in weights.items():
            if not (isinstance(weight, Real) and np.isfinite(weight) and weight >= 0):
                raise ValueError(
                    f"class_weight gives class {label!r} the weight {weight!r}; "
                    "class weights must be finite, non-negative numbers."
                )


def stratification(labels, fraction):
    """``labels`` if the split can be stratified by them, else None (warned).

    Stratification needs two examples per class and room for every class on
    both sides. scikit-learn stratifies binary targets and refuses those it
    cannot stratify, with ``train_test_split``'s message, which ours starts
    with; it does not stratify multiclass targets, which here fall back to a
    random split.
    """
    classes, counts = np.unique(labels, return_counts=True)
    n_val = int(np.ceil(fraction * labels.shape[0]))
    room = min(n_val, labels.shape[0] - n_val)
    if counts.min() >= 2 and room >= counts.size or room < 1:
        # An empty side train_test_split refuses itself, as in scikit-learn.
        return labels
    rare = int(np.argmin(counts))
    problem = (
        f"class {classes.tolist()[rare]!r} has {counts.min()} member(s), and "
        "stratification needs 2"
        if counts.min() < 2
        else f"{room} rows on the smaller side cannot hold all {counts.size} classes"
    )
    if counts.size <= 2:
        # scikit-learn stratifies by the label indicator column as booleans,
        # so its message calls the classes 'False' and 'True'.
        names = [str(bool(i)) for i in range(counts.size)]
        if counts.min() < 2:
            problem = problem.replace(" has", f" ({names[rare]!r} above) has", 1)
        raise ValueError(
            f"{_sklearn_split_refusal(names, counts, labels.shape[0], n_val)}. "
            "With early_stopping=True the validation split of a binary target is "
            f"stratified, but {problem}. Add examples of the rare class, change "
            "validation_fraction, or set early_stopping=False."
        )
    warn(
        f"The early-stopping validation split cannot be stratified: {problem}. "
        "It is drawn at random instead, as scikit-learn draws it for multiclass "
        "targets.",
        UserWarning,
    )
    return None


def _sklearn_split_refusal(names, counts, n_rows, n_val):
    """scikit-learn's words for a stratified split it refuses, in its order."""
    if counts.min() < 2:
        few = [name for name, count in zip(names, counts) if count < 2]
        return (
            "The least populated classes in y have only 1 member, which is too "
            "few. The minimum number of groups for any class cannot be less than "
            f"2. Classes with too few members are: {few}"
        )
    side, size = (
        ("train", n_rows - n_val) if n_rows - n_val < len(names) else ("test", n_val)
    )
    return (
        f"The {side}_size = {size} should be greater or equal to the number of "
        f"classes = {len(names)}"
    )


# -- the structure of sparse input ----------------------------------------------
#
# scipy trusts a sparse matrix's index arrays: its conversions (COO, BSR, LIL
# and CSC to CSR), its row slicing and its products read and write where they
# point, and so does the compiled loop, which runs with bounds checks off.
# Malformed arrays crash the process or silently train on other entries, so
# they are checked first, on the caller's arrays as they are (no copy, no
# conversion). Duplicate and unsorted indices are valid: an entry stands for
# the sum of its duplicates, in whatever order they come.

_AXES = {"csr": ("row", "column"), "csc": ("column", "row")}
_FIX = (
    "Build the matrix from its (row, column, value) triplets with "
    "scipy.sparse.coo_matrix((data, (row, col)), shape=shape), which checks "
    "them, rather than by editing its arrays."
)


def _index_array(X, attribute, name):
    """``X.<attribute>`` if it is a 1-D integer numpy array, else a ValueError."""
    array = getattr(X, attribute, None)
    if not (
        isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype.kind in "iu"
    ):
        described = getattr(array, "dtype", type(array).__name__)
        raise ValueError(
            f"{name}.{attribute} must be a 1-D numpy array of integers, got "
            f"{described} of shape {np.shape(array)}. {_FIX}"
        )
    return array


def _first_outside(indices, size):
    """Position of the first entry of ``indices`` outside ``[0, size)``, or -1.

    min and max read the array without allocating; the position is only
    searched for when one of them is out of range.
    """
    if indices.size == 0 or (indices.min() >= 0 and indices.max() < size):
        return -1
    return int(np.flatnonzero((indices < 0) | (indices >= size))[0])


def _check_compressed(X, name):
    """CSR, CSC and BSR: the index pointer, then the indices it uses."""
    fmt, fmt_name = X.format, X.format.upper()
    indptr = _index_array(X, "indptr", name)
    indices = _index_array(X, "indices", name)
    # One value (a block for BSR, whose block shape data's shape defines)
    # per stored index.
    stored = np.shape(getattr(X, "data", None))
    if len(stored) != (3 if fmt == "bsr" else 1) or stored[0] != indices.size:
        kind = "3-D with one block" if fmt == "bsr" else "1-D with one value"
        raise ValueError(
            f"{name}.data of a {fmt_name} matrix must be {kind} per entry of "
            f"{name}.indices; got shape {stored} for {name}.data and "
            f"{indices.shape} for {name}.indices. {_FIX}"
        )
    if fmt == "bsr":
        n_major, n_minor = X.shape[0] // stored[1], X.shape[1] // stored[2]
        major, minor = "block row", "block column"
    else:
        n_major, n_minor = X.shape if fmt == "csr" else X.shape[::-1]
        major, minor = _AXES[fmt]
    if indptr.size != n_major + 1:
        raise ValueError(
            f"{name} is a {fmt_name} matrix of shape {X.shape}, so {name}.indptr "
            f"needs {n_major + 1} entries (one per {major}, plus one), got "
            f"{indptr.size}. {_FIX}"
        )
    if indptr[0] != 0:
        raise ValueError(
            f"{name}.indptr[0] must be 0 (where the first {major} starts), got "
            f"{indptr[0]}. {_FIX}"
        )
    if indptr.max() > indices.size:
        i = int(np.argmax(indptr > indices.size))
        raise ValueError(
            f"{name}.indptr[{i}] = {indptr[i]} points beyond the {indices.size} "
            f"stored entries of {name}.indices and {name}.data. {_FIX}"
        )
    falls = np.flatnonzero(indptr[1:] < indptr[:-1])
    if falls.size:
        i = int(falls[0])
        raise ValueError(
            f"{name}.indptr must not decrease (each {major} starts where the one "
            f"before it ends), but {name}.indptr[{i + 1}] = {indptr[i + 1]} is "
            f"less than {name}.indptr[{i}] = {indptr[i]}. {_FIX}"
        )
    nnz = int(indptr[-1])
    # Entries after indptr[-1] are spare storage that scipy never reads.
    p = _first_outside(indices[:nnz], n_minor)
    if p >= 0:
        at = int(np.searchsorted(indptr, p, side="right")) - 1
        raise ValueError(
            f"{name}.indices[{p}] = {indices[p]} (in {major} {at}) is not a "
            f"{minor} of {name}: {minor} indices of a {fmt_name} matrix of shape "
            f"{X.shape} must lie in [0, {n_minor}). {_FIX}"
        )


def _check_coordinates(X, name):
    """COO: every coordinate within the shape, one per stored value."""
    coords = [_index_array(X, axis, name) for axis in ("row", "col")]
    n_stored = np.shape(getattr(X, "data", None))
    if len(n_stored) != 1 or any(c.size != n_stored[0] for c in coords):
        raise ValueError(
            f"{name}.row, {name}.col and {name}.data must be 1-D with one entry "
            f"each per stored value, got sizes {coords[0].size}, {coords[1].size} "
            f"and shape {n_stored}. {_FIX}"
        )
    for attribute, axis, c, size in zip(("row", "col"), _AXES["csr"], coords, X.shape):
        p = _first_outside(c, size)
        if p >= 0:
            raise ValueError(
                f"{name}.{attribute}[{p}] = {c[p]} is outside a matrix of shape "
                f"{X.shape}: {axis} indices must lie in [0, {size}). {_FIX}"
            )


def _check_row_lists(X, name):
    """LIL: one list of columns per row, as long as its list of values."""
    rows, values = X.rows, X.data
    if len(rows) != X.shape[0] or len(values) != X.shape[0]:
        raise ValueError(
            f"{name}.rows and {name}.data must hold one list per row of {name} "
            f"({X.shape[0]}), got {len(rows)} and {len(values)}. {_FIX}"
        )
    for i, (columns, row_values) in enumerate(zip(rows, values)):
        if len(columns) != len(row_values):
            raise ValueError(
                f"Row {i} of {name} lists {len(columns)} columns but "
                f"{len(row_values)} values; they must pair up. {_FIX}"
            )
        bad = [c for c in columns if not 0 <= c < X.shape[1]]
        if bad:
            raise ValueError(
                f"Row {i} of {name} holds column {bad[0]}, outside [0, "
                f"{X.shape[1]}). {_FIX}"
            )


def _check_diagonals(X, name):
    """DIA: one offset per stored diagonal (scipy drops what falls outside)."""
    offsets = _index_array(X, "offsets", name)
    if np.ndim(X.data) != 2 or np.shape(X.data)[0] != offsets.size:
        raise ValueError(
            f"{name}.data must be 2-D with one row per entry of {name}.offsets "
            f"({offsets.size}), got shape {np.shape(X.data)}. {_FIX}"
        )


_CHECKS = {
    "csr": _check_compressed,
    "csc": _check_compressed,
    "bsr": _check_compressed,
    "coo": _check_coordinates,
    "lil": _check_row_lists,
    "dia": _check_diagonals,
}


def check_sparse_structure(X, name="X"):
    """Refuse a sparse matrix whose index arrays do not describe its shape.

    Reads the caller's arrays as they are: nothing is copied, converted or
    modified, so it can run before any conversion. For CSR and CSC (and
    BSR, by blocks): ``indptr`` has one entry per row (column) plus one and
    starts at 0, never decreases and ends within ``indices``, which is as
    long as ``data``; the indices it uses lie in ``[0, n_columns)``
    (``[0, n_rows)`` for CSC). For COO every coordinate lies within the
    shape; for LIL each row's columns do and pair up with its values; for
    DIA there is one offset per diagonal. DOK is checked by scipy itself
    when converted. Duplicate and unsorted indices are valid (duplicates
    stand for their sum). Anything that is not a scipy sparse matrix or
    array, and sparse input of other than two dimensions, is left to the
    usual validation.

    Parameters
    ----------
    X : object
        The input, as the caller gave it.
    name : str, default='X'
        How the messages call it.

    Raises
    ------
    ValueError
        Naming the array, the entry, the value, the allowed range and the fix.

    Notes
    -----
    Vectorized and linear in the number of stored entries (with a Python
    loop over the rows of a LIL matrix only, a format whose rows are Python
    lists): a few passes over the index arrays, next to the many products
    with them that any fit makes.
    """
    if sp.issparse(X) and len(X.shape) == 2:
        check = _CHECKS.get(X.format)
        if check is not None:
            check(X, name)
