# cython: language_level=3
"""How the compiled epoch sees Ctrl-C while it runs without the GIL.

Python runs its signal handlers, the one that raises KeyboardInterrupt
among them, only in a thread holding the GIL. The loop counts the work it
does (``CHECK_WORK`` in _codes.py) and takes the GIL to look for a signal
only when enough has been done, so the look costs an addition and a
comparison the rest of the time, and changes no arithmetic.
"""


cdef extern from "Python.h":
    # Without Cython's exception check: the loop notes that a handler raised
    # and stops, leaving the exception set for the epoch to return.
    int _check_signals "PyErr_CheckSignals" ()


cdef struct Watch:
    double work  # units since the last look: multiply-adds, parameters updated
    double budget  # units between two looks
    bint raised  # a signal handler raised; its exception is set


cdef inline bint worked(Watch* watch, double work) noexcept nogil:
    """Count ``work`` units; past the budget, look for a signal.

    Returns True once a handler has raised: the caller stops where it is and
    the epoch (``_epoch``) returns the handler's exception.
    """
    watch.work += work
    if watch.work >= watch.budget:
        watch.work = 0
        with gil:
            watch.raised = _check_signals() != 0
    return watch.raised
