"""pyfastspm, imported without its noise.

Importing ``pyfastspm`` 1.0.6 prints ``mkl_fft import failed, will default to np.fft`` (it
tries an optional MKL package), logs ``ffmpeg is unavailable on your system: movie export will
NOT work`` (it looks for a system ffmpeg; dass writes movies with imageio-ffmpeg's binary, so
the warning is false for dass), warns that ``pkg_resources`` is deprecated, and calls
``logging.basicConfig(level=INFO)``, which makes every later INFO line of every library
appear in notebooks and on the command line.

:func:`pyfastspm` imports it once with that output captured (and logged at DEBUG level by
dass) and takes back the root-logger handler and level that pyfastspm's ``basicConfig`` set, so
that the application's logging stays as the application configured it. Every dass module that
uses pyfastspm calls it before importing from pyfastspm. :func:`quiet` keeps pyfastspm's
prints, progress bars and warnings out of a block of calls.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

__all__ = ["pyfastspm", "quiet"]

log = logging.getLogger(__name__)
_lock = threading.Lock()


def pyfastspm() -> ModuleType:
    """The ``pyfastspm`` module, imported quietly the first time (see the module docstring).

    Raises
    ------
    ImportError
        pyfastspm is not installed; the message says how to install it.
    """
    module = sys.modules.get("pyfastspm")
    if module is not None:
        return module
    with _lock:
        module = sys.modules.get("pyfastspm")
        if module is not None:
            return module
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                    warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
                import pyfastspm as module
        except ImportError as exc:
            raise ImportError(
                f"the STM stack needs pyfastspm ({exc}): pip install 'dass[stm]'"
            ) from exc
        finally:
            # undo pyfastspm's logging.basicConfig: keep only the handlers the application had
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)
        said = out.getvalue().strip()
        if said:
            log.debug("pyfastspm said on import: %s", said)
        return module


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Inside the block, pyfastspm's prints and tqdm bars are captured and its loggers pass
    only errors; what it said is logged by dass at DEBUG level afterwards."""
    pyfastspm()
    out = io.StringIO()
    logger = logging.getLogger("pyfastspm")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    finally:
        logger.setLevel(level)
        text = out.getvalue().strip()
        if text:
            log.debug("pyfastspm said: %s", text[-2000:])
