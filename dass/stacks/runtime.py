"""Pure builders of what a size means at run time: thread-pool variables and limits.

Sessions (every spawner back end) and jobs (every executor) take their CPU and memory
figures from here, so a size means the same thing wherever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Size

#: thread-pool sizes set to the size's CPUs (a cooperative CPU limit where no hard one exists)
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TORCH_NUM_THREADS",
)


def thread_env(size: Size) -> dict[str, str]:
    """The thread-pool variables for ``size``: each set to its whole CPUs (at least 1).

    Examples
    --------
    >>> from dass.stacks.registry import Size
    >>> thread_env(Size("s", "small", cpu=2.5, mem_gib=2))["OMP_NUM_THREADS"]
    '2'
    """
    threads = str(max(1, int(size.cpu)))
    return {key: threads for key in THREAD_ENV}


@dataclass(frozen=True)
class Limits:
    """CPU and memory of a run, as the size declares them.

    Container and pod limits and Slurm requests use these figures as they are; a process back
    end turns ``mem_bytes`` into an address-space limit with :func:`address_space_limit`.
    """

    cpu: float
    mem_bytes: int
    #: GPUs (0: none); only back ends that schedule GPUs use it
    gpus: int = 0


def limits(size: Size) -> Limits:
    """The limits of ``size``.

    Examples
    --------
    >>> from dass.stacks.registry import Size
    >>> limits(Size("s", "small", cpu=1, mem_gib=2))
    Limits(cpu=1, mem_bytes=2147483648, gpus=0)
    """
    return Limits(cpu=size.cpu, mem_bytes=size.mem_bytes, gpus=size.gpus)


def address_space_limit(mem_bytes: int, *, headroom_bytes: int, enforce: bool = True) -> int | None:
    """The ``RLIMIT_AS`` a process back end sets for ``mem_bytes`` of memory, or None.

    The address space counts virtual memory, so it bites earlier than resident memory would:
    ``headroom_bytes`` is added for the Jupyter server or runner and libraries' reservations.

    Examples
    --------
    >>> address_space_limit(2 * 1024**3, headroom_bytes=1024**3) // 1024**3
    3
    >>> address_space_limit(2 * 1024**3, headroom_bytes=1024**3, enforce=False) is None
    True
    """
    return mem_bytes + headroom_bytes if enforce and mem_bytes else None
