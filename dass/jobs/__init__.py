"""Headless analysis jobs: parameterized notebooks run by the dass service with papermill.

In a session (or any script with a hub token)::

    import dass.jobs
    job = dass.jobs.submit("sem/service/image_summary.ipynb",
                           parameters={"input_dataset": "p-2026-001/sem-nanowires"})
    dass.jobs.wait(job["id"])

The client functions are imported lazily (``submit``, ``wait``, ``get``, ``download``,
``submit_sweep``, ``wait_sweep``, ``JobsClient``), so ``import dass.jobs`` stays light.
"""

_CLIENT_NAMES = ("submit", "wait", "get", "download", "submit_sweep", "wait_sweep", "JobsClient", "JobsError")


def __getattr__(name):
    if name in _CLIENT_NAMES:
        import importlib

        return getattr(importlib.import_module("dass.jobs.client"), name)
    raise AttributeError(f"module 'dass.jobs' has no attribute {name!r}")


__all__ = list(_CLIENT_NAMES)
