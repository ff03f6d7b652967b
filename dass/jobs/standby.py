"""A runner on standby: started ahead of its job, warm, with its kernel already running.

``python -m dass.jobs.standby POOLDIR`` is what :class:`~dass.jobs.executor.LocalExecutor`
keeps ready per stack and size (the kernel pool of JupyterHub's and jupyter-server's kind).
It imports papermill and nbconvert, compiles the HTML templates, starts a Python kernel with
the size's limits, writes ``POOLDIR/<pid>.ready`` and waits for one line on its standard
input: ``{"workdir": …, "env": {…}}``. It then takes the job's environment and folder, hands
the environment and folder to the kernel too, and runs the job exactly as
``python -m dass.jobs.runner WORKDIR`` would (:func:`dass.jobs.runner.run`), with that kernel.

End of input (the service stopped or died: its end of the pipe closes) ends a standby runner
that has no job yet, and its kernel with it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("dass.jobs.standby")

#: the file a ready standby runner leaves in its pool folder (the executor and bench/jobs.py read it)
READY_SUFFIX = ".ready"


def warm() -> None:
    """Import what a run needs and compile nbconvert's HTML templates once."""
    import nbformat
    import papermill  # noqa: F401
    from nbconvert import HTMLExporter

    from . import runner  # noqa: F401

    HTMLExporter().from_notebook_node(nbformat.v4.new_notebook())


def _redirect_output(path: Path) -> None:
    """From now on, stdout and stderr go to the job's ``runner.out``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def standby(pool: str | os.PathLike[str]) -> int:
    """Wait, warm, for one job (see the module docstring); returns the job's exit status."""
    from jupyter_core.utils import run_sync

    from . import runner
    from .kernels import start_kernel

    pool = Path(pool).resolve()
    warm()
    km = start_kernel(str(pool))
    ready = pool / f"{os.getpid()}{READY_SUFFIX}"
    ready.write_text("")
    try:
        line = sys.stdin.readline()
    finally:
        ready.unlink(missing_ok=True)
    if not line.strip():  # the service has gone: nothing to run
        run_sync(km.shutdown_kernel)(now=True)
        return 0
    order = json.loads(line)
    workdir = str(Path(order["workdir"]).resolve())
    env = {str(k): str(v) for k, v in (order.get("env") or {}).items()}
    os.environ.update(env)
    os.chdir(workdir)
    _redirect_output(Path(workdir) / "runner.out")
    return runner.run(workdir, kernel=km)


def main(argv: list[str] | None = None) -> int:
    """``python -m dass.jobs.standby POOLDIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m dass.jobs.standby POOLDIR\n\nWait, warm, for a dass job (started by the service).")
        return 2
    return standby(args[0])


if __name__ == "__main__":
    sys.exit(main())
