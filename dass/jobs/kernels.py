"""The kernel of a job: started by papermill, or ahead of the job by a standby runner.

Imports jupyter_client only when called, so the runner's module stays cheap to import.
"""

from __future__ import annotations

import functools
import json
from typing import Any


@functools.lru_cache(maxsize=1)
def kernel_manager_class():
    """A subclass of jupyter_client's AsyncKernelManager (made once, on first use) that keeps
    the kernel's exit status, which nbclient does not report, so that a failure can say
    whether the kernel was killed or ended by itself."""
    from jupyter_client.manager import AsyncKernelManager

    class ExitRecordingKernelManager(AsyncKernelManager):
        #: the last instance (a runner runs one notebook)
        last: "ExitRecordingKernelManager | None" = None
        exit_status: int | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            type(self).last = self

        async def is_alive(self) -> bool:  # what nbclient asks when a reply does not come
            provisioner = self.provisioner
            if provisioner is not None and self.has_kernel:
                code = await provisioner.poll()
                if code is not None:
                    self.exit_status = code
            return await super()._async_is_alive()

    return ExitRecordingKernelManager


def start_kernel(cwd: str) -> Any:
    """A running Python kernel whose manager records its exit status (see the runner)."""
    from jupyter_core.utils import run_sync

    km = kernel_manager_class()(kernel_name="python3")
    run_sync(km.start_kernel)(cwd=cwd)
    return km


def hand_over(km: Any, workdir: str, env: dict[str, str]) -> None:
    """Give the kernel the job's environment variables and working folder.

    Runs one silent, unrecorded statement in the kernel (no history, no output in the
    notebook): the kernel started before its job was known.
    """
    from jupyter_core.utils import run_sync

    code = (
        "import os as __dass_os\n"
        f"__dass_os.environ.update({json.dumps(env)!s})\n"
        f"__dass_os.chdir({workdir!r})\n"
        "del __dass_os\n"
    )
    kc = km.client()
    kc.start_channels()
    try:
        run_sync(kc.wait_for_ready)(timeout=60)
        reply = run_sync(kc.execute_interactive)(code, silent=True, store_history=False, timeout=60)
        if reply["content"].get("status") != "ok":
            raise RuntimeError(f"the standby kernel refused the job's environment: {reply['content']}")
    finally:
        kc.stop_channels()
