# cython: language_level=3, cdivision=True
"""One thread or the team, step by step, by the speed each has shown.

The results are the same bits either way (_tiles.pxd), so the loop may pick
per step whichever has been faster per unit of work: the team on a quiet
machine, one thread when another process takes a core (a team then waits,
at each phase's end, for its thread that lost the core) or when the batch
is too small for a second core to repay the cache lines the two cores pass
each other. Each step's time is measured (``omp_get_wtime``); the mode not
in use is tried again after ``wait`` steps, a wait that doubles each time
the try loses, up to MAX_WAIT, and starts over when it wins.
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static inline double skbatchnet_wtime(void) { return omp_get_wtime(); }
    #else
    static inline double skbatchnet_wtime(void) { return 0.0; }
    #endif
    """
    double wtime "skbatchnet_wtime" () noexcept nogil

# The first retry after FIRST_WAIT steps; at most MAX_WAIT steps between
# retries, which bounds what a losing retry costs to a fraction of the steps.
cdef enum:
    FIRST_WAIT = 16
    MAX_WAIT = 1024


cdef struct Choice:
    double rate[2]  # seconds per unit of work, one thread [0] and the team [1]; 0: unknown
    int mode  # the mode in use
    long wait  # steps until the other mode is tried
    long backoff  # the wait after the next losing try


cdef inline void start(Choice* c) noexcept nogil:
    c.rate[0] = c.rate[1] = 0
    c.mode = 1
    c.wait = FIRST_WAIT
    c.backoff = FIRST_WAIT


cdef inline int pick(Choice* c) noexcept nogil:
    """The mode of the next step: the faster one, or the other for a try
    (the team is measured first, then one thread)."""
    if c.rate[c.mode] != 0 and (c.rate[1 - c.mode] == 0 or c.wait <= 0):
        return 1 - c.mode
    return c.mode


cdef inline void record(Choice* c, int mode, double seconds, double work) noexcept nogil:
    """Note a step of ``work`` units that took ``seconds`` in ``mode``."""
    cdef double rate = seconds / work
    if mode == c.mode:
        # A moving average, so that one step slowed by chance does not decide.
        c.rate[mode] = rate if c.rate[mode] == 0 else 0.5 * (c.rate[mode] + rate)
        c.wait -= 1
        return
    c.rate[mode] = rate  # a try: its own time now, not an old average
    if rate < c.rate[c.mode]:
        c.mode = mode
        c.backoff = FIRST_WAIT
    else:
        c.backoff = min(2 * c.backoff, <long>MAX_WAIT)
    c.wait = c.backoff
