"""How a SEM model runs fastest on this machine: acceleration, thread counts, OpenMP's wait policy.

:func:`accelerate` turns an eval-mode :class:`~dass.sem.models.SemNet` into the fastest
inference form torch offers here (eager, channels-last, frozen TorchScript or
``torch.compile``), timed when ``mode="auto"``; :func:`single_image_threads` times one
image at one and at all threads; :func:`set_openmp_wait_policy` makes OpenMP's threads
sleep while they wait, before torch is imported. :mod:`dass.sem.classify` and the SEM
service use them; ``bench/sem.py`` prints what they choose.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .models import ModelError

if TYPE_CHECKING:  # torch is imported inside the functions
    import torch

log = logging.getLogger(__name__)

__all__ = ["ACCELERATIONS", "accelerate", "set_openmp_wait_policy", "single_image_threads"]

def set_openmp_wait_policy(policy: str) -> bool:
    """Make torch's OpenMP threads sleep (``"passive"``) or spin (``"active"``) while they wait.

    OpenMP reads ``OMP_WAIT_POLICY`` once, when torch is imported, so this only takes effect
    before ``import torch``; a value already in the environment (the operator's) is kept.
    Why it matters: at every layer torch's threads wait for each other; spinning threads
    keep cores that other work needs, and on a machine where other processes or threads are
    busy a forward pass of a small network with two threads took four times as long with the
    default policy as with ``passive`` (mobilenet_v3_small, batch 32, 2 cores, ``bench/sem.py``).

    Parameters
    ----------
    policy : str
        ``"passive"``, ``"active"``, or ``""`` to leave OpenMP's default.

    Returns
    -------
    bool
        True when the policy will apply (torch not imported yet, nothing set before).
    """
    import sys

    policy = (policy or "").strip().upper()
    if policy not in ("", "PASSIVE", "ACTIVE"):
        raise ModelError(f"unknown OpenMP wait policy {policy.lower()!r}; use 'passive', 'active' or ''")
    if not policy:
        return False
    current = os.environ.get("OMP_WAIT_POLICY")
    if "torch" in sys.modules or current:
        if (current or "").upper() != policy:
            log.info("OpenMP wait policy %s not applied: %s", policy.lower(),
                     f"OMP_WAIT_POLICY={current} is set" if current else "torch is already imported")
        return False
    os.environ["OMP_WAIT_POLICY"] = policy
    return True


#: What :func:`accelerate` may do to a model for inference.
ACCELERATIONS = ("auto", "eager", "channels_last", "freeze", "compile")


def accelerate(model: "torch.nn.Module", *, input_size: int, device: str = "cpu", mode: str = "auto",
               check: bool = True) -> "tuple[Any, str]":
    """The fastest inference form of an eval-mode :class:`SemNet` that torch offers here.

    Modes (measured on CPU by ``bench/sem.py``; on a loaded 2-core machine freezing gave
    mobilenet_v3_small 2-6x and resnet18 about 1.5x over eager, channels-last alone about
    the same for resnet18):

    - ``"eager"``: the module as it is.
    - ``"channels_last"``: weights in channels-last memory format (oneDNN / cuDNN prefer it).
    - ``"freeze"``: ``torch.jit.trace`` + ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``
      (batch-norm folded into convolutions, oneDNN kernels chosen ahead), channels-last weights.
    - ``"compile"``: ``torch.compile`` (needs a C++ compiler on CPU; compiles on the first
      batch of each new shape, tens of seconds).
    - ``"auto"``: each of ``"eager"``, ``"channels_last"`` and (on CPU) ``"freeze"`` is timed
      on a probe batch of 8 (on CPU at one intra-op thread, as the workers of
      :meth:`dass.sem.classify.Classifier.run` call it) and on one image (at the faster of
      one and all the threads) when the model loads (about a second for resnet18 on 2 cores),
      and the fastest for both probes together is kept: which one wins depends on the
      architecture and the machine (``bench/sem.py`` prints the table).

    Whatever is chosen is checked: its softmax on a probe batch must match the eager
    model's within 1e-4; a failure of any kind falls back to ``"channels_last"``, then
    ``"eager"``, with a warning in the log. The given model is not modified when the
    result is not eager (a copy is made).

    Parameters
    ----------
    model : torch.nn.Module
        A SemNet in eval mode, on `device`.
    input_size : int
        Square input side (the probe batch's size).
    device : str
        Where the model lives.
    mode : str
        One of :data:`ACCELERATIONS`.
    check : bool
        Compare with the eager model on a probe batch (default True).

    Returns
    -------
    (callable, str)
        The module to call with ``(N, 1, S, S)`` float32 batches, and the mode used.

    Raises
    ------
    ModelError
        For an unknown mode.
    """
    import copy

    import torch

    if mode not in ACCELERATIONS:
        raise ModelError(f"unknown acceleration {mode!r}; use one of: {', '.join(ACCELERATIONS)}")
    if mode == "auto":
        return _fastest(model, input_size=input_size, device=device, check=check)
    if mode == "eager":
        return model, "eager"
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand(2, 1, input_size, input_size, generator=gen).to(device)
    try:
        with torch.inference_mode():
            reference = torch.softmax(model(probe).float(), 1) if check else None
    except Exception as exc:  # the eager model itself fails on a probe: nothing to speed up
        log.warning("SEM model %s: no inference speed-up, the model fails on a probe batch (%s: %s)",
                    getattr(model, "architecture", "?"), type(exc).__name__, str(exc)[:200])
        return model, "eager"
    chain = {"freeze": ("freeze", "channels_last"), "compile": ("compile", "channels_last"),
             "channels_last": ("channels_last",)}[mode]
    for candidate in chain:
        try:
            fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
            if candidate == "freeze":
                import warnings

                with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                    warnings.simplefilter("ignore")  # the tracer warns about SemNet's shape checks
                    traced = torch.jit.trace(fast, probe.contiguous(memory_format=torch.channels_last))
                    fast = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            elif candidate == "compile":
                fast = torch.compile(fast, dynamic=True)
            if check:
                with torch.inference_mode():
                    got = torch.softmax(fast(probe.contiguous(memory_format=torch.channels_last)).float(), 1)
                diff = float((got - reference).abs().max())
                if not diff <= 1e-4:
                    raise RuntimeError(f"its output differs from the eager model's by {diff:.2e}")
            return fast, candidate
        except Exception as exc:  # any failure of an optional speed-up: fall back, never fail
            log.warning("SEM model %s: %s inference is not usable here (%s: %s); falling back",
                        getattr(model, "architecture", "?"), candidate, type(exc).__name__, str(exc)[:200])
    return model, "eager"


def _fastest(model: "torch.nn.Module", *, input_size: int, device: str, check: bool) -> "tuple[Any, str]":
    """``accelerate(mode="auto")``: time the candidates on this machine and keep the fastest."""
    import statistics
    import time

    import torch

    candidates = ("eager", "channels_last", "freeze") if str(device).startswith("cpu") else ("eager", "channels_last")
    x8 = torch.rand(8, 1, input_size, input_size).to(device).contiguous(memory_format=torch.channels_last)
    x1 = x8[:1].contiguous(memory_format=torch.channels_last)

    def seconds(runner: Any, x: Any) -> float:
        t = time.perf_counter()
        runner(x)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t

    built: dict[str, Any] = {}
    for candidate in candidates:
        runner, used = accelerate(model, input_size=input_size, device=device, mode=candidate, check=check)
        if used != candidate:
            continue
        try:
            with torch.inference_mode():
                runner(x8), runner(x1)  # warm-up: kernels chosen, caches filled
        except Exception as exc:  # pragma: no cover - a candidate that fails on other shapes
            log.warning("SEM model: %s inference failed while timed (%s); not used", candidate, exc)
            continue
        built[candidate] = runner
    # interleaved rounds (A B C A B C ...): a burst of load from elsewhere hits every candidate.
    # Timed as dass.sem.classify.Classifier.run calls it: batches at one intra-op thread per
    # worker on the CPU, a single image at the faster of one and all of this thread's threads
    # (see single_image_threads)
    cpu = str(device).startswith("cpu")
    threads = torch.get_num_threads()
    counts = sorted({1, threads}) if cpu else [threads]
    batch: dict[str, list[float]] = {c: [] for c in built}
    single: dict[tuple[str, int], list[float]] = {(c, n): [] for c in built for n in counts}
    try:
        with torch.inference_mode():
            for _ in range(3):
                for candidate, runner in built.items():
                    for n in counts:
                        if cpu:
                            torch.set_num_threads(n)
                        if n == 1 or not cpu:
                            batch[candidate].append(seconds(runner, x8) / 8)
                        single[candidate, n].append(seconds(runner, x1))
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    # the time of both probes, a batch of 8 and one image: throughput weighs more than latency
    timings = {c: 8 * statistics.median(batch[c]) + min(statistics.median(single[c, n]) for n in counts)
               for c in built}
    best = min(timings, key=timings.get) if timings else "eager"
    log.info("SEM model %s: inference timed, a batch of 8 + one image: %s; using %s",
             getattr(model, "architecture", "?"),
             ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in timings.items()), best)
    return built.get(best, model), best


def single_image_threads(runner: Any, *, input_size: int, device: str = "cpu", rounds: int = 3) -> int:
    """The faster intra-op thread count for one image through `runner`: 1 or torch's current.

    On a small network a single image's layers are too small for several threads to share:
    with ``OMP_WAIT_POLICY=passive`` every layer wakes the sleeping threads, and on a 2-core
    machine mobilenet_v3_small took 16-19 ms at two threads and 7 ms at one; a large network
    gains from more threads. Timed in interleaved rounds (after one warm-up each) on this
    thread; its count is left as it was. Not on a GPU (torch's count there is returned).
    """
    import statistics
    import time

    import torch

    threads = torch.get_num_threads()
    if not str(device).startswith("cpu") or threads <= 1:
        return threads
    x1 = torch.rand(1, 1, input_size, input_size).contiguous(memory_format=torch.channels_last)
    seconds: dict[int, list[float]] = {1: [], threads: []}
    try:
        with torch.inference_mode():
            for r in range(rounds + 1):
                for n in seconds:
                    torch.set_num_threads(n)
                    t = time.perf_counter()
                    runner(x1)
                    if r:  # the first round warms up
                        seconds[n].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return min(seconds, key=lambda n: statistics.median(seconds[n]))
