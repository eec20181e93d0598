"""CPU thread limits that hold for every thread pool of a process, not only torch's.

``torch.set_num_threads`` sets torch's intra-op pool; numpy's matrix products run on the BLAS library numpy was built
with (OpenBLAS in the wheels), whose pool keeps one thread per core. Two processes that each run torch on one thread
then still start two BLAS threads per product, and on a machine with no free core every small product waits for a
time slice: measured on this 2-core machine beside two other busy processes, the ``[20, 1600] @ [1600, 72]`` product of
the toy audio decoder's harmonic frames took 48 ms with the default pool and 0.39 ms with one thread, and 30 steps
of that decoder's training took 41–43 s against 27–29 s (``bench/bench_threads.py`` measures it).
"""
from __future__ import annotations


def limit_cpu_threads(count: int) -> None:
    """Run torch, the BLAS libraries (OpenBLAS, MKL, BLIS) and OpenMP of this process on at most ``count`` threads.

    Applies to the libraries loaded now (numpy's BLAS is loaded with numpy, which torch imports), for the rest of
    the process.

    Raises:
        ValueError: ``count`` is not a positive integer.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"threads must be a positive integer, got {count!r}")
    import numpy  # noqa: F401  (loads numpy's BLAS, so that the limit reaches it)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(count)
    threadpool_limits(limits=count)
